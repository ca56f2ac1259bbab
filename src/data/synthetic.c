/* data/synthetic.c: the generated dataset: one drawn shape per class (circle, square,
 * triangle, plus, stripes both ways, ring, diagonal bar, dot grid, X) in a colour that leans
 * towards the class's, at a random place and size on a random dark background, antialiased
 * (2 x 2 samples per pixel), with triangular pixel noise. Learnable by a small CNN, not by
 * looking at the colour alone. Each image draws from its own splitmix64 stream: deterministic
 * from the seed, and independent of how many images are asked for. */
#include <math.h>
#include <stdio.h>

#include "data_internal.h"
#include "error.h"
#include "rng.h"

#define SYN_CLASSES 10

static bool in_box(float u, float v, float half) { return fabsf(u) <= half && fabsf(v) <= half; }

/* Whether (u, v), in units of the shape's radius around its centre, is inside shape k. */
static bool shape_mask(int k, float u, float v) {
    switch (k) {
    case 0: return u * u + v * v <= 1.0f;                                            /* circle */
    case 1: return in_box(u, v, 0.8f);                                                 /* square */
    case 2: return v >= -0.9f && v <= 0.8f && fabsf(u) <= (v + 0.9f) * 0.55f;          /* triangle */
    case 3: return (fabsf(u) <= 0.28f && fabsf(v) <= 1.0f) || (fabsf(v) <= 0.28f && fabsf(u) <= 1.0f);
    case 4: return in_box(u, v, 1.0f) && ((int)floorf((v + 1.0f) * 2.5f) % 2 == 0);   /* h stripes */
    case 5: return in_box(u, v, 1.0f) && ((int)floorf((u + 1.0f) * 2.5f) % 2 == 0);   /* v stripes */
    case 6: { float d = u * u + v * v; return d >= 0.6f && d <= 1.0f; }               /* ring */
    case 7: return fabsf(u - v) <= 0.35f && fabsf(u + v) <= 1.6f;                      /* diagonal */
    case 8: {                                                                          /* dot grid */
        if (!in_box(u, v, 1.0f)) return false;
        float gu = fminf(fmaxf(roundf(u / 0.67f), -1.0f), 1.0f) * 0.67f;
        float gv = fminf(fmaxf(roundf(v / 0.67f), -1.0f), 1.0f) * 0.67f;
        return (u - gu) * (u - gu) + (v - gv) * (v - gv) <= 0.22f * 0.22f;
    }
    default: return in_box(u, v, 0.9f) && (fabsf(u - v) <= 0.25f || fabsf(u + v) <= 0.25f); /* X */
    }
}

static const float palette[SYN_CLASSES][3] = {
    {1.0f, 0.1f, 0.1f}, {0.1f, 1.0f, 0.1f}, {0.2f, 0.3f, 1.0f}, {1.0f, 1.0f, 0.1f}, {1.0f, 0.1f, 1.0f},
    {0.1f, 1.0f, 1.0f}, {1.0f, 0.55f, 0.0f}, {1.0f, 1.0f, 1.0f}, {0.6f, 0.2f, 1.0f}, {0.6f, 1.0f, 0.4f},
};

static float unit(kiln_rng *r) { return (float)kiln_rng_uniform(r); }
static float clamp01(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }

/* Draws example i of a stream into img (s x s x 3) and returns its label. */
static int32_t draw(uint64_t seed, uint64_t i, int s, int classes, float *img) {
    kiln_rng r = kiln_rng_stream(seed, i);
    int32_t label = (int32_t)kiln_rng_below(&r, (uint64_t)classes);
    /* the class's colour 60% of the time, another palette colour otherwise, jittered */
    int colour = unit(&r) < 0.6f ? label : (int)kiln_rng_below(&r, SYN_CLASSES);
    float fg[3], bg[3];
    for (int ch = 0; ch < 3; ch++) {
        fg[ch] = clamp01(0.35f + 0.65f * palette[colour][ch] + 0.3f * (unit(&r) - 0.5f));
        bg[ch] = 0.3f * unit(&r);
    }
    float cx = (float)s * (0.5f + 0.3f * (unit(&r) - 0.5f));
    float cy = (float)s * (0.5f + 0.3f * (unit(&r) - 0.5f));
    float rad = (float)s * (0.22f + 0.12f * unit(&r));
    for (int y = 0; y < s; y++)
        for (int x = 0; x < s; x++) {
            float cover = 0.0f; /* 2 x 2 samples per pixel */
            for (int q = 0; q < 4; q++) {
                float u = ((float)x + 0.25f + 0.5f * (float)(q & 1) - cx) / rad;
                float v = ((float)y + 0.25f + 0.5f * (float)(q >> 1) - cy) / rad;
                cover += shape_mask(label, u, v) ? 0.25f : 0.0f;
            }
            float *px = img + ((size_t)y * (size_t)s + (size_t)x) * 3;
            for (int ch = 0; ch < 3; ch++) {
                uint64_t bits = kiln_rng_next(&r); /* two 32-bit uniforms: triangular noise */
                float noise = 0.12f * ((float)(bits >> 32) * 0x1.0p-32f + (float)(uint32_t)bits * 0x1.0p-32f - 1.0f);
                px[ch] = clamp01(bg[ch] + (fg[ch] - bg[ch]) * cover + noise);
            }
        }
    return label;
}

static kiln_status make_split(const kiln_data_options *o, int64_t n, uint64_t stream, const char *what,
                              kiln_dataset **out) {
    char name[128];
    snprintf(name, sizeof name, "synthetic %s (seed %llu)", what, (unsigned long long)o->seed);
    KILN_TRY(kiln_dataset_new(n, o->image_size, o->image_size, 3, o->num_classes, name, out));
    kiln_dataset *ds = *out;
    size_t per = kiln_dataset_image_numel(ds);
    uint64_t seed = kiln_hash64(o->seed ^ stream);
    for (int64_t i = 0; i < n; i++)
        ds->labels[i] = draw(seed, (uint64_t)i, o->image_size, o->num_classes, ds->images + (size_t)i * per);
    return KILN_OK;
}

kiln_status kiln_dataset_synthetic(const kiln_data_options *opt, kiln_dataset **train,
                                   kiln_dataset **test) {
    if (!train) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_synthetic: train is NULL");
    *train = NULL;
    if (test) *test = NULL;
    kiln_data_options o = opt ? *opt : (kiln_data_options){0};
    if (!o.n_train) o.n_train = 5000;
    if (!o.n_test) o.n_test = 1000;
    if (!o.image_size) o.image_size = 32;
    if (!o.num_classes) o.num_classes = SYN_CLASSES;
    if (o.n_train < 1 || o.n_test < 1 || o.image_size < 8 || o.image_size > 256 || o.num_classes < 2 ||
        o.num_classes > SYN_CLASSES)
        return kiln_error(KILN_ERR_INVALID_ARG,
                          "synthetic: n_train %lld, n_test %lld, image_size %d, num_classes %d "
                          "(sizes >= 1, image_size 8 .. 256, num_classes 2 .. %d)",
                          (long long)o.n_train, (long long)o.n_test, o.image_size, o.num_classes, SYN_CLASSES);
    KILN_TRY(make_split(&o, o.n_train, 0, "train", train));
    if (!test) return KILN_OK;
    kiln_status s = make_split(&o, o.n_test, 0x7e57ull, "test", test);
    if (s != KILN_OK) {
        kiln_dataset_free(*train);
        *train = NULL;
    }
    return s;
}
