// emu/include/cudnn.h: the CUDA emulator has no cuDNN. The handle type and the few calls the
// backend's shared code makes (create, bind, destroy, status names) exist so the same sources
// compile; cudnnCreate reports CUDNN_STATUS_NOT_SUPPORTED, and the cuDNN-only ops (convolution,
// cuDNN's batch norm) are emu/stubs.cpp's KILN_ERR_UNSUPPORTED.
#ifndef KILN_EMU_CUDNN_H
#define KILN_EMU_CUDNN_H
#include "../kiln_cuda_emu.cuh"

typedef struct kiln_emu_cudnn *cudnnHandle_t;
typedef enum {
    CUDNN_STATUS_SUCCESS = 0,
    CUDNN_STATUS_NOT_SUPPORTED = 3000,
    CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED = 4001,
    CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED = 4002,
} cudnnStatus_t;
#define CUDNN_STATUS_CATEGORY(full_error_code) ((full_error_code) / 1000 * 1000)

cudnnStatus_t cudnnCreate(cudnnHandle_t *h);
cudnnStatus_t cudnnDestroy(cudnnHandle_t h);
cudnnStatus_t cudnnSetStream(cudnnHandle_t h, cudaStream_t s);
const char *cudnnGetErrorString(cudnnStatus_t s);
#endif
