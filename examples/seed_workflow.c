/* seed_workflow.c: the Keras workflow of kiln's seed model through the C API:
 *
 *   model = Sequential([Conv2D(32, (3,3), activation='relu', input_shape=(32,32,3)),
 *                       BatchNormalization(), MaxPooling2D((2,2)), Flatten(),
 *                       Dense(64, activation='relu'), BatchNormalization(),
 *                       Dense(10, activation='softmax')])
 *   model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])
 *   model.fit(x_train, y_train, epochs=10, batch_size=32, validation_data=(x_val, y_val))
 *
 * on kiln's generated dataset, on the best device there is.
 *   usage: seed_workflow [epochs] [device]        (defaults: 3, auto) */
#include <stdio.h>
#include <stdlib.h>

#include "kiln/kiln.h"

#define CHECK(expr)                                                        \
    do {                                                                   \
        if ((expr) != KILN_OK) {                                           \
            fprintf(stderr, "seed_workflow: %s\n", kiln_last_error());     \
            return 1;                                                      \
        }                                                                  \
    } while (0)

/* appends one layer to a Sequential model */
static kiln_status add(kiln_model *m, kiln_layer_config l) { return kiln_model_add(m, &l, 0, NULL, NULL); }

int main(int argc, char **argv) {
    int epochs = argc > 1 ? atoi(argv[1]) : 3;
    kiln_backend *be;
    CHECK(kiln_backend_init(argc > 2 ? argv[2] : "auto", &be));
    printf("device: %s\n", kiln_backend_name(be));

    /* 5000 training and 1000 test images of 10 drawn shapes, 32x32x3 */
    kiln_dataset *train, *test;
    CHECK(kiln_dataset_synthetic(NULL, &train, &test));

    kiln_model *m;
    int64_t input[3] = {32, 32, 3};
    CHECK(kiln_model_new("sequential", &m));
    CHECK(add(m, kiln_input_layer(3, input)));
    CHECK(add(m, kiln_conv2d_layer(32, 3, 3, KILN_ACT_RELU)));
    CHECK(add(m, kiln_batchnorm_layer()));
    CHECK(add(m, kiln_max_pool2d_layer(2, 2)));
    CHECK(add(m, kiln_flatten_layer()));
    CHECK(add(m, kiln_dense_layer(64, KILN_ACT_RELU)));
    CHECK(add(m, kiln_batchnorm_layer()));
    CHECK(add(m, kiln_dense_layer(10, KILN_ACT_SOFTMAX)));
    CHECK(kiln_model_build(m, be, 42));
    CHECK(kiln_model_summary(m, stdout));

    kiln_compile_config cc = {kiln_optimizer_defaults(KILN_OPT_ADAM),
                              KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, false};
    CHECK(kiln_model_compile(m, &cc));

    kiln_fit_config fc = kiln_fit_defaults(); /* batch 32, shuffled, verbose 1 */
    fc.epochs = epochs;
    fc.validation = (kiln_data){test->images, test->labels, NULL, test->n};
    kiln_data data = {train->images, train->labels, NULL, train->n};
    kiln_history h;
    CHECK(kiln_model_fit(m, &data, &fc, &h));

    double loss, acc;
    CHECK(kiln_model_evaluate(m, &fc.validation, 32, &loss, &acc));
    printf("test loss %.4f, test accuracy %.4f\n", loss, acc);

    kiln_history_free(&h);
    kiln_model_free(m);
    kiln_dataset_free(train);
    kiln_dataset_free(test);
    kiln_backend_free(be);
    return 0;
}
