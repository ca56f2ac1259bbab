// cuda/pending.cu: temporary stand-ins for the CUDA op families still being written; each
// reports KILN_ERR_UNSUPPORTED so the library links meanwhile. Goes away as families land.
#include "common.cuh"

#define KILN_CUDA_PENDING(fn)                                                              \
    extern "C" kiln_status fn(kiln_backend *be, const kiln_op *op) {                       \
        return kiln_error(KILN_ERR_UNSUPPORTED, "%s: kiln_%s is not implemented yet",       \
                          be->name, kiln_op_name(op->type));                               \
    }
KILN_CUDA_PENDING(kiln_cuda_reduce)
KILN_CUDA_PENDING(kiln_cuda_gemm)
KILN_CUDA_PENDING(kiln_cuda_softmax)
KILN_CUDA_PENDING(kiln_cuda_argmax)
