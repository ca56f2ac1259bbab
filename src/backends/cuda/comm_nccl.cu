// cuda/comm_nccl.cu: the CUDA backend's device communicator (kiln_cuda_comm_create, the
// backend's iface.comm_create; docs/distributed.md "NCCL"): a kiln_comm whose grads_begin
// all-reduces a bucket of gradient tensors with NCCL on a stream of its own, so the rest of the
// backward keeps running on the backend's stream. Made collectively over the ranks of a
// bootstrap communicator (the MPI one): rank 0's ncclGetUniqueId goes to every rank through the
// bootstrap's broadcast, each rank joins on its backend's device. A bucket: an event on the
// compute stream after its last gradient, the comm stream waits for it, scales each tensor by
// share / B (one kernel), ncclAllReduce sums in f32 (the bucket's tensors in one group), and
// records the done event; grads_wait makes the compute stream wait for it and polls it, with
// ncclCommGetAsyncError, against KILN_DIST_TIMEOUT (then ncclCommAbort): a lost peer gives a
// message, never a hang. The communicator is non-blocking (ncclConfig_t.blocking = 0) so that
// its creation is polled the same way. Every CUDA and NCCL call is checked. Built without NCCL
// (KILN_NCCL=OFF, or nccl.h not found) the backend has no device communicator.
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.cuh"
#include "comm_impl.h"

#if KILN_HAVE_NCCL
#include <nccl.h>

struct nccl_ctx {
    kiln_backend *be;
    kiln_comm *boot;     // the bootstrap: the host collectives (allreduce_sum, broadcast, barrier)
    ncclComm_t comm;     // NULL once aborted
    cudaStream_t stream; // the buckets' stream
    cudaEvent_t ready;   // on the compute stream: a bucket's gradients are written
    cudaEvent_t done;    // on the comm stream: every bucket begun so far is summed
    bool pending;        // a bucket was begun since the last grads_wait
    int rank, size;
    double timeout;
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static bool nccl_ok(ncclResult_t r) { return r == ncclSuccess || r == ncclInProgress; }

// an NCCL failure: the communicator is aborted (its pending work dropped) and the message names
// the call, the rank and NCCL's words
static kiln_status nccl_fail(nccl_ctx *c, ncclResult_t r, const char *what, const char *file, int line) {
    if (c->comm) (void)ncclCommAbort(c->comm);
    c->comm = NULL;
    return kiln_error(KILN_ERR_IO, "nccl: %s failed on rank %d of %d at %s:%d: %s (%s)", what, c->rank, c->size,
                      kiln_cuda_basename(file), line, ncclGetErrorString(r), ncclGetLastError(NULL));
}

#define KILN_NCCL_TRY(c, call)                                                          \
    do {                                                                                \
        ncclResult_t r_ = (call);                                                       \
        if (!nccl_ok(r_)) return nccl_fail((c), r_, #call, __FILE__, __LINE__);         \
    } while (0)

// waits until the communicator has no operation in progress and, when ev is given, until ev is
// done, against the deadline; an asynchronous NCCL error or the deadline aborts the communicator
static kiln_status settle(nccl_ctx *c, const char *what, cudaEvent_t ev) {
    double t0 = now();
    struct timespec nap = {0, 20000};
    for (long spins = 0;; spins++) {
        if (!c->comm) return kiln_error(KILN_ERR_IO, "nccl: %s on rank %d: the communicator was aborted", what, c->rank);
        ncclResult_t st = ncclSuccess;
        KILN_NCCL_TRY(c, ncclCommGetAsyncError(c->comm, &st));
        if (!nccl_ok(st)) return nccl_fail(c, st, what, __FILE__, __LINE__);
        bool done = st == ncclSuccess;
        if (done && ev) {
            cudaError_t e = cudaEventQuery(ev);
            if (e == cudaErrorNotReady) {
                (void)cudaGetLastError();
                done = false;
            } else {
                KILN_TRY(kiln_cuda_check_rt(e, "cudaEventQuery", __FILE__, __LINE__));
            }
        }
        if (done) return KILN_OK;
        if (now() - t0 > c->timeout) {
            (void)ncclCommAbort(c->comm);
            c->comm = NULL;
            return kiln_error(KILN_ERR_IO, "nccl: %s timed out on rank %d of %d after %g s (another rank stopped or "
                              "died; KILN_DIST_TIMEOUT sets the limit)", what, c->rank, c->size, c->timeout);
        }
        if (spins > 200) nanosleep(&nap, NULL);
    }
}

// ---- the kiln_comm interface -------------------------------------------------------------

// one bucket: after the compute stream's work so far, scaled and summed on the comm stream
static kiln_status nccl_grads_begin(void *ctx, kiln_tensor *const *t, int n, double scale) {
    nccl_ctx *c = (nccl_ctx *)ctx;
    if (!c->comm) return kiln_error(KILN_ERR_IO, "nccl: rank %d: the communicator was aborted", c->rank);
    for (int i = 0; i < n; i++)
        if (t[i]->backend != c->be || !kiln_tensor_is_contiguous(t[i]))
            return kiln_error(KILN_ERR_INVALID_ARG, "nccl: gradient '%s' is not a contiguous tensor of %s", t[i]->name,
                              c->be->name);
    KILN_TRY(kiln_cuda_activate(c->be));
    KILN_CUDA_TRY(cudaEventRecord(c->ready, kiln_cuda_stream(c->be)));
    KILN_CUDA_TRY(cudaStreamWaitEvent(c->stream, c->ready, 0));
    for (int i = 0; i < n; i++) {
        float *g = (float *)t[i]->data;
        if (scale != 1.0) KILN_TRY(kiln_cuda_scale_f32(c->stream, g, (float)scale, g, kiln_tensor_numel(t[i])));
    }
    ncclResult_t r = ncclGroupStart();
    for (int i = 0; i < n && nccl_ok(r); i++) {
        float *g = (float *)t[i]->data;
        r = ncclAllReduce(g, g, (size_t)kiln_tensor_numel(t[i]), ncclFloat, ncclSum, c->comm, c->stream);
    }
    ncclResult_t end = ncclGroupEnd(); // always, to close the group
    if (nccl_ok(r)) r = end;
    if (!nccl_ok(r)) return nccl_fail(c, r, "ncclAllReduce of a gradient bucket", __FILE__, __LINE__);
    KILN_TRY(settle(c, "ncclAllReduce of a gradient bucket", NULL));
    KILN_CUDA_TRY(cudaEventRecord(c->done, c->stream));
    c->pending = true;
    return KILN_OK;
}

// the compute stream waits for the buckets; the host polls them against the deadline
static kiln_status nccl_grads_wait(void *ctx) {
    nccl_ctx *c = (nccl_ctx *)ctx;
    if (!c->pending) return KILN_OK;
    KILN_TRY(kiln_cuda_activate(c->be));
    KILN_CUDA_TRY(cudaStreamWaitEvent(kiln_cuda_stream(c->be), c->done, 0));
    KILN_TRY(settle(c, "the gradient all-reduce", c->done));
    c->pending = false;
    return KILN_OK;
}

static kiln_status nccl_allreduce_sum(void *ctx, double *buf, int64_t n) {
    return kiln_comm_allreduce_sum(((nccl_ctx *)ctx)->boot, buf, n);
}
static kiln_status nccl_broadcast(void *ctx, void *buf, size_t nbytes, int root) {
    return kiln_comm_broadcast(((nccl_ctx *)ctx)->boot, buf, nbytes, root);
}
static kiln_status nccl_barrier(void *ctx) { return kiln_comm_barrier(((nccl_ctx *)ctx)->boot); }

// ncclCommFinalize's background work ended well within the deadline (no kiln_error)
static bool finalized(nccl_ctx *c) {
    double t0 = now();
    struct timespec nap = {0, 100000};
    ncclResult_t st = ncclInProgress;
    while (ncclCommGetAsyncError(c->comm, &st) == ncclSuccess && st == ncclInProgress && now() - t0 < c->timeout)
        nanosleep(&nap, NULL);
    return st == ncclSuccess;
}

static void nccl_free(void *ctx) {
    nccl_ctx *c = (nccl_ctx *)ctx;
    if (!c) return;
    (void)kiln_cuda_activate(c->be);
    // a non-blocking communicator finalizes in the background (polled quietly: free keeps the
    // caller's error message); one that fails to, or has a bucket still in flight, is aborted
    bool clean = c->comm && !c->pending && nccl_ok(ncclCommFinalize(c->comm)) && finalized(c);
    if (c->comm) (void)(clean ? ncclCommDestroy(c->comm) : ncclCommAbort(c->comm));
    if (c->stream) (void)cudaStreamDestroy(c->stream);
    if (c->ready) (void)cudaEventDestroy(c->ready);
    if (c->done) (void)cudaEventDestroy(c->done);
    (void)cudaGetLastError();
    free(c);
}

// the stream, the events, and the communicator on the backend's device (polled: non-blocking)
static kiln_status nccl_open(nccl_ctx *c, const ncclUniqueId *id) {
    KILN_TRY(kiln_cuda_activate(c->be));
    KILN_CUDA_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    KILN_CUDA_TRY(cudaEventCreateWithFlags(&c->ready, cudaEventDisableTiming));
    KILN_CUDA_TRY(cudaEventCreateWithFlags(&c->done, cudaEventDisableTiming));
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&c->comm, c->size, *id, c->rank, &cfg);
    if (!nccl_ok(r)) return nccl_fail(c, r, "ncclCommInitRankConfig", __FILE__, __LINE__);
    return settle(c, "ncclCommInitRankConfig", NULL);
}

extern "C" kiln_status kiln_cuda_comm_create(kiln_backend *be, kiln_comm *boot, kiln_comm **out) {
    *out = NULL;
    nccl_ctx *c = (nccl_ctx *)calloc(1, sizeof *c);
    if (!c) return kiln_error(KILN_ERR_OOM, "nccl: out of host memory");
    c->be = be;
    c->boot = boot;
    c->rank = kiln_comm_rank(boot);
    c->size = kiln_comm_size(boot);
    const char *t = getenv("KILN_DIST_TIMEOUT");
    c->timeout = t && atof(t) > 0 ? atof(t) : 300.0;
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    ncclResult_t r = c->rank == 0 ? ncclGetUniqueId(&id) : ncclSuccess;
    kiln_status s = nccl_ok(r) ? KILN_OK : nccl_fail(c, r, "ncclGetUniqueId", __FILE__, __LINE__);
    if (s == KILN_OK) s = kiln_comm_broadcast(boot, &id, sizeof id, 0);
    if (s == KILN_OK) s = nccl_open(c, &id);
    if (s != KILN_OK) {
        nccl_free(c);
        return s;
    }
    kiln_comm_iface iface;
    memset(&iface, 0, sizeof iface);
    iface.allreduce_sum = nccl_allreduce_sum;
    iface.broadcast = nccl_broadcast;
    iface.barrier = nccl_barrier;
    iface.free = nccl_free;
    iface.grads_begin = nccl_grads_begin;
    iface.grads_wait = nccl_grads_wait;
    return kiln_comm_wrap(&iface, c, c->rank, c->size, "nccl", out);
}

#else // built without NCCL: no device communicator (fit takes the host path)

extern "C" kiln_status kiln_cuda_comm_create(kiln_backend *be, kiln_comm *boot, kiln_comm **out) {
    *out = NULL;
    return KILN_OK;
}

#endif
