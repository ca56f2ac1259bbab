/* data/batch.c: copying a list of examples into a host batch, optionally with CIFAR-style
 * augmentation (random crop of the zero-padded image, random left-right flip), seeded so a
 * batch depends only on its indices and its seed. */
#include <string.h>

#include "data_internal.h"
#include "error.h"
#include "rng.h"

/* One example: out(y, x) = in(y + dy, x' + dx) with x' = w - 1 - x when flipped, and 0 where
 * that falls outside the image (the zero padding). */
static void augment_one(const float *in, float *out, int h, int w, int c, int dy, int dx, bool flip) {
    size_t row = (size_t)w * (size_t)c;
    for (int y = 0; y < h; y++) {
        int sy = y + dy;
        float *o = out + (size_t)y * row;
        if (sy < 0 || sy >= h) {
            memset(o, 0, row * sizeof(float));
            continue;
        }
        for (int x = 0; x < w; x++) {
            int sx = (flip ? w - 1 - x : x) + dx;
            if (sx < 0 || sx >= w)
                memset(o + (size_t)x * c, 0, (size_t)c * sizeof(float));
            else
                memcpy(o + (size_t)x * c, in + (size_t)sy * row + (size_t)sx * c, (size_t)c * sizeof(float));
        }
    }
}

kiln_status kiln_dataset_gather(const kiln_dataset *ds, const int64_t *idx, int64_t count,
                                const kiln_augment *aug, uint64_t seed, float *images,
                                int32_t *labels) {
    if (!ds || count < 0 || (count > 0 && (!idx || !images || !labels)))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_gather: NULL argument or negative count");
    if (aug && (aug->pad < 0 || aug->pad > ds->h || aug->pad > ds->w))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_gather: padding %d for %dx%d images",
                          aug->pad, ds->h, ds->w);
    for (int64_t j = 0; j < count; j++)
        if (idx[j] < 0 || idx[j] >= ds->n)
            return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_gather: %s: index %lld (batch row %lld) "
                              "outside [0, %lld)", ds->source, (long long)idx[j], (long long)j,
                              (long long)ds->n);
    size_t per = kiln_dataset_image_numel(ds);
    bool plain = !aug || (aug->pad == 0 && !aug->flip);
    for (int64_t j = 0; j < count; j++) {
        const float *in = ds->images + (size_t)idx[j] * per;
        float *out = images + (size_t)j * per;
        labels[j] = ds->labels[idx[j]];
        if (plain) {
            memcpy(out, in, per * sizeof(float));
            continue;
        }
        kiln_rng r = kiln_rng_stream(seed, (uint64_t)j);
        int span = 2 * aug->pad + 1;
        int dy = (int)kiln_rng_below(&r, (uint64_t)span) - aug->pad;
        int dx = (int)kiln_rng_below(&r, (uint64_t)span) - aug->pad;
        bool flip = aug->flip && (kiln_rng_next(&r) >> 63);
        augment_one(in, out, ds->h, ds->w, ds->c, dy, dx, flip);
    }
    return KILN_OK;
}
