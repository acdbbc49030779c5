// What the cuBLAS-blocked kernels (kernels/cuda/attention_blocked.cu, kernels/cuda/pna.cu) share:
// the element types as DType and cudaDataType, and one row-major strided-batched product.
#pragma once

#include <climits>
#include <cstdint>
#include <type_traits>

#include "core/error.h"
#include "core/tensor.h"
#include "kernels/cuda/common.cuh"

namespace gradus::cuda {

template <class T>
constexpr DType element_dtype() {
  if constexpr (std::is_same_v<T, bf16>)
    return DType::bf16;
  else if constexpr (std::is_same_v<T, double>)
    return DType::f64;
  else
    return DType::f32;
}
template <class T>
constexpr cudaDataType cuda_type() {
  if constexpr (std::is_same_v<T, bf16>)
    return CUDA_R_16BF;
  else if constexpr (std::is_same_v<T, double>)
    return CUDA_R_64F;
  else
    return CUDA_R_32F;
}

// An operand as cuBLAS reads it: B H matrices (t, d), leading dimension ld, batch stride `stride`.
template <class T>
struct Planes {
  const T* data = nullptr;
  int64_t ld = 0, stride = 0;
  Tensor copy;  // keeps a gathered copy alive
};

// A (B, H, t, d) operand with strides (stride_b, stride_h, stride_t) and d contiguous, as evenly
// spaced planes that one strided-batched product can step: B or H of 1, or heads laid out back to
// back. data is null when its (b, h) planes are not evenly spaced (the caller gathers a copy).
template <class T>
Planes<T> evenly_spaced_planes(const T* data, int64_t stride_b, int64_t stride_h, int64_t stride_t,
                               int64_t batch, int64_t heads, int64_t t, int64_t d) {
  const bool rows_ok = t == 1 || stride_t >= d;
  const int64_t ld = t == 1 ? d : stride_t;  // one row: its stride is never stepped
  if (rows_ok && heads == 1 && stride_b >= 0) return {data, ld, stride_b, {}};
  if (rows_ok && batch == 1 && stride_h >= 0) return {data, ld, stride_h, {}};
  if (rows_ok && stride_h >= 0 && stride_b == heads * stride_h && stride_h >= t * ld)
    return {data, ld, stride_h, {}};
  return {};
}

// Who calls batched_gemm, for its error: the kernel's name and the kernel choice to fall back on.
struct GemmCaller {
  const char* kernel;    // e.g. "attention (blocked)"
  const char* fallback;  // e.g. "GRADUS_ATTENTION_KERNEL=tiled or reference"
};

// Row-major, batched: C[i] (m, n) = alpha op(A[i]) op(B[i]) + beta C[i], op(A): (m, k), op(B): (k,
// n); A and B of element type TA, C of type TC; compute in double for f64, else f32 (bf16 on the
// tensor cores). cuBLAS is column-major: the row-major product is computed as C^T = op(B)^T op(A)^T
// (as kernels/cuda/gemm.cu does).
template <class TA, class TC>
void batched_gemm(const GemmCaller& caller, bool trans_a, bool trans_b, int64_t m, int64_t n,
                  int64_t k, double alpha, const TA* a, int64_t lda, int64_t stride_a, const TA* b,
                  int64_t ldb, int64_t stride_b, double beta, TC* c, int64_t ldc, int64_t stride_c,
                  int64_t batch) {
  const int64_t limit = INT_MAX;
  GRADUS_CHECK(m <= limit && n <= limit && k <= limit && lda <= limit && ldb <= limit &&
                   ldc <= limit && batch <= limit,
               caller.kernel,
               "a product (m, n, k, batch) = ({}, {}, {}, {}) with leading dimensions ({}, {}, {}) "
               "exceeds cuBLAS's int; use {}",
               m, n, k, batch, lda, ldb, ldc, caller.fallback);
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  constexpr bool f64 = std::is_same_v<TA, double>;
  const double alpha_d = alpha, beta_d = beta;
  const float alpha_f = static_cast<float>(alpha), beta_f = static_cast<float>(beta);
  count_library_call();
  GRADUS_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      cublas(), op_b, op_a, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k),
      f64 ? static_cast<const void*>(&alpha_d) : static_cast<const void*>(&alpha_f), b,
      cuda_type<TA>(), static_cast<int>(ldb), stride_b, a, cuda_type<TA>(), static_cast<int>(lda),
      stride_a, f64 ? static_cast<const void*>(&beta_d) : static_cast<const void*>(&beta_f), c,
      cuda_type<TC>(), static_cast<int>(ldc), stride_c, static_cast<int>(batch),
      f64 ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace gradus::cuda
