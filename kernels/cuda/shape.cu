// CUDA indexing kernels: index_select and gather, forward and backward (see kernels/shape.h for
// the layouts and the determinism contract).
//
// Forwards validate the indices and gather in the same stream before one read-back, skipping bad
// indices so that nothing is read out of range. Backwards use no float atomics:
// - index_select: a stable radix sort of (index, position) groups the positions of each source row
//   in ascending order; one thread per element of grad_x walks its row's group (index_sort.cuh,
//   shared with the embedding).
// - gather: the index differs per column, so one thread owns a column (o, i) of grad_x and adds
//   grad_out[o, k, i] in ascending k, as the CPU's column tasks do.
#include "kernels/shape.h"

#include "core/tensor.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/index_sort.cuh"

namespace gradus::cuda {
namespace {

// ---- index_select ----

// x: (outer, n, inner), index: (K), out: (outer, K, inner).
template <class T>
int64_t index_select(const void* x, const int64_t* index, void* out, int64_t outer, int64_t n,
                     int64_t K, int64_t inner) {
  if (K == 0) return -1;
  long long* first = reset_first_bad();
  check_indices(index, K, n, first, "index_select_first_bad");
  gather_rows(static_cast<const T*>(x), index, static_cast<T*>(out), outer, n, K, inner,
              "index_select");
  return read_first_bad(first, K);
}

// grad_out: (outer, K, inner), index: (K), grad_x: (outer, n, inner), fully written.
template <class T>
void index_select_backward(const void* grad_out, const int64_t* index, void* grad_x, int64_t outer,
                           int64_t n, int64_t K, int64_t inner) {
  scatter_add_rows(static_cast<const T*>(grad_out), index, static_cast<T*>(grad_x), outer, n, K,
                   inner, "index_select_backward");
}

// ---- gather ----

// x: (outer, n, inner), index and out: (outer, K, inner). out[o, k, i] = x[o, index[o, k, i], i];
// validation in the same pass: a bad index lowers *first and its element is skipped.
template <class T>
__global__ void gather_kernel(const T* x, const int64_t* index, T* out, int64_t outer, int64_t n,
                              int64_t K, int64_t inner, long long* first) {
  GRADUS_CUDA_LOOP(p, outer * K * inner) {
    const int64_t j = index[p];
    if (j < 0 || j >= n) {
      atomicMin(first, static_cast<long long>(p));
      continue;
    }
    const int64_t o = p / (K * inner), i = p % inner;
    out[p] = x[(o * n + j) * inner + i];
  }
}

template <class T>
int64_t gather(const void* x, const int64_t* index, void* out, int64_t outer, int64_t n, int64_t K,
               int64_t inner) {
  const int64_t count = outer * K * inner;
  if (count == 0) return -1;
  long long* first = reset_first_bad();
  gather_kernel<T><<<elementwise_blocks(count), kThreads, 0, stream()>>>(
      static_cast<const T*>(x), index, static_cast<T*>(out), outer, n, K, inner, first);
  GRADUS_CUDA_CHECK_LAUNCH("gather");
  return read_first_bad(first, count);
}

// grad_out, index: (outer, K, inner); grad_x: (outer, n, inner) of the accumulation type A, zeroed
// beforehand. One thread per column (o, i) adds grad_out[o, k, i] into grad_x[o, index, i] for k
// ascending: the column is the thread's alone, so the order is fixed without atomics. Consecutive
// threads take consecutive i, so the reads of a row k coalesce. A bad index (the forward rejects
// them) is skipped rather than written out of range.
template <class T, class A>
__global__ void gather_backward_kernel(const T* grad_out, const int64_t* index, A* grad_x,
                                       int64_t outer, int64_t n, int64_t K, int64_t inner) {
  GRADUS_CUDA_LOOP(col, outer * inner) {
    const int64_t o = col / inner, i = col % inner;
    A* gx = grad_x + o * n * inner + i;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t p = (o * K + k) * inner + i;
      const int64_t j = index[p];
      if (j < 0 || j >= n) continue;
      gx[j * inner] = gx[j * inner] + static_cast<A>(to_acc(grad_out[p]));
    }
  }
}

// dst: (count) bf16, src: (count) float; rounded once.
__global__ void round_to_bf16_kernel(bf16* dst, const float* src, int64_t count) {
  GRADUS_CUDA_LOOP(p, count) dst[p] = __float2bfloat16_rn(src[p]);
}

template <class T>
void gather_backward(const void* grad_out, const int64_t* index, void* grad_x, int64_t outer,
                     int64_t n, int64_t K, int64_t inner) {
  const int64_t total = outer * n * inner;
  if (total == 0) return;
  const T* go = static_cast<const T*>(grad_out);
  const int64_t columns = outer * inner;
  if constexpr (std::is_same_v<T, bf16>) {
    // bf16 accumulates in an f32 buffer and rounds once (the compute-type convention).
    Tensor sum = Tensor::empty({total}, DType::f32, kGPU);
    float* s = static_cast<float*>(sum.raw_data());
    GRADUS_CUDA_CHECK(cudaMemsetAsync(s, 0, total * sizeof(float), stream()));
    if (K > 0) {
      gather_backward_kernel<T, float><<<elementwise_blocks(columns), kThreads, 0, stream()>>>(
          go, index, s, outer, n, K, inner);
      GRADUS_CUDA_CHECK_LAUNCH("gather_backward");
    }
    round_to_bf16_kernel<<<elementwise_blocks(total), kThreads, 0, stream()>>>(
        static_cast<bf16*>(grad_x), s, total);
    GRADUS_CUDA_CHECK_LAUNCH("gather_backward_round");
  } else {
    // Zeros first (all-zero bytes are +0), then the sums in place, each rounded as on the CPU.
    GRADUS_CUDA_CHECK(cudaMemsetAsync(grad_x, 0, total * sizeof(T), stream()));
    if (K > 0) {
      gather_backward_kernel<T, T><<<elementwise_blocks(columns), kThreads, 0, stream()>>>(
          go, index, static_cast<T*>(grad_x), outer, n, K, inner);
      GRADUS_CUDA_CHECK_LAUNCH("gather_backward");
    }
  }
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL(kernels::kIndexSelect, index_select);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kIndexSelectBackward, index_select_backward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kGather, gather);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kGatherBackward, gather_backward);

}  // namespace gradus::cuda
