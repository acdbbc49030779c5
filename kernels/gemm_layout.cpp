// Backend-neutral checks and batch folds of GemmArgs (kernels/gemm.h), shared by the CPU (BLAS)
// and CUDA (cuBLAS) gemm kernels: both libraries take 32-bit ints and the same leading-dimension
// rule, and both fold a batch into one call when the layout allows.
#include <climits>

#include "core/error.h"
#include "core/float_width.h"
#include "kernels/gemm.h"

namespace gradus::kernels {

bool gemm_fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

void gemm_check_dims(const GemmArgs& g, const char* library, bool batch_too) {
  for (int64_t v : {g.m, g.n, g.k, g.lda, g.ldb, g.ldc})
    GRADUS_CHECK(gemm_fits_int(v), kGemm,
                 "a size or leading dimension ({}) does not fit {}'s 32-bit int", v, library);
  GRADUS_CHECK(!batch_too || gemm_fits_int(g.batch), kGemm,
               "the batch count ({}) does not fit {}'s 32-bit int", g.batch, library);
  auto need = [](int64_t cols) { return cols > 1 ? cols : int64_t{1}; };
  GRADUS_CHECK(g.lda >= need(g.trans_a ? g.m : g.k), kGemm, "lda = {} below the column count of A",
               g.lda);
  GRADUS_CHECK(g.ldb >= need(g.trans_b ? g.k : g.n), kGemm, "ldb = {} below the column count of B",
               g.ldb);
  GRADUS_CHECK(g.ldc >= need(g.n), kGemm, "ldc = {} below the column count n = {} of C", g.ldc,
               g.n);
}

bool gemm_can_fold_m(const GemmArgs& g) {
  if (g.stride_b != 0 || g.stride_c != g.m * g.ldc || !gemm_fits_int(g.batch * g.m)) return false;
  return g.trans_a ? (g.stride_a == g.m && g.lda >= g.batch * g.m) : g.stride_a == g.m * g.lda;
}

bool gemm_can_fold_k(const GemmArgs& g) {
  if (g.stride_c != 0 || !gemm_fits_int(g.batch * g.k)) return false;
  const bool a_ok =
      g.trans_a ? g.stride_a == g.k * g.lda : (g.stride_a == g.k && g.lda >= g.batch * g.k);
  const bool b_ok =
      g.trans_b ? (g.stride_b == g.k && g.ldb >= g.batch * g.k) : g.stride_b == g.k * g.ldb;
  return a_ok && b_ok;
}

}  // namespace gradus::kernels

namespace gradus::kernels {

DType gemm_wide_dtype(DType operands) { return next_wider_float(operands); }

}  // namespace gradus::kernels
