/* bench/cases.c: the BatchNorm shapes kiln-bench runs, in sets: the seed model's two BN layers
 * at batch 32 and 256, ResNet-50's BN layers at batch 256, shapes that stress a kernel's
 * planning (few channels over many values, BatchNorm1d, batch 1 and 2, odd channel counts),
 * small shapes the CPU backend can time, and ResNet-20's at batch 128 (the CPU's training model). torch_bn.py runs the same list: it reads it from
 * `kiln-bench bn --list`, so this file is the only copy. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define SEED BENCH_SET_SEED
#define R50 BENCH_SET_RESNET50
#define PATH BENCH_SET_PATHOLOGICAL
#define SMALL BENCH_SET_SMALL
#define R20 BENCH_SET_RESNET20

static const bench_case cases[] = {
    /* the seed model: Conv2D(32, 3x3) on 32x32x3 -> (N, 30, 30, 32); Dense(64) -> (N, 64) */
    {"seed-conv-n32", 32, 32, 30, 30, SEED | SMALL},
    {"seed-dense-n32", 32, 64, 0, 0, SEED | SMALL},
    {"seed-conv-n256", 256, 32, 30, 30, SEED},
    {"seed-dense-n256", 256, 64, 0, 0, SEED | SMALL},
    /* ResNet-50 at batch 256: (C, H x W) of its BN layers */
    {"r50-c64-112", 256, 64, 112, 112, R50},
    {"r50-c64-56", 256, 64, 56, 56, R50},
    {"r50-c256-56", 256, 256, 56, 56, R50},
    {"r50-c128-56", 256, 128, 56, 56, R50},
    {"r50-c128-28", 256, 128, 28, 28, R50},
    {"r50-c512-28", 256, 512, 28, 28, R50},
    {"r50-c256-28", 256, 256, 28, 28, R50},
    {"r50-c256-14", 256, 256, 14, 14, R50},
    {"r50-c1024-14", 256, 1024, 14, 14, R50},
    {"r50-c512-14", 256, 512, 14, 14, R50},
    {"r50-c512-7", 256, 512, 7, 7, R50},
    {"r50-c2048-7", 256, 2048, 7, 7, R50},
    /* ResNet-20 at batch 128 on 32x32x3 (kiln-bench train's model): its three BN shapes */
    {"r20-c16-32", 128, 16, 32, 32, R20},
    {"r20-c32-16", 128, 32, 16, 16, R20},
    {"r20-c64-8", 128, 64, 8, 8, R20},
    /* pathological: few channels over many values, BatchNorm1d, tiny batches, odd C */
    {"c2-n32-512", 32, 2, 512, 512, PATH},
    {"c6-n32-512", 32, 6, 512, 512, PATH},
    {"bn1d-3136x256", 3136, 256, 0, 0, PATH},
    {"bn1d-65536x2048", 65536, 2048, 0, 0, PATH},
    {"n1-c64-112", 1, 64, 112, 112, PATH},
    {"n2-c256-56", 2, 256, 56, 56, PATH},
    {"c3-n64-224", 64, 3, 224, 224, PATH},
    {"c27-n64-56", 64, 27, 56, 56, PATH},
    {"c1000-n64-7", 64, 1000, 7, 7, PATH},
    /* small odd shapes for the CPU backend */
    {"small-c27-n4-15", 4, 27, 15, 15, SMALL},
    {"small-c6-n1-33", 1, 6, 33, 33, SMALL},
    {"small-bn1d-64x1000", 64, 1000, 0, 0, SMALL},
};

kiln_status bench_parse_sets(const char *s, unsigned *sets) {
    static const struct {
        const char *name;
        unsigned bits;
    } names[] = {{"all", SEED | R50 | PATH | SMALL | R20}, {"seed", SEED}, {"resnet50", R50},
                 {"pathological", PATH}, {"small", SMALL}, {"resnet20", R20}};
    *sets = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        size_t k = 0;
        while (k < sizeof names / sizeof names[0] && strcmp(tok, names[k].name)) k++;
        if (k == sizeof names / sizeof names[0]) {
            fprintf(stderr, "kiln-bench: unknown case set '%s' (all, seed, resnet50, pathological, small, resnet20)\n", tok);
            return KILN_ERR_INVALID_ARG;
        }
        *sets |= names[k].bits;
    }
    return *sets ? KILN_OK : KILN_ERR_INVALID_ARG;
}

kiln_status bench_configs(unsigned sets, unsigned dtypes, unsigned layouts, bench_config **out,
                          int *n) {
    static const kiln_dtype order[] = {KILN_F32, KILN_F16, KILN_BF16};
    static const kiln_layout lays[] = {KILN_LAYOUT_NHWC, KILN_LAYOUT_NCHW};
    const int nc = (int)(sizeof cases / sizeof cases[0]);
    bench_config *v = malloc(sizeof *v * (size_t)nc * 3 * 2);
    if (!v) return KILN_ERR_OOM;
    int k = 0;
    for (int d = 0; d < 3; d++) {
        if (!(dtypes & (1u << order[d]))) continue;
        for (int i = 0; i < nc; i++) {
            if (!(cases[i].sets & sets)) continue;
            for (int l = 0; l < 2; l++) {
                if (cases[i].h == 0 && l > 0) break; /* (N, C): one layout */
                if (cases[i].h > 0 && !(layouts & (1u << lays[l]))) continue;
                v[k++] = (bench_config){&cases[i], lays[l], order[d]};
            }
        }
    }
    *out = v;
    *n = k;
    return KILN_OK;
}

const char *bench_layout_name(const bench_config *c) {
    if (c->cs->h == 0) return "nc";
    return c->layout == KILN_LAYOUT_NCHW ? "nchw" : "nhwc";
}

int64_t bench_config_numel(const bench_config *c) {
    const bench_case *s = c->cs;
    return s->n * s->c * (s->h ? s->h * s->w : 1);
}

int bench_config_shape(const bench_config *c, int64_t shape[4]) {
    const bench_case *s = c->cs;
    if (s->h == 0) {
        shape[0] = s->n, shape[1] = s->c;
        return 2;
    }
    shape[0] = s->n;
    if (c->layout == KILN_LAYOUT_NCHW) shape[1] = s->c, shape[2] = s->h, shape[3] = s->w;
    else shape[1] = s->h, shape[2] = s->w, shape[3] = s->c;
    return 4;
}

char *bench_config_shape_str(const bench_config *c, char *buf, size_t n) {
    const bench_case *s = c->cs;
    if (s->h == 0) snprintf(buf, n, "(%lld, %lld)", (long long)s->n, (long long)s->c);
    else
        snprintf(buf, n, "(%lld, %lld, %lld, %lld)", (long long)s->n, (long long)s->c,
                 (long long)s->h, (long long)s->w);
    return buf;
}

const char *bench_dir_name(int dir) {
    static const char *names[BENCH_DIR_COUNT] = {"fwd_train", "fwd_infer", "bwd"};
    return dir >= 0 && dir < BENCH_DIR_COUNT ? names[dir] : "?";
}

double bench_bn_bytes(const bench_config *c, int dir) {
    double e = (double)kiln_dtype_size(c->dtype) * (double)bench_config_numel(c);
    return dir == BENCH_DIR_BWD ? 3.0 * e : 2.0 * e;
}
