// emu/k_softmax.cpp: ../softmax.cu on the CUDA emulator, inside namespace kiln_emu_k (emu/kiln_cuda_emu.cuh).
#include "emu_prelude.h"
namespace kiln_emu_k {
#include "../softmax.cu"
}
