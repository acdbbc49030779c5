// Matrix products through the batched "gemm" kernel (OpenBLAS on the CPU).
#pragma once

#include "core/tensor.h"

namespace gradus {

// a: (..., M, K), b: (..., K, N) -> (..., M, N). The batch axes broadcast (NumPy rules). As in
// numpy.matmul: a 1-D a (K,) is a row (1, K) and a 1-D b (K,) a column (K, 1), the added axis being
// removed from the result (two 1-D operands give a scalar). A transposed view (last two strides
// swapped) reaches BLAS as a transpose flag without a copy. The gradient of a broadcast operand is
// accumulated over the batch inside gemm, never materialised per batch entry.
Tensor matmul(const Tensor& a, const Tensor& b);

// PyTorch's nn.Linear: x: (..., in), weight: (out, in), bias: (out,) or undefined
// -> y = x weight^T + bias: (..., out). One gemm over the flattened rows of x with weight passed
// transposed; the backward is fused (dx = dy weight, dweight = dy^T x, dbias = rows of dy summed).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace gradus
