// The strided layouts of the elementwise and copy kernels (kernels/cuda/strided_layout.h: plain C++
// that the CPU build's tests compile too) with the device code they need.
#pragma once

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/strided_layout.h"
