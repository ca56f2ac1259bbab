// cuda/conv.cu: Conv2D forward, backward-data and backward-filter on cuDNN.
//
// Layouts: images NHWC (CUDNN_TENSOR_NHWC descriptors, no copies). cuDNN's NHWC filter layout
// is (out, kh, kw, in) while Keras keeps (kh, kw, in, out) (in: per group), which read row-major is the
// (K = kh kw in, out) matrix: a transpose kernel turns it into cuDNN's (out, K) in the scratch
// buffer before forward / backward-data, and turns backward-filter's (out, K) result back.
//
// Groups (Keras' groups, DepthwiseConv2D): cuDNN's grouped convolution
// (cudnnSetConvolutionGroupCount), the filter (out, kh, kw, in / groups).
//
// Padding: cuDNN pads symmetrically. TensorFlow's "same" pads one more after than before when
// the total is odd; on such an axis the input (or dx) gets an explicit zero border in scratch
// instead and cuDNN pads nothing there (TensorFlow does the same for cuDNN).
//
// Precision: KILN_MATH_STRICT runs with CUDNN_FMA_MATH (no TF32 tensor cores) and only the
// direct / GEMM-family algorithms (the FFT and Winograd transforms are skipped: their error is
// not that of an fp32 dot product). KILN_MATH_TF32 runs with CUDNN_DEFAULT_MATH (TF32 allowed)
// and any algorithm. Never CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION (fp16 down-conversion).
//
// Algorithms: cuDNN's heuristic ranking (cudnnGet*Algorithm_v7), once per shape and mode,
// cached. The first usable deterministic one wins: forward algorithms are all deterministic;
// backward-data skips ALGO_0 and backward-filter ALGO_0 and ALGO_3 (atomics), as the ranking's
// determinism field says. If the ranking offers nothing usable, IMPLICIT_PRECOMP_GEMM or
// IMPLICIT_GEMM (forward) or ALGO_1 (backward; deterministic, exact) is the fallback. Workspace comes from
// kiln_cuda_scratch, capped at CONV_WS_LIMIT. The bias is added and db (a deterministic
// double-precision sum over N, OH, OW through the backend's SUM) computed by kiln's own kernels.
#include <mutex>
#include <vector>

#include "common.cuh"

namespace {

constexpr size_t CONV_WS_LIMIT = (size_t)1 << 30;
constexpr size_t CONV_ALIGN = 256;

enum conv_kind { CONV_FWD = 0, CONV_BWD_DATA, CONV_BWD_FILTER };

const char *kind_name(conv_kind k) {
    return k == CONV_FWD ? "conv2d" : k == CONV_BWD_DATA ? "conv2d_backward_data"
                                                         : "conv2d_backward_filter";
}

// One conv op's geometry, its padding split into cuDNN's symmetric part and an explicit border.
struct conv_geom {
    int64_t n, h, w, c;        // x (N, H, W, C)
    int64_t kh, kw, cg, oc;    // w (kh, kw, C / groups, OC)
    int64_t groups;
    int64_t oh, ow;            // y (N, OH, OW, OC)
    int64_t sh, sw, dh, dw;    // strides, dilations
    int64_t pad_h, pad_w;      // cuDNN's padding, both sides
    int64_t top, bottom, left, right; // the explicit zero border (0 where cuDNN pads)
    int64_t hp, wp;            // the image cuDNN sees: H + top + bottom, W + left + right
    int64_t math;              // kiln_math
    bool bordered() const { return top || bottom || left || right; }
};

// one axis: before = the op's pad, after = what the shapes imply (0 for "valid")
void split_pad(int64_t before, int64_t in, int64_t out, int64_t k, int64_t s, int64_t d,
               int64_t *sym, int64_t *lo, int64_t *hi) {
    int64_t after = (out - 1) * s + (k - 1) * d + 1 - in - before;
    if (after < 0) after = 0;
    *sym = before == after ? before : 0;
    *lo = before == after ? 0 : before;
    *hi = before == after ? 0 : after;
}

// x, w, y: the op's image, kernel and output-image tensors (x or dx, w or dw, y or dy)
conv_geom geometry(const kiln_conv2d_args &a, const kiln_tensor *x, const kiln_tensor *w,
                   const kiln_tensor *y) {
    conv_geom g;
    g.n = x->shape[0], g.h = x->shape[1], g.w = x->shape[2], g.c = x->shape[3];
    g.kh = w->shape[0], g.kw = w->shape[1], g.cg = w->shape[2], g.oc = w->shape[3];
    g.groups = a.groups;
    g.oh = y->shape[1], g.ow = y->shape[2];
    g.sh = a.stride_h, g.sw = a.stride_w, g.dh = a.dilation_h, g.dw = a.dilation_w;
    g.math = a.math;
    split_pad(a.pad_top, g.h, g.oh, g.kh, g.sh, g.dh, &g.pad_h, &g.top, &g.bottom);
    split_pad(a.pad_left, g.w, g.ow, g.kw, g.sw, g.dw, &g.pad_w, &g.left, &g.right);
    g.hp = g.h + g.top + g.bottom;
    g.wp = g.w + g.left + g.right;
    return g;
}

struct conv_descs {
    cudnnTensorDescriptor_t x = nullptr, y = nullptr; // the (bordered) input, the output
    cudnnFilterDescriptor_t w = nullptr;              // (out, kh, kw, in)
    cudnnConvolutionDescriptor_t conv = nullptr;
    conv_descs() = default;
    conv_descs(const conv_descs &) = delete;
    conv_descs &operator=(const conv_descs &) = delete;
    ~conv_descs() {
        if (x) cudnnDestroyTensorDescriptor(x);
        if (y) cudnnDestroyTensorDescriptor(y);
        if (w) cudnnDestroyFilterDescriptor(w);
        if (conv) cudnnDestroyConvolutionDescriptor(conv);
    }

    kiln_status init(const conv_geom &g) {
        KILN_CUDNN_TRY(cudnnCreateTensorDescriptor(&x));
        KILN_CUDNN_TRY(cudnnCreateTensorDescriptor(&y));
        KILN_CUDNN_TRY(cudnnCreateFilterDescriptor(&w));
        KILN_CUDNN_TRY(cudnnCreateConvolutionDescriptor(&conv));
        // the 4d setters take (n, c, h, w) whatever the memory format
        KILN_CUDNN_TRY(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, (int)g.n,
                                                  (int)g.c, (int)g.hp, (int)g.wp));
        KILN_CUDNN_TRY(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, (int)g.n,
                                                  (int)g.oc, (int)g.oh, (int)g.ow));
        KILN_CUDNN_TRY(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, (int)g.oc,
                                                  (int)g.cg, (int)g.kh, (int)g.kw));
        KILN_CUDNN_TRY(cudnnSetConvolution2dDescriptor(conv, (int)g.pad_h, (int)g.pad_w, (int)g.sh,
                                                       (int)g.sw, (int)g.dh, (int)g.dw,
                                                       CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
        KILN_CUDNN_TRY(cudnnSetConvolutionGroupCount(conv, (int)g.groups));
        int n = 0, c = 0, h = 0, wd = 0;
        KILN_CUDNN_TRY(cudnnGetConvolution2dForwardOutputDim(conv, x, w, &n, &c, &h, &wd));
        if (n != g.n || c != g.oc || h != g.oh || wd != g.ow)
            return kiln_error(KILN_ERR_DEVICE,
                              "cuda conv2d: cuDNN computes an output of (N %d, H %d, W %d, C %d), "
                              "kiln (%lld, %lld, %lld, %lld)",
                              n, h, wd, c, (long long)g.n, (long long)g.oh, (long long)g.ow,
                              (long long)g.oc);
        return KILN_OK;
    }
};

// ---- algorithm choice ----------------------------------------------------------------------

struct algo_choice {
    int algo;
    cudnnMathType_t math;
    size_t workspace;
};

struct candidate {
    int algo;
    cudnnStatus_t status;
    cudnnDeterminism_t determinism;
    cudnnMathType_t math;
};

// FFT and Winograd: transforms whose rounding is not that of an fp32 dot product
bool transform_algo(conv_kind k, int a) {
    switch (k) {
    case CONV_FWD:
        return a == CUDNN_CONVOLUTION_FWD_ALGO_FFT || a == CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING ||
               a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD ||
               a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
    case CONV_BWD_DATA:
        return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT ||
               a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING ||
               a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD ||
               a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
    default:
        return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT ||
               a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING ||
               a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED;
    }
}

// the workspace algorithm a needs; a failure means "not usable here", not an error
cudnnStatus_t workspace_of(cudnnHandle_t h, conv_kind k, const conv_descs &d, int a, size_t *ws) {
    switch (k) {
    case CONV_FWD:
        return cudnnGetConvolutionForwardWorkspaceSize(h, d.x, d.w, d.conv, d.y,
                                                       (cudnnConvolutionFwdAlgo_t)a, ws);
    case CONV_BWD_DATA:
        return cudnnGetConvolutionBackwardDataWorkspaceSize(h, d.w, d.y, d.conv, d.x,
                                                            (cudnnConvolutionBwdDataAlgo_t)a, ws);
    default:
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(
            h, d.x, d.y, d.conv, d.w, (cudnnConvolutionBwdFilterAlgo_t)a, ws);
    }
}

template <class Perf> void add_ranked(const std::vector<Perf> &p, int got, std::vector<candidate> *out) {
    for (int i = 0; i < got; i++)
        out->push_back({(int)p[(size_t)i].algo, p[(size_t)i].status, p[(size_t)i].determinism,
                        p[(size_t)i].mathType});
}

// cuDNN's heuristic ranking, best first
kiln_status ranked(cudnnHandle_t h, conv_kind k, const conv_descs &d, std::vector<candidate> *out) {
    int max = 0, got = 0;
    switch (k) {
    case CONV_FWD: {
        KILN_CUDNN_TRY(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max));
        std::vector<cudnnConvolutionFwdAlgoPerf_t> p((size_t)(max > 0 ? max : 1));
        KILN_CUDNN_TRY(cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, max, &got,
                                                              p.data()));
        add_ranked(p, got, out);
        break;
    }
    case CONV_BWD_DATA: {
        KILN_CUDNN_TRY(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max));
        std::vector<cudnnConvolutionBwdDataAlgoPerf_t> p((size_t)(max > 0 ? max : 1));
        KILN_CUDNN_TRY(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w, d.y, d.conv, d.x, max,
                                                                   &got, p.data()));
        add_ranked(p, got, out);
        break;
    }
    default: {
        KILN_CUDNN_TRY(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max));
        std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> p((size_t)(max > 0 ? max : 1));
        KILN_CUDNN_TRY(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x, d.y, d.conv, d.w,
                                                                     max, &got, p.data()));
        add_ranked(p, got, out);
        break;
    }
    }
    return KILN_OK;
}

kiln_status choose(cudnnHandle_t h, conv_kind k, const conv_geom &g, const conv_descs &d,
                   algo_choice *out) {
    const bool strict = g.math == KILN_MATH_STRICT;
    const cudnnMathType_t want = strict ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
    KILN_CUDNN_TRY(cudnnSetConvolutionMathType(d.conv, want));
    std::vector<candidate> c;
    KILN_TRY(ranked(h, k, d, &c));
    // fallbacks, deterministic and exact: the algorithms cuDNN documents for an NHWC filter
    if (k == CONV_FWD) {
        c.push_back({CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, CUDNN_STATUS_SUCCESS,
                     CUDNN_DETERMINISTIC, want});
        c.push_back({CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_STATUS_SUCCESS,
                     CUDNN_DETERMINISTIC, want});
    } else {
        c.push_back({1, CUDNN_STATUS_SUCCESS, CUDNN_DETERMINISTIC, want}); // BWD_{DATA,FILTER}_ALGO_1
    }
    for (int pass = 0; pass < 2; pass++) // deterministic algorithms first
        for (const candidate &a : c) {
            if (a.status != CUDNN_STATUS_SUCCESS) continue;
            if (pass == 0 && a.determinism != CUDNN_DETERMINISTIC) continue;
            if (a.math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
            if (strict && (a.math == CUDNN_TENSOR_OP_MATH || transform_algo(k, a.algo))) continue;
            const cudnnMathType_t m = strict ? CUDNN_FMA_MATH : a.math;
            size_t ws = 0;
            if (cudnnSetConvolutionMathType(d.conv, m) != CUDNN_STATUS_SUCCESS) continue;
            if (workspace_of(h, k, d, a.algo, &ws) != CUDNN_STATUS_SUCCESS || ws > CONV_WS_LIMIT)
                continue;
            *out = {a.algo, m, ws};
            return KILN_OK;
        }
    return kiln_error(KILN_ERR_UNSUPPORTED,
                      "cuda: kiln_%s: cuDNN offers no usable algorithm for x (%lld, %lld, %lld, "
                      "%lld), kernel %lldx%lld -> %lld, strides %lldx%lld, dilation %lldx%lld, %lld "
                      "groups, %s",
                      kind_name(k), (long long)g.n, (long long)g.h, (long long)g.w,
                      (long long)g.c, (long long)g.kh, (long long)g.kw, (long long)g.oc,
                      (long long)g.sh, (long long)g.sw, (long long)g.dh, (long long)g.dw,
                      (long long)g.groups, strict ? "strict fp32" : "tf32");
}

// chosen algorithms by (kind, device, geometry, math); a few hundred shapes at most in practice
struct algo_entry {
    int64_t key[20];
    algo_choice choice;
};
std::mutex algo_lock;
std::vector<algo_entry> algo_cache;

kiln_status algorithm(const kiln_backend *be, cudnnHandle_t h, conv_kind k, const conv_geom &g,
                      const conv_descs &d, algo_choice *out) {
    const int64_t key[20] = {k,    be->device, g.n,  g.hp, g.wp, g.c,     g.kh,    g.kw,   g.oc, g.oh,
                             g.ow, g.sh,       g.sw, g.dh, g.dw, g.pad_h, g.pad_w, g.math, g.groups, 0};
    bool found = false;
    {
        std::lock_guard<std::mutex> lock(algo_lock);
        for (const algo_entry &e : algo_cache)
            if (!memcmp(e.key, key, sizeof key)) {
                *out = e.choice;
                found = true;
                break;
            }
    }
    if (!found) {
        KILN_TRY(choose(h, k, g, d, out));
        algo_entry e;
        memcpy(e.key, key, sizeof key);
        e.choice = *out;
        std::lock_guard<std::mutex> lock(algo_lock);
        if (algo_cache.size() >= 4096) algo_cache.clear();
        algo_cache.push_back(e);
    }
    KILN_CUDNN_TRY(cudnnSetConvolutionMathType(d.conv, out->math));
    return KILN_OK;
}

// ---- small kernels ---------------------------------------------------------------------------

// dst (cols, rows) = src (rows, cols)^T
struct transpose_f {
    const float *src;
    float *dst;
    int64_t rows, cols;
    __device__ void operator()(int64_t i) const {
        const int64_t r = i / cols, c = i % cols;
        dst[c * rows + r] = src[i];
    }
};

// dst (N, DH, DW, C)[n, y, x, c] = src (N, SH, SW, C)[n, y + oy, x + ox, c], 0 outside src:
// a zero border around x (oy, ox < 0) or the crop of a bordered dx (oy, ox > 0)
struct shift_f {
    const float *src;
    float *dst;
    int64_t sh, sw, dh, dw, c, oy, ox;
    __device__ void operator()(int64_t i) const {
        const int64_t k = i % c, x = i / c % dw, y = i / c / dw % dh, n = i / c / dw / dh;
        const int64_t sy = y + oy, sx = x + ox;
        const bool in = sy >= 0 && sy < sh && sx >= 0 && sx < sw;
        dst[i] = in ? src[((n * sh + sy) * sw + sx) * c + k] : 0.0f;
    }
};

// y (rows, oc) += b (oc)
struct bias_f {
    float *y;
    const float *b;
    int64_t oc;
    __device__ void operator()(int64_t i) const { y[i] = __fadd_rn(y[i], b[i % oc]); }
};

// ---- the three ops ---------------------------------------------------------------------------

// scratch: the transposed kernel, the bordered image (when needed), cuDNN's workspace
struct conv_scratch {
    float *wt, *border;
    void *ws;
};

size_t align_up(size_t v) { return (v + CONV_ALIGN - 1) / CONV_ALIGN * CONV_ALIGN; }

kiln_status take_scratch(kiln_backend *be, const conv_geom &g, size_t ws, conv_scratch *s) {
    const size_t wt_bytes = align_up((size_t)(g.kh * g.kw * g.cg * g.oc) * sizeof(float));
    const size_t border_bytes =
        g.bordered() ? align_up((size_t)(g.n * g.hp * g.wp * g.c) * sizeof(float)) : 0;
    void *base = NULL;
    KILN_TRY(kiln_cuda_scratch(be, wt_bytes + border_bytes + ws, &base));
    char *p = (char *)base;
    s->wt = (float *)p;
    s->border = g.bordered() ? (float *)(p + wt_bytes) : NULL;
    s->ws = ws ? (void *)(p + wt_bytes + border_bytes) : NULL;
    return KILN_OK;
}

// everything an op needs before its cuDNN call
struct conv_run {
    cudnnHandle_t h;
    conv_descs d;
    algo_choice a;
    conv_scratch s;
};

kiln_status prepare(kiln_backend *be, conv_kind k, const conv_geom &g, conv_run *r) {
    kiln_status st = KILN_OK;
    r->h = kiln_cuda_cudnn(be, &st);
    if (!r->h) return st;
    KILN_TRY(r->d.init(g));
    KILN_TRY(algorithm(be, r->h, k, g, r->d, &r->a));
    return take_scratch(be, g, r->a.workspace, &r->s);
}

// the bordered image: x with zeros around it (src: x (N, H, W, C); dst: (N, HP, WP, C))
kiln_status add_border(cudaStream_t s, const conv_geom &g, const float *x, float *xb) {
    shift_f f{x, xb, g.h, g.w, g.hp, g.wp, g.c, -g.top, -g.left};
    return kiln_cuda_map(s, g.n * g.hp * g.wp * g.c, f, "conv2d border");
}

kiln_status transpose(cudaStream_t s, const float *src, int64_t rows, int64_t cols, float *dst) {
    return kiln_cuda_map(s, rows * cols, transpose_f{src, dst, rows, cols}, "conv2d kernel transpose");
}

const float kOne = 1.0f, kZero = 0.0f;

kiln_status forward(kiln_backend *be, const kiln_conv2d_args &a) {
    const kiln_tensor *x = a.x, *w = a.w, *b = a.b;
    kiln_tensor *y = a.y;
    const conv_geom g = geometry(a, x, w, y);
    const cudaStream_t s = kiln_cuda_stream(be);
    conv_run r;
    KILN_TRY(prepare(be, CONV_FWD, g, &r));
    KILN_TRY(transpose(s, (const float *)w->data, g.kh * g.kw * g.cg, g.oc, r.s.wt));
    const float *xin = (const float *)x->data;
    if (g.bordered()) {
        KILN_TRY(add_border(s, g, xin, r.s.border));
        xin = r.s.border;
    }
    KILN_CUDNN_TRY(cudnnConvolutionForward(r.h, &kOne, r.d.x, xin, r.d.w, r.s.wt, r.d.conv,
                                           (cudnnConvolutionFwdAlgo_t)r.a.algo, r.s.ws,
                                           r.a.workspace, &kZero, r.d.y, y->data));
    if (!b) return KILN_OK;
    bias_f f{(float *)y->data, (const float *)b->data, g.oc};
    return kiln_cuda_map(s, kiln_tensor_numel(y), f, "conv2d bias");
}

kiln_status backward_data(kiln_backend *be, const kiln_conv2d_args &a) {
    const kiln_tensor *dy = a.dy, *w = a.w;
    kiln_tensor *dx = a.dx;
    const conv_geom g = geometry(a, dx, w, dy);
    const cudaStream_t s = kiln_cuda_stream(be);
    conv_run r;
    KILN_TRY(prepare(be, CONV_BWD_DATA, g, &r));
    KILN_TRY(transpose(s, (const float *)w->data, g.kh * g.kw * g.cg, g.oc, r.s.wt));
    float *out = g.bordered() ? r.s.border : (float *)dx->data;
    KILN_CUDNN_TRY(cudnnConvolutionBackwardData(r.h, &kOne, r.d.w, r.s.wt, r.d.y, dy->data,
                                                r.d.conv, (cudnnConvolutionBwdDataAlgo_t)r.a.algo,
                                                r.s.ws, r.a.workspace, &kZero, r.d.x, out));
    if (!g.bordered()) return KILN_OK;
    shift_f crop{out, (float *)dx->data, g.hp, g.wp, g.h, g.w, g.c, g.top, g.left};
    return kiln_cuda_map(s, kiln_tensor_numel(dx), crop, "conv2d crop");
}

kiln_status backward_filter(kiln_backend *be, const kiln_conv2d_args &a) {
    const kiln_tensor *x = a.x, *dy = a.dy;
    kiln_tensor *dw = a.dw, *db = a.db;
    const conv_geom g = geometry(a, x, dw, dy);
    const cudaStream_t s = kiln_cuda_stream(be);
    conv_run r;
    KILN_TRY(prepare(be, CONV_BWD_FILTER, g, &r));
    const float *xin = (const float *)x->data;
    if (g.bordered()) {
        KILN_TRY(add_border(s, g, xin, r.s.border));
        xin = r.s.border;
    }
    KILN_CUDNN_TRY(cudnnConvolutionBackwardFilter(r.h, &kOne, r.d.x, xin, r.d.y, dy->data,
                                                  r.d.conv,
                                                  (cudnnConvolutionBwdFilterAlgo_t)r.a.algo,
                                                  r.s.ws, r.a.workspace, &kZero, r.d.w, r.s.wt));
    // cuDNN's (out, K) back to Keras' (K, out)
    KILN_TRY(transpose(s, r.s.wt, g.oc, g.kh * g.kw * g.cg, (float *)dw->data));
    if (!db) return KILN_OK;
    // db = sum of dy over N, OH, OW (after this op's last use of the scratch)
    kiln_op sum = kiln_op_on(KILN_OP_SUM, dy);
    sum.reduce.x = dy;
    sum.reduce.y = db;
    sum.reduce.axes = 0x7;
    return kiln_cuda_reduce(be, &sum);
}

} // namespace

extern "C" kiln_status kiln_cuda_conv2d(kiln_backend *be, const kiln_op *op) {
    switch (op->type) {
    case KILN_OP_CONV2D: return forward(be, op->conv);
    case KILN_OP_CONV2D_BACK_DATA: return backward_data(be, op->conv);
    default: return backward_filter(be, op->conv);
    }
}
