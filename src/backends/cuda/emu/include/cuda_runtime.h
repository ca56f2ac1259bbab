// emu/include/cuda_runtime.h: the CUDA emulator stands in for the toolkit header (emu/kiln_cuda_emu.cuh).
#include "../kiln_cuda_emu.cuh"
