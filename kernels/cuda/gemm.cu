// CUDA batched gemm through cuBLAS (see kernels/gemm.h for the layout conventions).
//
// cuBLAS is column-major. A row-major (rows, cols) matrix with leading dimension ld is, read
// column-major, its transpose (cols, rows) with the same ld. So the row-major C = op(A) op(B) is
// computed as the column-major C^T = op(B)^T op(A)^T: the operands swap places, m and n swap, and
// each operand keeps its own transpose flag and leading dimension.
//
// The batch is handled as the CPU handles it (same folds, same accumulation order for
// stride_c == 0), so the two backends split a problem the same way.
#include <climits>

#include "core/error.h"
#include "core/tensor.h"
#include "kernels/cuda/common.cuh"
#include "kernels/gemm.h"

namespace gradus::cuda {
namespace {

using kernels::gemm_can_fold_k;
using kernels::gemm_can_fold_m;
using kernels::gemm_check_dims;
using kernels::GemmArgs;
using kernels::kGemm;
using kernels::kGemmWideOutput;

// One cuBLAS call: for each of `batch` entries, C = alpha op(A) op(B) + beta C with op(A): (m, k),
// op(B): (k, g.n), C: (m, g.n) row-major with leading dimension ldc. k >= 1, batch >= 1.
// c_type is the storage type of C (bf16 inputs may accumulate into an f32 C).
template <class T>
void cublas_gemm(const GemmArgs& g, int64_t m, int64_t k, const T* a, int64_t stride_a, const T* b,
                 int64_t stride_b, double beta, void* c, cudaDataType c_type, int64_t ldc,
                 int64_t stride_c, int64_t batch) {
  const cublasOperation_t op_a = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int M = static_cast<int>(g.n), N = static_cast<int>(m), K = static_cast<int>(k);
  const int lda = static_cast<int>(g.lda), ldb = static_cast<int>(g.ldb);
  const int ldc_i = static_cast<int>(ldc), count = static_cast<int>(batch);
  count_library_call();
  if constexpr (std::is_same_v<T, float>) {
    const float alpha_t = static_cast<float>(g.alpha), beta_t = static_cast<float>(beta);
    GRADUS_CUBLAS_CHECK(cublasSgemmStridedBatched(cublas(), op_b, op_a, M, N, K, &alpha_t, b, ldb,
                                                  stride_b, a, lda, stride_a, &beta_t,
                                                  static_cast<float*>(c), ldc_i, stride_c, count));
  } else if constexpr (std::is_same_v<T, double>) {
    const double alpha_t = g.alpha, beta_t = beta;
    GRADUS_CUBLAS_CHECK(cublasDgemmStridedBatched(cublas(), op_b, op_a, M, N, K, &alpha_t, b, ldb,
                                                  stride_b, a, lda, stride_a, &beta_t,
                                                  static_cast<double*>(c), ldc_i, stride_c, count));
  } else {  // bf16 storage, f32 compute: alpha and beta are float
    const float alpha_t = static_cast<float>(g.alpha), beta_t = static_cast<float>(beta);
    GRADUS_CUBLAS_CHECK(cublasGemmStridedBatchedEx(cublas(), op_b, op_a, M, N, K, &alpha_t, b,
                                                   CUDA_R_16BF, ldb, stride_b, a, CUDA_R_16BF, lda,
                                                   stride_a, &beta_t, c, c_type, ldc_i, stride_c,
                                                   count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
}

template <class T>
constexpr cudaDataType c_type_of() {
  if constexpr (std::is_same_v<T, float>)
    return CUDA_R_32F;
  else if constexpr (std::is_same_v<T, double>)
    return CUDA_R_64F;
  else
    return CUDA_R_16BF;
}

// k == 0: the product is empty, so C = beta * C, or 0 when beta == 0 (C is then not read, as the
// CPU does by hand because BLAS implementations disagree on this case).
// c: (batches, m, n), leading dimension ldc, batch stride stride_c.
template <class T>
__global__ void scale_c_kernel(T* c, int64_t batches, int64_t m, int64_t n, int64_t ldc,
                               int64_t stride_c, acc_t<T> beta) {
  const int64_t per = m * n;
  GRADUS_CUDA_LOOP(idx, batches * per) {
    const int64_t bi = idx / per, r = idx % per, i = r / n, j = r % n;
    T* p = c + bi * stride_c + i * ldc + j;
    *p = beta == acc_t<T>(0) ? from_acc<T>(acc_t<T>(0)) : from_acc<T>(beta * to_acc(*p));
  }
}

// The bf16 accumulation into one C: sum (m, n) f32, C (m, n) bf16 with leading dimension ldc.
// C = sum + beta C, rounded once (C not read when beta == 0).
__global__ void add_sum_to_c_kernel(bf16* c, const float* sum, int64_t m, int64_t n, int64_t ldc,
                                    float beta) {
  GRADUS_CUDA_LOOP(idx, m * n) {
    const int64_t i = idx / n, j = idx % n;
    bf16* p = c + i * ldc + j;
    const float s = sum[idx];
    *p = __float2bfloat16_rn(beta == 0.0f ? s : s + beta * __bfloat162float(*p));
  }
}

// C = alpha op(A) op(B) + beta C with A and B of type T and C of type Out: T for kGemm, f32 for
// kGemmWideOutput on bf16 operands (cuBLAS writes its f32 accumulator instead of rounding it).
template <class T, class Out>
void gemm_into(const GemmArgs& g, const char* name) {
  GRADUS_CHECK(g.m >= 0 && g.n >= 0 && g.k >= 0 && g.batch >= 0, name,
               "negative size (m, n, k, batch) = ({}, {}, {}, {})", g.m, g.n, g.k, g.batch);
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  gemm_check_dims(g, "cuBLAS", /*batch_too=*/true);
  const T* a = static_cast<const T*>(g.a);
  const T* b = static_cast<const T*>(g.b);
  Out* c = static_cast<Out*>(g.c);
  constexpr cudaDataType c_type = c_type_of<Out>();

  if (g.k == 0) {
    // stride_c == 0: every entry scales the one C, beta first and 1 after, i.e. once.
    const int64_t batches = g.stride_c == 0 ? 1 : g.batch;
    scale_c_kernel<Out><<<elementwise_blocks(batches * g.m * g.n), kThreads, 0, stream()>>>(
        c, batches, g.m, g.n, g.ldc, g.stride_c, static_cast<acc_t<Out>>(g.beta));
    GRADUS_CUDA_CHECK_LAUNCH("gemm_scale_c");
    return;
  }
  // alpha and beta are read from the host (the handle is shared: set it for every call).
  GRADUS_CUBLAS_CHECK(cublasSetPointerMode(cublas(), CUBLAS_POINTER_MODE_HOST));

  if (g.batch == 1) return cublas_gemm<T>(g, g.m, g.k, a, 0, b, 0, g.beta, c, c_type, g.ldc, 0, 1);
  if (gemm_can_fold_m(g))
    return cublas_gemm<T>(g, g.batch * g.m, g.k, a, 0, b, 0, g.beta, c, c_type, g.ldc, 0, 1);
  if (gemm_can_fold_k(g))
    return cublas_gemm<T>(g, g.m, g.batch * g.k, a, 0, b, 0, g.beta, c, c_type, g.ldc, 0, 1);

  if (g.stride_c != 0)  // independent products: one strided-batched call (strides of 0 broadcast)
    return cublas_gemm<T>(g, g.m, g.k, a, g.stride_a, b, g.stride_b, g.beta, c, c_type, g.ldc,
                          g.stride_c, g.batch);

  // Accumulation into one C that no fold covers: one product after another, in batch order (a
  // strided-batched call would race on C).
  if constexpr (std::is_same_v<Out, bf16>) {
    // A bf16 C sums in an f32 buffer and rounds once, rather than once per batch entry.
    Tensor sum = Tensor::empty({g.m, g.n}, DType::f32, kGPU);
    float* s = static_cast<float*>(sum.raw_data());
    for (int64_t i = 0; i < g.batch; ++i)
      cublas_gemm<T>(g, g.m, g.k, a + i * g.stride_a, 0, b + i * g.stride_b, 0, i == 0 ? 0.0 : 1.0,
                     s, CUDA_R_32F, g.n, 0, 1);
    add_sum_to_c_kernel<<<elementwise_blocks(g.m * g.n), kThreads, 0, stream()>>>(
        c, s, g.m, g.n, g.ldc, static_cast<float>(g.beta));
    GRADUS_CUDA_CHECK_LAUNCH("gemm_add_sum_to_c");
  } else {
    for (int64_t i = 0; i < g.batch; ++i)
      cublas_gemm<T>(g, g.m, g.k, a + i * g.stride_a, 0, b + i * g.stride_b, 0,
                     i == 0 ? g.beta : 1.0, c, c_type, g.ldc, 0, 1);
  }
}

template <class T>
void gemm(const GemmArgs& g) {
  gemm_into<T, T>(g, kGemm);
}

// kGemmWideOutput: bf16 operands, f32 C.
void gemm_wide_output_bf16(const GemmArgs& g) { gemm_into<bf16, float>(g, kGemmWideOutput); }

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL(kernels::kGemm, gemm);
GRADUS_REGISTER_KERNEL(kernels::kGemmWideOutput, DeviceType::cuda, DType::bf16,
                       &gemm_wide_output_bf16);

}  // namespace gradus::cuda
