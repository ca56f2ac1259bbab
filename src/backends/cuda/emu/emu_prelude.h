// emu/emu_prelude.h: what every emulated .cu file includes, included first and outside the
// namespace kiln_emu_k that each emu/k_*.cpp then opens around its .cu file: the system headers,
// the emulator (the toolkit's stand-ins), and kiln's C headers, each once, so that inside the
// namespace their include guards make them empty and only the kernel source itself is wrapped.
#ifndef KILN_EMU_PRELUDE_H
#define KILN_EMU_PRELUDE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmath>
#include <mutex>
#include <new>
#include <type_traits>
#include <vector>

#include <cooperative_groups.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#define KILN_HOST_DEVICE __host__ __device__
#define KILN_BN_HD __host__ __device__
#include "batchnorm_math.h"
#include "counter_rng.h"
#include "cuda.h"
#include "error.h"
#include "half.h"
#include "op_args.h"
#include "pool_window.h"
extern "C" {
#include "dtype_convert.h"
}

#endif
