// emu/include/cuda_fp16.h: the CUDA emulator stands in for the toolkit header (emu/kiln_cuda_emu.cuh).
#include "../kiln_cuda_emu.cuh"
