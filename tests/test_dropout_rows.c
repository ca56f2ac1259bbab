/* test_dropout_rows.c: kiln_dropout_rows (kiln/nn.h), the Dropout and SpatialDropout2D masks
 * of a data-parallel share: a batch cut into row ranges, each run with its first row, gives
 * the mask of the whole batch bit for bit (what N ranks need to train as one process); row 0
 * is the plain op; a negative first row is refused. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

/* y of the whole (6, 3, 4, 5) x against y of rows [0, 1), [1, 4), [4, 6) run apart */
static void check_cut(bool spatial) {
    int64_t s[4] = {6, 3, 4, 5}, per_row = 60, cuts[4] = {0, 1, 4, 6};
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 4, s), *whole = kt_new(kt_cpu(), KILN_F32, 4, s);
    kiln_tensor *parts = kt_new(kt_cpu(), KILN_F32, 4, s);
    kt_rng r;
    kt_rng_seed(&r, 41);
    kt_fill_random(x, &r, 0.5, 1.5);
    kt_poison(parts);
    OK(spatial ? kiln_spatial_dropout2d(x, 0.4f, 7, whole) : kiln_dropout(x, 0.4f, 7, whole));
    for (int k = 0; k < 3; k++) {
        int64_t shape[4] = {cuts[k + 1] - cuts[k], 3, 4, 5};
        kiln_tensor *xv, *yv;
        OK(kiln_tensor_view(x, cuts[k] * per_row, 4, shape, &xv));
        OK(kiln_tensor_view(parts, cuts[k] * per_row, 4, shape, &yv));
        OK(kiln_dropout_rows(xv, 0.4f, 7, cuts[k], spatial, yv));
        kiln_tensor_free(xv);
        kiln_tensor_free(yv);
    }
    float *a = kt_get_f32(whole), *b = kt_get_f32(parts);
    int dropped = 0;
    for (int i = 0; i < 360; i++) dropped += a[i] == 0.0f;
    cr_expect(dropped > 40 && dropped < 320, "%d of 360 dropped at rate 0.4", dropped);
    kt_expect_bitwise(spatial ? "SpatialDropout2D: rows apart vs the whole batch" : "Dropout: rows apart vs the whole batch",
                      a, b, sizeof(float) * 360);
    free(a);
    free(b);
    kiln_tensor_free(x);
    kiln_tensor_free(whole);
    kiln_tensor_free(parts);
}

Test(dropout_rows, dropout_shares_draw_the_whole_batch_mask) { check_cut(false); }
Test(dropout_rows, spatial_shares_draw_the_whole_batch_mask) { check_cut(true); }

Test(dropout_rows, row0_is_the_plain_op_and_negative_rows_are_refused) {
    int64_t s[2] = {4, 9};
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 2, s), *y = kt_new(kt_cpu(), KILN_F32, 2, s);
    kiln_tensor *z = kt_new(kt_cpu(), KILN_F32, 2, s);
    kt_rng r;
    kt_rng_seed(&r, 42);
    kt_fill_random(x, &r, -1, 1);
    OK(kiln_dropout(x, 0.3f, 11, y));
    OK(kiln_dropout_rows(x, 0.3f, 11, 0, false, z));
    float *a = kt_get_f32(y), *b = kt_get_f32(z);
    kt_expect_bitwise("first row 0 vs kiln_dropout", a, b, sizeof(float) * 36);
    cr_expect_eq(kiln_dropout_rows(x, 0.3f, 11, -1, false, z), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "first row -1") != NULL, "message: %s", kiln_last_error());
    cr_expect_eq(kiln_dropout_rows(x, 0.3f, 11, 1, true, z), KILN_ERR_SHAPE, "spatial needs (N, H, W, C): %s",
                 kiln_last_error());
    free(a);
    free(b);
    kiln_tensor_free(x);
    kiln_tensor_free(y);
    kiln_tensor_free(z);
}
