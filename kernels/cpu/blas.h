// Row-major single and double precision gemm through CBLAS, for the CPU kernels that call BLAS
// directly (kernels/cpu/gemm.cpp, kernels/cpu/attention.cpp):
//   C (m, n) = alpha op(A) op(B) + beta C,  op(A): (m, k), op(B): (k, n), leading dimensions lda,
//   ldb, ldc. Callers have checked that every size fits BLAS's int (no throw here: these run
//   inside OpenMP regions).
#pragma once

#include <cblas.h>

#include <cstdint>

namespace gradus::kernels::cpu {

inline void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                      const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                      float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}
inline void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                      const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
                      double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}

}  // namespace gradus::kernels::cpu
