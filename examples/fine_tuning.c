/* fine_tuning.c: the fine-tuning recipe with BatchNormalization, through kiln's C API:
 *   1. train a baseline seed model without BN;
 *   2. build the same model with BN layers, start it from the baseline's weights (loaded by
 *      name: conv2d.kernel, dense.kernel, ... are the same layers in both);
 *   3. freeze every layer but the BN ones (frozen layers keep their weights bit for bit) and
 *      train, so only BN learns;
 *   4. unfreeze everything and fine-tune end to end with a lower learning rate;
 *   5. compare each stage's test accuracy with the baseline's.
 *   usage: fine_tuning [epochs] [device]        (defaults: 2, auto) */
#include <stdio.h>
#include <stdlib.h>

#include "kiln/kiln.h"

#define CHECK(expr)                                                    \
    do {                                                               \
        if ((expr) != KILN_OK) {                                       \
            fprintf(stderr, "fine_tuning: %s\n", kiln_last_error());   \
            exit(1);                                                   \
        }                                                              \
    } while (0)

static void add(kiln_model *m, kiln_layer_config l) { CHECK(kiln_model_add(m, &l, 0, NULL, NULL)); }

/* the seed model, with or without its two BatchNormalization layers */
static kiln_model *seed_model(kiln_backend *be, bool with_bn) {
    kiln_model *m;
    int64_t input[3] = {32, 32, 3};
    CHECK(kiln_model_new(with_bn ? "with_bn" : "baseline", &m));
    add(m, kiln_input_layer(3, input));
    add(m, kiln_conv2d_layer(32, 3, 3, KILN_ACT_RELU));
    if (with_bn) add(m, kiln_batchnorm_layer());
    add(m, kiln_max_pool2d_layer(2, 2));
    add(m, kiln_flatten_layer());
    add(m, kiln_dense_layer(64, KILN_ACT_RELU));
    if (with_bn) add(m, kiln_batchnorm_layer());
    add(m, kiln_dense_layer(10, KILN_ACT_SOFTMAX));
    CHECK(kiln_model_build(m, be, 7));
    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM), KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    CHECK(kiln_model_compile(m, &cc));
    return m;
}

static double train(kiln_model *m, const kiln_data *data, const kiln_data *test, int epochs, const char *stage) {
    kiln_fit_config fc = kiln_fit_defaults();
    fc.epochs = epochs;
    fc.verbose = 2; /* a line per epoch */
    fc.validation = *test;
    int64_t total, trainable, frozen;
    kiln_model_param_counts(m, &total, &trainable, &frozen);
    printf("== %s: %lld trainable, %lld non-trainable parameters\n", stage, (long long)trainable, (long long)frozen);
    CHECK(kiln_model_fit(m, data, &fc, NULL));
    double loss, acc;
    CHECK(kiln_model_evaluate(m, test, 32, &loss, &acc));
    return acc;
}

int main(int argc, char **argv) {
    int epochs = argc > 1 ? atoi(argv[1]) : 2;
    kiln_backend *be;
    CHECK(kiln_backend_init(argc > 2 ? argv[2] : "auto", &be));
    kiln_dataset *tr, *te;
    CHECK(kiln_dataset_synthetic(NULL, &tr, &te));
    kiln_data data = {tr->images, tr->labels, NULL, tr->n}, test = {te->images, te->labels, NULL, te->n};

    kiln_model *base = seed_model(be, false);
    double acc_base = train(base, &data, &test, epochs, "1. baseline without BN");
    const char *weights = "fine_tuning_baseline.safetensors";
    CHECK(kiln_model_save(base, weights, false, epochs));

    kiln_model *bn = seed_model(be, true);
    CHECK(kiln_model_load(bn, weights, /*subset*/ true, false, NULL)); /* BN layers keep their init */
    CHECK(kiln_model_freeze_all_but(bn, KILN_LAYER_BATCHNORM));
    double acc_bn = train(bn, &data, &test, epochs, "3. only BN trains");

    CHECK(kiln_model_set_all_trainable(bn, true));
    CHECK(kiln_model_set_learning_rate(bn, 1e-4));
    double acc_ft = train(bn, &data, &test, epochs, "4. end to end, lr 1e-4");

    printf("test accuracy: baseline %.4f, BN only %.4f, fine-tuned %.4f\n", acc_base, acc_bn, acc_ft);
    remove(weights);
    kiln_model_free(base);
    kiln_model_free(bn);
    kiln_dataset_free(tr);
    kiln_dataset_free(te);
    kiln_backend_free(be);
    return 0;
}
