/* test_dist.c: the parts of data-parallel training a plain process runs (docs/distributed.md):
 * the single engine of kiln_comm, kiln_dist_init without a launcher, the API's argument checks,
 * and `synchronized` of BatchNormalization through the Keras JSON and kiln_model_sync_batchnorm.
 * The MPI runs themselves are tests/dist/check_dist.py (CTest's dist_* tests, with MPI). */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/kiln.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

Test(dist, single_engine_leaves_buffers_alone) {
    kiln_comm *c = NULL;
    OK(kiln_comm_single(&c));
    cr_assert_eq(kiln_comm_rank(c), 0);
    cr_assert_eq(kiln_comm_size(c), 1);
    cr_assert_str_eq(kiln_comm_engine(c), "single");
    double v[3] = {1.5, -2.0, 1e300};
    OK(kiln_comm_allreduce_sum(c, v, 3));
    cr_assert(v[0] == 1.5 && v[1] == -2.0 && v[2] == 1e300);
    char b[4] = "abc";
    OK(kiln_comm_broadcast(c, b, 4, 0));
    cr_assert_str_eq(b, "abc");
    OK(kiln_comm_barrier(c));
    cr_assert_geq(kiln_comm_seconds(c), 0.0);
    kiln_comm_free(c);
}

Test(dist, init_without_a_launcher_is_single) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "PMIX_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) unsetenv(vars[i]);
    kiln_comm *c = NULL;
    OK(kiln_dist_init(&c));
    cr_assert_str_eq(kiln_comm_engine(c), "single");
    cr_assert_eq(kiln_comm_size(c), 1);
    kiln_comm_free(c);
}

Test(dist, bad_arguments_are_refused) {
    cr_assert_eq(kiln_comm_rank(NULL), 0);
    cr_assert_eq(kiln_comm_size(NULL), 1);
    cr_assert_str_eq(kiln_comm_engine(NULL), "?");
    cr_assert_neq(kiln_dist_init(NULL), KILN_OK);
    cr_assert_neq(kiln_comm_single(NULL), KILN_OK);
    double v = 0;
    cr_assert_neq(kiln_comm_allreduce_sum(NULL, &v, 1), KILN_OK);
    kiln_comm *c = NULL;
    OK(kiln_comm_single(&c));
    cr_assert_neq(kiln_comm_allreduce_sum(c, NULL, 1), KILN_OK);
    cr_assert_neq(kiln_comm_allreduce_sum(c, &v, -1), KILN_OK);
    cr_assert_neq(kiln_comm_broadcast(c, &v, sizeof v, 1), KILN_OK); /* no rank 1 */
    cr_assert_neq(kiln_model_set_comm(NULL, c), KILN_OK);
    cr_assert_neq(kiln_model_sync_batchnorm(NULL, true), KILN_OK);
    kiln_comm_abort(c, "one rank: prints and returns"); /* with one rank it only prints */
    kiln_comm_free(c);
    kiln_comm_free(NULL);
}

static const char *bn_json(bool sync) {
    return sync ? "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
                  "{\"class_name\": \"InputLayer\", \"config\": {\"batch_shape\": [null, 4]}},"
                  "{\"class_name\": \"BatchNormalization\", \"config\": {\"name\": \"bn\", \"synchronized\": true}}]}}"
                : "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
                  "{\"class_name\": \"InputLayer\", \"config\": {\"batch_shape\": [null, 4]}},"
                  "{\"class_name\": \"BatchNormalization\", \"config\": {\"name\": \"bn\"}}]}}";
}

static bool json_says_sync(const kiln_model *m) {
    char *out = NULL;
    OK(kiln_model_to_json(m, &out));
    bool on = strstr(out, "\"synchronized\":true") || strstr(out, "\"synchronized\": true");
    free(out);
    return on;
}

Test(dist, synchronized_batchnorm_in_keras_json_and_the_api) {
    kiln_model *m = NULL;
    const char *j = bn_json(true);
    OK(kiln_model_from_json(j, strlen(j), &m));
    cr_assert(json_says_sync(m), "Keras' synchronized=True is read and written back");
    OK(kiln_model_sync_batchnorm(m, false));
    cr_assert(!json_says_sync(m));
    kiln_model_free(m);
    j = bn_json(false);
    OK(kiln_model_from_json(j, strlen(j), &m));
    cr_assert(!json_says_sync(m), "plain BN keeps per-rank statistics");
    OK(kiln_model_sync_batchnorm(m, true)); /* --sync-bn */
    cr_assert(json_says_sync(m));
    kiln_model_free(m);
}
