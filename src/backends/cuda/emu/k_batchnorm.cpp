// emu/k_batchnorm.cpp: ../batchnorm.cu on the CUDA emulator. No kernel of its own outside namespace kiln_bn
// (renamed kiln_bn_emu), so it is compiled as it stands, its entry points renamed kiln_cuda_emu_*.
#include "emu_prelude.h"
#include "../batchnorm.cu"
