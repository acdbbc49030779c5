// CPU batched gemm through OpenBLAS (see kernels/gemm.h for the layout conventions).
//
// Threads: OpenBLAS (OpenMP build) shares the OpenMP pool. A large batch of small matrices runs one
// matrix per thread in an OpenMP loop, where BLAS sees omp_in_parallel() and stays single-threaded;
// a few large matrices run one after another and BLAS uses every thread. The two never nest.
#include "kernels/gemm.h"

#include <omp.h>

#include <climits>

#include "core/error.h"
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

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kGemm, gemm);

}  // namespace gradus::kernels::cpu
