// cuda/batchnorm.cu: the CUDA backend's batch-norm ops (BN_FWD_TRAIN, BN_FWD_INFER, BN_BWD,
// BN_BWD_INFER): the plan of each call (channels last or first, vector width, mode, splits,
// how many items stay on chip) and the launches of kiln's kernels (bn_kernels.cuh); cuDNN's
// implementation (batchnorm_cudnn.cu) when the op asks for it and has a cuDNN counterpart.
// A plan (function attributes, occupancy, path) is made once per shape and kept in the backend
// context's plan cache (kiln_cuda_bn_plans, below), with the device's attributes.
#include <stdlib.h>

#include "bn_kernels.cuh"

using namespace kiln_bn;

namespace kiln_bn {

struct device_info {
    int sms, coop, smem_block_optin, smem_sm;
};

struct plan {
    bool cl, vec;
    int vw;                          // elements per vector access
    int L;                           // channel slots per warp
    int64_t cv, items, step, tiles;  // see bn_args; step: items per block per k; tiles = gridDim.x
    int mode, S, kc;                 // mode, splits (gridDim.y), items kept per thread
    size_t dyn;                      // dynamic shared memory per block
};

// What a plan depends on besides the device: the geometry, the dtype (its size and its
// kernels' registers), the pass (RED_STATS, RED_GRAD, or -1: an elementwise pass), the forced
// impl and frozen (reducing passes only), whether the pointers allow 16-byte vectors.
// Compared with memcmp: made by make_key only, which zeroes it first.
struct plan_key {
    int64_t outer, c, inner;
    int32_t dtype, pass, impl;
    uint8_t aligned, frozen, pad[2];
};

} // namespace kiln_bn

// A few dozen plans, the least recently used one replaced: a network has a handful of BN
// shapes, a benchmark sweep a few dozen.
enum { kPlanSlots = 64 };

struct kiln_cuda_bn_plans {
    bool have_dev;
    device_info dev;
    uint64_t tick;
    struct slot {
        plan_key key;
        plan p;
        uint64_t used; // 0: empty
    } slots[kPlanSlots];
};

extern "C" void kiln_cuda_bn_plans_free(kiln_cuda_bn_plans *plans) { free(plans); }

namespace {

typedef void (*kernel_fn)(bn_args);

kiln_status query_device(kiln_backend *be, device_info *d) {
    const int dev = kiln_cuda_ctx_of(be)->device;
    KILN_CUDA_TRY(cudaDeviceGetAttribute(&d->sms, cudaDevAttrMultiProcessorCount, dev));
    KILN_CUDA_TRY(cudaDeviceGetAttribute(&d->coop, cudaDevAttrCooperativeLaunch, dev));
    KILN_CUDA_TRY(cudaDeviceGetAttribute(&d->smem_block_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    KILN_CUDA_TRY(cudaDeviceGetAttribute(&d->smem_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev));
    return KILN_OK;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The shape's part of the plan. Vectors of 16 bytes need every access aligned: the base
// pointers (checked by the caller) and a row (C, channels last) or plane (H*W, channels first)
// that is a whole number of vectors.
plan shape_plan(const kiln_bn_geom &g, size_t esz, bool aligned) {
    plan p = {};
    const int V = (int)(16 / esz);
    p.cl = g.inner == 1;
    if (p.cl) { // (rows, C): lanes across channel vectors, the rest of the warp across rows
        p.vec = aligned && g.c % V == 0;
        p.vw = p.vec ? V : 1;
        p.cv = g.c / p.vw;
        p.L = 1;
        while (p.L < 32 && p.L < p.cv) p.L <<= 1;
        p.items = g.outer;
        p.step = (int64_t)kWarps * (32 / p.L);
        p.tiles = ceil_div(p.cv, p.L);
    } else { // (N, C, H*W): a block on one channel, its threads along the N planes of H*W
        p.vec = aligned && g.inner % V == 0;
        p.vw = p.vec ? V : 1;
        p.cv = g.inner / p.vw;
        p.L = 1;
        p.items = g.outer * p.cv;
        p.step = kThreads;
        p.tiles = g.c;
    }
    return p;
}

// Splits of a streaming pass: about four blocks per SM, at least one item per thread.
int streaming_splits(const plan &p, int sms) {
    int64_t s = ceil_div(4LL * sms, p.tiles), most = ceil_div(p.items, p.step);
    if (s > most) s = most;
    if (s > 65535) s = 65535;
    return (int)(s < 1 ? 1 : s);
}

bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

// The mode of a reducing call (docs/batchnorm.md): LOCAL when there are channel tiles enough to
// fill the GPU twice over; else COOP when every item fits on chip with all blocks resident;
// else MULTI. A forced impl takes its mode or fails.
kiln_status choose_mode(const device_info &d, kernel_fn kern, int nin, size_t esz,
                        kiln_bn_impl impl, plan *p) {
    cudaFuncAttributes fa;
    KILN_CUDA_TRY(cudaFuncGetAttributes(&fa, (const void *)kern));
    const int64_t max_dyn = (int64_t)d.smem_block_optin - (int64_t)fa.sharedSizeBytes;
    if (max_dyn > 0)
        KILN_CUDA_TRY(cudaFuncSetAttribute((const void *)kern, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)max_dyn));
    const int64_t per_k = (int64_t)nin * kThreads * p->vw * (int64_t)esz; // bytes per kept k
    p->kc = 0;
    p->dyn = 0;
    if (impl == KILN_BN_IMPL_KILN_BLOCK || (impl == KILN_BN_IMPL_KILN && p->tiles >= 2LL * d.sms)) {
        // LOCAL: keep what fits while two blocks share an SM; the rest is read again (from L2)
        int64_t room = (int64_t)d.smem_sm / 2 - (int64_t)fa.sharedSizeBytes - 1024;
        if (room > max_dyn) room = max_dyn;
        int64_t kc = room > 0 ? room / per_k : 0, need = ceil_div(p->items, p->step);
        if (kc > need) kc = need;
        p->mode = MODE_LOCAL;
        p->S = 1;
        p->kc = (int)kc;
        p->dyn = (size_t)(kc * per_k);
        return KILN_OK;
    }
    if (impl != KILN_BN_IMPL_KILN_MULTI && d.coop) {
        // COOP: the most splits (blocks per SM b = 8 .. 1) whose items all fit, all resident
        const int64_t most = ceil_div(p->items, p->step);
        for (int b = 8; b >= 1; b--) {
            int64_t S = (int64_t)b * d.sms / p->tiles;
            if (S > most) S = most;
            if (S > 65535) S = 65535;
            if (S < 1) continue;
            const int64_t kc = ceil_div(p->items, S * p->step), dyn = kc * per_k;
            if (dyn > max_dyn) continue;
            int occ = 0;
            KILN_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, (const void *)kern, kThreads,
                                                                       (size_t)dyn));
            if ((int64_t)occ * d.sms >= p->tiles * S) {
                p->mode = MODE_COOP;
                p->S = (int)S;
                p->kc = (int)kc;
                p->dyn = (size_t)dyn;
                return KILN_OK;
            }
        }
    }
    if (impl == KILN_BN_IMPL_KILN_GRID)
        return kiln_error(KILN_ERR_UNSUPPORTED,
                          "batchnorm: the cooperative path cannot take %lld x %lld items on this GPU "
                          "(%d SMs, cooperative launch %s)",
                          (long long)p->tiles, (long long)p->items, d.sms, d.coop ? "yes" : "no");
    p->mode = MODE_MULTI;
    p->S = streaming_splits(*p, d.sms);
    return KILN_OK;
}

// Scratch: the [S][C] partials (MULTI, COOP) and the [C] coefficients.
kiln_status carve(kiln_backend *be, size_t part_bytes, int64_t C, bn_args *a) {
    const size_t off = (part_bytes + 255) & ~(size_t)255;
    void *s = NULL;
    KILN_TRY(kiln_cuda_scratch(be, off + (size_t)C * sizeof(coef_t), &s));
    a->part = part_bytes ? s : NULL;
    a->coef = reinterpret_cast<coef_t *>(static_cast<char *>(s) + off);
    return KILN_OK;
}

// ---- the plan cache ----------------------------------------------------------------------

kiln_status plans_of(kiln_backend *be, kiln_cuda_bn_plans **out) {
    kiln_cuda_ctx *c = kiln_cuda_ctx_of(be);
    if (!c->bn_plans) {
        c->bn_plans = static_cast<kiln_cuda_bn_plans *>(calloc(1, sizeof *c->bn_plans));
        if (!c->bn_plans) return kiln_error(KILN_ERR_OOM, "batchnorm: out of host memory for the plan cache");
    }
    if (!c->bn_plans->have_dev) {
        KILN_TRY(query_device(be, &c->bn_plans->dev));
        c->bn_plans->have_dev = true;
    }
    *out = c->bn_plans;
    return KILN_OK;
}

plan_key make_key(const kiln_bn_geom &g, kiln_dtype dtype, int pass, kiln_bn_impl impl, bool frozen,
                  bool aligned) {
    plan_key k;
    memset(&k, 0, sizeof k); // the padding too: keys are compared with memcmp
    k.outer = g.outer;
    k.c = g.c;
    k.inner = g.inner;
    k.dtype = (int32_t)dtype;
    k.pass = pass;
    k.impl = pass < 0 ? 0 : (int32_t)impl;
    k.frozen = pass < 0 ? 0 : (uint8_t)frozen;
    k.aligned = (uint8_t)aligned;
    return k;
}

// The cached plan for k, or NULL (a miss: `*evict` is the slot to fill, empty or least recent).
plan *find_plan(kiln_cuda_bn_plans *pc, const plan_key &k, kiln_cuda_bn_plans::slot **evict) {
    kiln_cuda_bn_plans::slot *lru = &pc->slots[0];
    for (int i = 0; i < kPlanSlots; i++) {
        kiln_cuda_bn_plans::slot *sl = &pc->slots[i];
        if (sl->used && memcmp(&sl->key, &k, sizeof k) == 0) {
            sl->used = ++pc->tick;
            return &sl->p;
        }
        if (sl->used < lru->used) lru = sl;
    }
    *evict = lru;
    return NULL;
}

// The plan for k: cached, or made by make(plan *) and kept (a failed make keeps nothing).
template <class Make>
kiln_status cached_plan(kiln_cuda_bn_plans *pc, const plan_key &k, Make make, plan **out) {
    kiln_cuda_bn_plans::slot *sl = NULL;
    if ((*out = find_plan(pc, k, &sl)) != NULL) return KILN_OK;
    plan p = {};
    KILN_TRY(make(&p));
    sl->key = k;
    sl->p = p;
    sl->used = ++pc->tick;
    *out = &sl->p;
    return KILN_OK;
}

// ---- launches ------------------------------------------------------------------------------

// bn_args with a plan's launch fields.
bn_args planned(bn_args a, const plan &p) {
    a.L = p.L;
    a.S = p.S;
    a.kc = p.kc;
    a.cv = p.cv;
    a.items = p.items;
    a.mode = p.mode;
    return a;
}

// Runs a LOCAL, MULTI or APPLY plan (COOP: launch_coop). `kern` reduces (and, LOCAL, applies);
// MULTI applies with `apply`, reading `apply_in` as its x (the frozen backward scales dy alone).
kiln_status launch(kiln_backend *be, bn_args a, const plan &p, kernel_fn kern, kernel_fn fin,
                   kernel_fn apply, const void *apply_in) {
    cudaStream_t st = kiln_cuda_stream(be);
    const dim3 grid((unsigned)p.tiles, (unsigned)p.S), block(kThreads);
    a = planned(a, p);
    switch (p.mode) {
    case MODE_LOCAL:
        KILN_LAUNCH(kern, grid, block, p.dyn, st)(a);
        KILN_CUDA_CHECK_LAUNCH("bn_kernel (a block per channel tile)");
        return KILN_OK;
    case MODE_MULTI:
        a.mode = MODE_REDUCE;
        KILN_LAUNCH(kern, grid, block, 0, st)(a);
        KILN_CUDA_CHECK_LAUNCH("bn_kernel (reduce)");
        KILN_LAUNCH(fin, kiln_cuda_blocks(a.C * 32, kThreads), kThreads, 0, st)(a);
        KILN_CUDA_CHECK_LAUNCH("bn_finalize_kernel");
        a.mode = MODE_APPLY;
        a.kc = 0;
        a.x = apply_in;
        KILN_LAUNCH(apply, grid, block, 0, st)(a);
        KILN_CUDA_CHECK_LAUNCH("bn_kernel (apply)");
        return KILN_OK;
    case MODE_APPLY:
        a.kc = 0;
        KILN_LAUNCH(kern, grid, block, 0, st)(a);
        KILN_CUDA_CHECK_LAUNCH("bn_kernel (apply)");
        return KILN_OK;
    default:
        return kiln_error(KILN_ERR_INVALID_ARG, "batchnorm: mode %d is not launched here", p.mode);
    }
}

// The one cooperative launch, its status as the runtime returns it (the caller decides).
cudaError_t launch_coop(cudaStream_t st, bn_args a, const plan &p, kernel_fn kern) {
    return kiln_launch_coop(kern, dim3((unsigned)p.tiles, (unsigned)p.S), dim3(kThreads), p.dyn, st,
                            planned(a, p));
}

// A refused cooperative launch: cudaErrorCooperativeLaunchTooLarge when fewer blocks can be
// resident than the occupancy query promised (MPS limiting the SMs, a sanitizer's own use of
// the device). In automatic mode (KILN_BN_IMPL_KILN) MULTI computes the same op (within the
// parity tolerances; its splits differ) without a grid-wide barrier, so the call falls back to
// it; a forced GRID impl reports the refusal.
// (Pure, so a test on an emulated device can drive both answers.)
bool coop_falls_back(cudaError_t e, kiln_bn_impl impl) {
    return e == cudaErrorCooperativeLaunchTooLarge && impl == KILN_BN_IMPL_KILN;
}

// A plan turned to MULTI (after a refused cooperative launch).
void to_multi(plan *p, int sms) {
    p->mode = MODE_MULTI;
    p->S = streaming_splits(*p, sms);
    p->kc = 0;
    p->dyn = 0;
}

// The [S][C] partials a plan needs (none for LOCAL).
template <int RED> size_t partial_bytes(const plan &p, int64_t C) {
    if (p.mode == MODE_LOCAL) return 0;
    return (size_t)p.S * (size_t)C * (RED == RED_STATS ? sizeof(wpart) : sizeof(gpart));
}

// A COOP plan's launch. *fell_back: the runtime refused it and the plan is now MULTI (kept in
// the cache, so the shape does not ask again); else the launch's status.
template <int RED>
kiln_status try_coop(kiln_backend *be, bn_args a, plan *p, kernel_fn kern, kiln_bn_impl impl, int sms,
                     bool *fell_back) {
    *fell_back = false;
    KILN_TRY(carve(be, partial_bytes<RED>(*p, a.C), a.C, &a));
    const cudaError_t e = launch_coop(kiln_cuda_stream(be), a, *p, kern);
    if (coop_falls_back(e, impl)) {
        (void)cudaGetLastError(); // not sticky: cleared so the next launch check is not blamed
        to_multi(p, sms);
        *fell_back = true;
        return KILN_OK;
    }
    KILN_TRY(kiln_cuda_check_rt(e, "cudaLaunchCooperativeKernel(bn_kernel)", __FILE__, __LINE__));
    KILN_CUDA_CHECK_LAUNCH("bn_kernel (cooperative)");
    return KILN_OK;
}

template <int RED, class T> kernel_fn pick(const plan &p) {
    constexpr int V = (int)(16 / sizeof(T));
    if (p.cl) return p.vec ? bn_kernel<RED, true, T, V> : bn_kernel<RED, true, T, 1>;
    return p.vec ? bn_kernel<RED, false, T, V> : bn_kernel<RED, false, T, 1>;
}

template <int RED, class T> kernel_fn pick_finalize(const plan &p) {
    return p.cl ? bn_finalize_kernel<RED, true, T> : bn_finalize_kernel<RED, false, T>;
}

// Coefficients per channel, then one elementwise pass over a.x (x, or dy).
template <class T>
kiln_status elementwise(kiln_backend *be, kiln_cuda_bn_plans *pc, bn_args a, const kiln_bn_geom &g,
                        const plan_key &k, int kind) {
    KILN_TRY(carve(be, 0, g.c, &a));
    KILN_LAUNCH(bn_coef_kernel, kiln_cuda_blocks(g.c, kThreads), kThreads, 0, kiln_cuda_stream(be))(a, kind);
    KILN_CUDA_CHECK_LAUNCH("bn_coef_kernel");
    if (g.n == 0) return KILN_OK;
    const int sms = pc->dev.sms;
    auto make = [&](plan *p) -> kiln_status {
        *p = shape_plan(g, sizeof(T), k.aligned != 0);
        p->mode = MODE_APPLY;
        p->S = streaming_splits(*p, sms);
        return KILN_OK;
    };
    plan *p = NULL;
    KILN_TRY(cached_plan(pc, k, make, &p));
    return launch(be, a, *p, pick<RED_STATS, T>(*p), NULL, NULL, NULL);
}

// Statistics (RED_STATS: forward training) or gradient sums (RED_GRAD: backward), then apply.
template <int RED, class T>
kiln_status reduce_apply(kiln_backend *be, kiln_cuda_bn_plans *pc, bn_args a, const kiln_bn_geom &g,
                         const plan_key &k, kiln_bn_impl impl) {
    const device_info &d = pc->dev;
    auto make = [&](plan *p) -> kiln_status {
        *p = shape_plan(g, sizeof(T), k.aligned != 0);
        if (a.frozen) { // dgamma, dbeta by reduction; dx = A dy by the apply kernel
            to_multi(p, d.sms);
            return KILN_OK;
        }
        return choose_mode(d, pick<RED, T>(*p), RED == RED_GRAD ? 2 : 1, sizeof(T), impl, p);
    };
    plan *p = NULL;
    KILN_TRY(cached_plan(pc, k, make, &p));
    const kernel_fn kern = pick<RED, T>(*p);
    if (p->mode == MODE_COOP) {
        bool fell_back = false;
        KILN_TRY(try_coop<RED>(be, a, p, kern, impl, d.sms, &fell_back));
        if (!fell_back) return KILN_OK;
    }
    KILN_TRY(carve(be, partial_bytes<RED>(*p, g.c), g.c, &a));
    return launch(be, a, *p, kern, pick_finalize<RED, T>(*p), a.frozen ? pick<RED_STATS, T>(*p) : kern,
                  a.frozen ? a.dy : a.x);
}

const float *f32_or_null(const kiln_tensor *t) { return t ? static_cast<const float *>(t->data) : NULL; }
float *f32_or_null(kiln_tensor *t) { return t ? static_cast<float *>(t->data) : NULL; }

template <class T> kiln_status bn_run(kiln_backend *be, const kiln_op *op) {
    const kiln_bn_args &in = op->bn;
    const kiln_bn_geom g = kiln_bn_geometry(kiln_bn_data(op->type, &in), in.layout);
    if (g.n > INT32_MAX || g.c > INT32_MAX)
        return kiln_error(KILN_ERR_UNSUPPORTED,
                          "kiln_%s: %lld values per channel, %lld channels: the CUDA kernels take "
                          "fewer than 2^31 of each", kiln_op_name(op->type), (long long)g.n,
                          (long long)g.c);
    kiln_cuda_bn_plans *pc = NULL;
    KILN_TRY(plans_of(be, &pc));
    const kiln_bn_impl impl = in.impl;
    bool al = false;
    bn_args a = {};
    a.outer = g.outer;
    a.C = g.c;
    a.inner = g.inner;
    a.n = g.n;
    a.eps = in.epsilon;
    a.unbiased = in.unbiased;
    a.frozen = in.frozen;
    a.gamma = f32_or_null(in.gamma);
    switch (op->type) {
    case KILN_OP_BN_FWD_TRAIN:
        a.x = in.x->data;
        a.out = in.y->data;
        a.beta = f32_or_null(in.beta);
        a.mm = f32_or_null(in.moving_mean); // updated in place
        a.mv = f32_or_null(in.moving_var);
        a.save_mean = f32_or_null(in.save_mean);
        a.save_invstd = f32_or_null(in.save_invstd);
        a.keep = in.keep;
        a.w = in.weight;
        al = aligned16(a.x) && aligned16(a.out);
        return reduce_apply<RED_STATS, T>(be, pc, a, g, make_key(g, op->dtype, RED_STATS, impl, a.frozen, al),
                                          impl);
    case KILN_OP_BN_FWD_INFER:
        a.x = in.x->data;
        a.out = in.y->data;
        a.beta = f32_or_null(in.beta);
        a.mean_in = f32_or_null(in.mean);
        a.var_in = f32_or_null(in.var);
        a.save_mean = f32_or_null(in.save_mean);
        a.save_invstd = f32_or_null(in.save_invstd);
        al = aligned16(a.x) && aligned16(a.out);
        return elementwise<T>(be, pc, a, g, make_key(g, op->dtype, -1, impl, false, al), COEF_INFER);
    case KILN_OP_BN_BWD:
        a.x = in.x->data;
        a.dy = in.dy->data;
        a.out = in.dx->data;
        a.mean_in = f32_or_null(in.mean);
        a.invstd_in = f32_or_null(in.invstd);
        a.dgamma = f32_or_null(in.dgamma);
        a.dbeta = f32_or_null(in.dbeta);
        if (a.frozen && !a.dgamma && !a.dbeta) { // dx = dy gamma invstd
            a.x = a.dy;
            al = aligned16(a.x) && aligned16(a.out);
            return elementwise<T>(be, pc, a, g, make_key(g, op->dtype, -1, impl, false, al), COEF_DX_INVSTD);
        }
        al = aligned16(a.x) && aligned16(a.dy) && aligned16(a.out);
        return reduce_apply<RED_GRAD, T>(be, pc, a, g, make_key(g, op->dtype, RED_GRAD, impl, a.frozen, al),
                                         impl);
    case KILN_OP_BN_BWD_INFER:
        a.x = in.dy->data; // scaled alone
        a.out = in.dx->data;
        a.var_in = f32_or_null(in.var);
        al = aligned16(a.x) && aligned16(a.out);
        return elementwise<T>(be, pc, a, g, make_key(g, op->dtype, -1, impl, false, al), COEF_DX_VAR);
    default:
        return kiln_error(KILN_ERR_UNSUPPORTED, "batchnorm: op %s is not a BN op", kiln_op_name(op->type));
    }
}

// cuDNN has a counterpart for the training forward, the plain inference forward and the
// training backward; frozen layers and backward_infer always run kiln's kernels.
bool cudnn_can(const kiln_op *op) {
    switch (op->type) {
    case KILN_OP_BN_FWD_TRAIN: return true;
    case KILN_OP_BN_FWD_INFER: return !op->bn.save_mean && !op->bn.save_invstd;
    case KILN_OP_BN_BWD: return !op->bn.frozen;
    default: return false;
    }
}

} // namespace

extern "C" kiln_status kiln_cuda_batchnorm(kiln_backend *be, const kiln_op *op) {
    if (op->bn.impl == KILN_BN_IMPL_CUDNN && cudnn_can(op)) return kiln_cuda_batchnorm_cudnn(be, op);
    switch (op->dtype) {
    case KILN_F32: return bn_run<float>(be, op);
    case KILN_F16: return bn_run<__half>(be, op);
    case KILN_BF16: return bn_run<__nv_bfloat16>(be, op);
    default:
        return kiln_error(KILN_ERR_DTYPE, "kiln_%s: %s on CUDA", kiln_op_name(op->type),
                          kiln_dtype_name(op->dtype));
    }
}
