/* kiln/kiln.h: the whole public API of kiln in one include. */
#ifndef KILN_KILN_H
#define KILN_KILN_H

#include "kiln/status.h"
#include "kiln/tensor.h"
#include "kiln/backend.h"
#include "kiln/ops.h"
#include "kiln/batchnorm.h"
#include "kiln/nn.h"
#include "kiln/optim_ops.h"
#include "kiln/safetensors.h"
#include "kiln/data.h"
#include "kiln/model.h"
#include "kiln/fit.h"
#include "kiln/callbacks.h"
#include "kiln/dist.h"

#define KILN_VERSION_MAJOR 0
#define KILN_VERSION_MINOR 1
#define KILN_VERSION_PATCH 0

#endif
