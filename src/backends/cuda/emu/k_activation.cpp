// emu/k_activation.cpp: ../activation.cu on the CUDA emulator, inside namespace kiln_emu_k (emu/kiln_cuda_emu.cuh).
#include "emu_prelude.h"
namespace kiln_emu_k {
#include "../activation.cu"
}
