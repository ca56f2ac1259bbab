// emu/stubs.cpp: the CUDA backend's cuDNN-only ops on the emulator: KILN_ERR_UNSUPPORTED, which
// the parity suite turns into a skipped row with this reason; and no device communicator (NCCL
// is not emulated: data-parallel fit takes the host path).
#include "emu_prelude.h"

extern "C" kiln_status kiln_cuda_conv2d(kiln_backend *be, const kiln_op *op) {
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: %s is cuDNN's, which the CUDA emulator does not have",
                      be->name, kiln_op_name(op->type));
}

extern "C" kiln_status kiln_cuda_batchnorm_cudnn(kiln_backend *be, const kiln_op *op) {
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: cuDNN's %s is not emulated (kiln's kernels are)",
                      be->name, kiln_op_name(op->type));
}

extern "C" kiln_status kiln_cuda_comm_create(kiln_backend *be, kiln_comm *bootstrap, kiln_comm **out) {
    *out = NULL;
    return KILN_OK;
}
