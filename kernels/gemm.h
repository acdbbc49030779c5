// Batched general matrix multiply (row-major, BLAS conventions):
//
//   C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b]      for b in [0, batch)
//
// Shapes, per batch entry:
//   op(A[b]): (m, k)   A[b] is stored (m, k) with leading dimension lda, or (k, m) when trans_a
//   op(B[b]): (k, n)   B[b] is stored (k, n) with leading dimension ldb, or (n, k) when trans_b
//   C[b]:     (m, n)   stored with leading dimension ldc (never transposed)
// Element (i, j) of a stored matrix X with leading dimension ld is X[i * ld + j]; ld >= its column
// count. A transposed view (swapped last two strides) is therefore passed as the transpose flag and
// its storage, never copied.
//
// Batch strides (in elements) step from X[b] to X[b + 1]. A stride of 0 on A or B broadcasts one
// matrix over the batch. stride_c == 0 makes every batch entry accumulate into the one C: they are
// added in batch order (beta applies once, to the C passed in), which is how the backward of a
// broadcast operand sums its gradient without materialising the per-batch products.
//
// Results depend on the shapes alone, never on the thread count (BLAS splits m and n across
// threads, not k).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace gradus::kernels {

struct GemmArgs {
  bool trans_a = false;
  bool trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  double alpha = 1.0;
  double beta = 0.0;  // 0: C is written without being read (it may hold garbage or NaN)
  const void* a = nullptr;
  int64_t lda = 0, stride_a = 0;
  const void* b = nullptr;
  int64_t ldb = 0, stride_b = 0;
  void* c = nullptr;
  int64_t ldc = 0, stride_c = 0;
  int64_t batch = 1;
};

// a: (batch, m, k) or (batch, k, m); b: (batch, k, n) or (batch, n, k); c: (batch, m, n), each
// addressed through its leading dimension and batch stride as described above.
using GemmFn = void (*)(const GemmArgs& args);
inline constexpr const char* kGemm = "gemm";

// The same product, its C in the operands' wide dtype: C holds the accumulated products without
// their rounding to the operands' dtype. Keyed by the operands' dtype; C's is gemm_wide_dtype of
// it. This is how a mixed-precision product writes the gradient of a wide operand (an f32 master
// weight read as bf16) in one call: no narrow gradient, no cast, no bf16 rounding of dW. Registered
// for CUDA bf16 (cuBLAS writes its f32 accumulator) and CPU f32 (sgemm into a scratch, then
// widened: the CPU's stand-in for mixed precision); the ops fall back to kGemm and a cast where it
// is absent.
inline constexpr const char* kGemmWideOutput = "gemm_wide_output";
// bf16 -> f32, f32 -> f64; f64 (and any other dtype) has no wider one and is returned as is.
DType gemm_wide_dtype(DType operands);

// ---- shared by the backends (kernels/gemm_layout.cpp) ----
// v in [0, INT_MAX]: what BLAS and cuBLAS take for a size or leading dimension.
bool gemm_fits_int(int64_t v);
// Throws naming the argument when a size does not fit `library`'s int (the batch count too with
// batch_too) or a leading dimension is below its column count (and at least 1).
void gemm_check_dims(const GemmArgs& g, const char* library, bool batch_too);
// The batch stacked along m: C[b] and A[b] are consecutive row blocks of one taller matrix while
// B is shared, so the whole batch is one gemm with m' = batch * m.
bool gemm_can_fold_m(const GemmArgs& g);
// Accumulation into one C (stride_c == 0) with A[b] and B[b] consecutive along k: the sum over the
// batch is one gemm with k' = batch * k (e.g. dW = X^T dY over every row of a batch).
bool gemm_can_fold_k(const GemmArgs& g);

}  // namespace gradus::kernels
