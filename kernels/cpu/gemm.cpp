// CPU batched gemm through OpenBLAS (see kernels/gemm.h for the layout conventions).
//
// Threads: OpenBLAS (OpenMP build) shares the OpenMP pool. A large batch of small matrices runs one
// matrix per thread in an OpenMP loop, where BLAS sees omp_in_parallel() and stays single-threaded;
// a few large matrices run one after another and BLAS uses every thread. The two never nest.
#include "kernels/gemm.h"

#include <omp.h>

#include <climits>

#include "core/error.h"
#include "core/tensor.h"
#include "kernels/cpu/blas.h"
#include "kernels/registry.h"

namespace gradus::kernels::cpu {
namespace {

// Per-matrix work (m * n * k) up to which a batch is split across threads one matrix each: below
// it BLAS's own threading gains little, above it BLAS alone fills the threads.
constexpr int64_t kSmallMatrixWork = int64_t{1} << 21;
// Total work (batch * m * n * k) below which a batch of small matrices runs on one thread: waking
// the pool would cost more than the products.
constexpr int64_t kMinParallelWork = int64_t{1} << 16;

// One gemm on a single (m, n, k) problem; k == 0 is handled here because BLAS implementations
// disagree on whether they scale C then. Sizes were checked to fit blasint (no throw here: this
// runs inside OpenMP regions).
template <class T>
void gemm_one(const GemmArgs& g, int64_t m, int64_t k, const T* a, const T* b, T beta, T* c) {
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < g.n; ++j)
        c[i * g.ldc + j] = beta == T(0) ? T(0) : beta * c[i * g.ldc + j];
    return;
  }
  blas_gemm(g.trans_a, g.trans_b, m, g.n, k, static_cast<T>(g.alpha), a, g.lda, b, g.ldb, beta, c,
            g.ldc);
}

template <class T>
void gemm(const GemmArgs& g) {
  GRADUS_CHECK(g.m >= 0 && g.n >= 0 && g.k >= 0 && g.batch >= 0, kGemm,
               "negative size (m, n, k, batch) = ({}, {}, {}, {})", g.m, g.n, g.k, g.batch);
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  gemm_check_dims(g, "BLAS", /*batch_too=*/false);
  const T* a = static_cast<const T*>(g.a);
  const T* b = static_cast<const T*>(g.b);
  T* c = static_cast<T*>(g.c);
  const T beta = static_cast<T>(g.beta);

  if (g.batch == 1) return gemm_one<T>(g, g.m, g.k, a, b, beta, c);
  if (gemm_can_fold_m(g)) return gemm_one<T>(g, g.batch * g.m, g.k, a, b, beta, c);
  if (gemm_can_fold_k(g)) return gemm_one<T>(g, g.m, g.batch * g.k, a, b, beta, c);

  if (g.stride_c == 0) {  // accumulate in batch order: sequential, BLAS threads each product
    for (int64_t i = 0; i < g.batch; ++i)
      gemm_one<T>(g, g.m, g.k, a + i * g.stride_a, b + i * g.stride_b, i == 0 ? beta : T(1), c);
    return;
  }

  const int64_t work = g.m * g.n * g.k;
  const bool per_thread =
      work <= kSmallMatrixWork && g.batch * work >= kMinParallelWork && !omp_in_parallel();
  if (!per_thread) {
    for (int64_t i = 0; i < g.batch; ++i)
      gemm_one<T>(g, g.m, g.k, a + i * g.stride_a, b + i * g.stride_b, beta, c + i * g.stride_c);
    return;
  }
#ifndef GRADUS_OPENBLAS_OPENMP
  // A pthread OpenBLAS does not see the OpenMP region: keep it from starting threads of its own.
  const int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
#endif
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < g.batch; ++i)
    gemm_one<T>(g, g.m, g.k, a + i * g.stride_a, b + i * g.stride_b, beta, c + i * g.stride_c);
#ifndef GRADUS_OPENBLAS_OPENMP
  openblas_set_num_threads(blas_threads);
#endif
}

// kGemmWideOutput for f32 operands: C (f64) = alpha op(A) op(B) + beta C with the products summed
// by sgemm, as kGemm<float> sums them, then widened. The scratch holds one C without its leading
// dimension, (m, n) per batch entry, or a single (m, n) where the batch accumulates (stride_c == 0,
// summed in f32 over the batch, beta applied once, as kGemm does).
void gemm_wide_output_f32(const GemmArgs& g) {
  GRADUS_CHECK(g.m >= 0 && g.n >= 0 && g.k >= 0 && g.batch >= 0, kGemmWideOutput,
               "negative size (m, n, k, batch) = ({}, {}, {}, {})", g.m, g.n, g.k, g.batch);
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  const int64_t entries = g.stride_c == 0 ? 1 : g.batch, per = g.m * g.n;
  Tensor scratch = Tensor::empty({entries * per}, DType::f32, kCPU);
  GemmArgs narrow = g;
  narrow.beta = 0.0;
  narrow.c = scratch.raw_data();
  narrow.ldc = g.n;
  narrow.stride_c = g.stride_c == 0 ? 0 : per;
  gemm<float>(narrow);
  const float* s = static_cast<const float*>(scratch.raw_data());
  double* c = static_cast<double*>(g.c);
  const double beta = g.beta;
#pragma omp parallel for schedule(static) if (entries * per >= kMinParallelWork)
  for (int64_t row = 0; row < entries * g.m; ++row) {
    const int64_t e = row / g.m, i = row % g.m;
    double* c_row = c + e * g.stride_c + i * g.ldc;
    const float* s_row = s + row * g.n;
    for (int64_t j = 0; j < g.n; ++j)  // beta == 0: C is not read (it may hold NaN)
      c_row[j] = beta == 0.0 ? static_cast<double>(s_row[j]) : s_row[j] + beta * c_row[j];
  }
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kGemm, gemm);
GRADUS_REGISTER_KERNEL(kGemmWideOutput, DeviceType::cpu, DType::f32, &gemm_wide_output_f32);

}  // namespace gradus::kernels::cpu
