// CUDA fused cross-entropy over the last axis (see kernels/cross_entropy.h for the contract; the
// semantics mirror kernels/cpu/cross_entropy.cpp).
//
// Targets: a small kernel checks them (the first bad row by an integer atomicMin, the valid rows by
// an integer count: both exact whatever the order) and one read-back returns both numbers; an op
// checks all its targets once. Forward: a warp (short rows) or a block per row computes the
// log-sum-exp and the loss, with no read-back. Backward: the same
// row layout rebuilds softmax from the saved log-sum-exp.
#include <algorithm>
#include <cstdint>

#include "kernels/cross_entropy.h"
#include "kernels/cuda/common.cuh"

namespace gradus::cuda {
namespace {

constexpr int64_t kShortRow = 1024;  // rows up to this long get a warp each

// targets: (rows). status[0]: the first row whose target is neither ignore_index nor in
// [0, vocab) (all ones, i.e. -1 as int64, when none); status[1]: the number of non-ignored rows.
__global__ void check_targets_kernel(const int64_t* targets, int64_t rows, int64_t vocab,
                                     int64_t ignore_index, unsigned long long* status) {
  unsigned long long valid = 0;
  GRADUS_CUDA_LOOP(r, rows) {
    const int64_t t = targets[r];
    if (t == ignore_index) continue;
    if (t < 0 || t >= vocab)
      atomicMin(&status[0], static_cast<unsigned long long>(r));
    else
      ++valid;
  }
  if (valid != 0) atomicAdd(&status[1], valid);
}

// logits: (rows, vocab); targets, loss, lse: (rows). kRowThreads threads per row. The maximum
// ignores NaN (a NaN reaches the loss through the sum) and is replaced by 0 when infinite (an all
// -inf row then gives lse = -inf, a row holding +inf gives +inf). The final per-row arithmetic is
// in double, as the CPU's. Rows with a bad target are skipped (their outputs are unspecified).
template <int kRowThreads, class T>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_forward_kernel(const T* logits, const int64_t* targets, T* loss, T* lse,
                                 int64_t rows, int64_t vocab, int64_t ignore_index) {
  using A = acc_t<T>;
  constexpr int V = kVec<T>;
  constexpr int kRowsPerBlock = kThreads / kRowThreads;
  __shared__ A shared[32];
  const int lane = threadIdx.x % kRowThreads;
  const int64_t groups = (vocab + V - 1) / V;
  // The loop bound is uniform over the block, so every thread reaches the block reductions.
  for (int64_t r0 = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock; r0 < rows;
       r0 += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t r = r0 + threadIdx.x / kRowThreads;
    const int64_t t = r < rows ? targets[r] : ignore_index;
    const bool compute = t != ignore_index && t >= 0 && t < vocab;
    const T* x = logits + (r < rows ? r : 0) * vocab;
    const bool xa = aligned16(x);
    A v[V];
    A m = A(-INFINITY);
    if (compute)
      for (int64_t g = lane; g < groups; g += kRowThreads) {
        const int count = load_group(x, g * V, vocab, xa, v);
#pragma unroll
        for (int j = 0; j < V; ++j)
          if (j < count) m = fmax(m, v[j]);
      }
    m = row_max<kRowThreads>(m, shared);
    if (isinf(m)) m = A(0);
    A s = A(0);
    if (compute)
      for (int64_t g = lane; g < groups; g += kRowThreads) {
        const int count = load_group(x, g * V, vocab, xa, v);
#pragma unroll
        for (int j = 0; j < V; ++j)
          if (j < count) s += dexp(v[j] - m);
      }
    s = row_sum<kRowThreads>(s, shared);
    if (lane == 0 && r < rows) {
      if (t == ignore_index) {
        loss[r] = from_acc<T>(A(0));
        lse[r] = from_acc<T>(A(0));  // never read: the backward writes a zero row
      } else if (compute) {
        const double l = static_cast<double>(m) + log(static_cast<double>(s));
        lse[r] = from_acc<T>(static_cast<A>(l));
        loss[r] = from_acc<T>(static_cast<A>(l - static_cast<double>(load(x + t))));
      }
    }
  }
}

// The one synchronisation of a loss: all of an op's targets at once, before its forward chunks.
template <class T>
int64_t cross_entropy_check_targets(const int64_t* targets, int64_t rows, int64_t vocab,
                                    int64_t ignore_index, int64_t* valid_count) {
  if (rows == 0) {
    *valid_count = 0;
    return -1;
  }
  auto* status = reinterpret_cast<unsigned long long*>(scratch_i64(2));
  GRADUS_CUDA_CHECK(cudaMemsetAsync(status, 0xff, sizeof(unsigned long long), stream()));
  GRADUS_CUDA_CHECK(cudaMemsetAsync(status + 1, 0, sizeof(unsigned long long), stream()));
  check_targets_kernel<<<elementwise_blocks(rows), kThreads, 0, stream()>>>(targets, rows, vocab,
                                                                            ignore_index, status);
  GRADUS_CUDA_CHECK_LAUNCH("cross_entropy_check_targets");
  int64_t host[2] = {0, 0};
  GRADUS_CUDA_CHECK(cudaMemcpyAsync(host, status, sizeof(host), cudaMemcpyDeviceToHost, stream()));
  synchronize();
  if (host[0] >= 0) return host[0];  // all ones (-1) when every target is fine
  *valid_count = host[1];
  return -1;
}

template <class T>
void cross_entropy_forward(const void* logits, const int64_t* targets, void* loss, void* lse,
                           int64_t rows, int64_t vocab, int64_t ignore_index) {
  if (rows == 0) return;
  const T* x = static_cast<const T*>(logits);
  T* l = static_cast<T*>(loss);
  T* s = static_cast<T*>(lse);
  if (vocab <= kShortRow)
    cross_entropy_forward_kernel<32, T>
        <<<grid_for(ceil_div(rows, kThreads / 32)), kThreads, 0, stream()>>>(x, targets, l, s, rows,
                                                                             vocab, ignore_index);
  else
    cross_entropy_forward_kernel<kThreads, T>
        <<<grid_for(rows), kThreads, 0, stream()>>>(x, targets, l, s, rows, vocab, ignore_index);
  GRADUS_CUDA_CHECK_LAUNCH("cross_entropy_forward");
}

// logits, grad_logits: (rows, vocab); targets, lse: (rows); grad_loss: one value per row at
// r * grad_stride (stride 0: one shared scalar). grad = (exp(x - lse) - onehot) * grad_loss *
// scale; an ignored row is all zero. The one-hot term is subtracted by the thread that writes it
// (no race). grad_logits of G: T, or the next narrower type (each value rounded to T, then to G,
// as a cast after the kernel would).
template <int kRowThreads, class T, class G = T>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_backward_kernel(const T* logits, const int64_t* targets, const T* lse,
                                  const T* grad_loss, int64_t grad_stride, double scale,
                                  G* grad_logits, int64_t rows, int64_t vocab,
                                  int64_t ignore_index) {
  using A = acc_t<T>;
  constexpr int V = kVec<T>;
  constexpr int kRowsPerBlock = kThreads / kRowThreads;
  const int lane = threadIdx.x % kRowThreads;
  const int64_t groups = (vocab + V - 1) / V;
  // The group's values into gr: packed when G is T, else one by one, rounded to T then to G.
  auto store = [&](G* gr, int64_t k0, int count, bool aligned, const A* v) {
    if constexpr (std::is_same_v<G, T>) {
      store_group(gr, k0, count, aligned, v);
    } else {
#pragma unroll
      for (int j = 0; j < V; ++j)
        if (j < count) gr[k0 + j] = from_acc<G>(static_cast<acc_t<G>>(to_acc(from_acc<T>(v[j]))));
    }
  };
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kRowThreads;
       r < rows; r += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t t = targets[r];
    const T* x = logits + r * vocab;
    G* gr = grad_logits + r * vocab;
    const bool xa = aligned16(x), ga = aligned16(gr);
    A v[V];
    if (t == ignore_index) {
#pragma unroll
      for (int j = 0; j < V; ++j) v[j] = A(0);
      for (int64_t g = lane; g < groups; g += kRowThreads) {
        const int64_t k0 = g * V;
        store(gr, k0, static_cast<int>(vocab - k0 < V ? vocab - k0 : V), ga, v);
      }
      continue;
    }
    const A gl = static_cast<A>(static_cast<double>(load(grad_loss + r * grad_stride)) * scale);
    const A l = load(lse + r);
    for (int64_t g = lane; g < groups; g += kRowThreads) {
      const int64_t k0 = g * V;
      const int count = load_group(x, k0, vocab, xa, v);
#pragma unroll
      for (int j = 0; j < V; ++j) v[j] = dexp(v[j] - l) * gl - (k0 + j == t ? gl : A(0));
      store(gr, k0, count, ga, v);
    }
  }
}

template <class T>
void cross_entropy_backward(const void* logits, const int64_t* targets, const void* lse,
                            const void* grad_loss, int64_t grad_stride, double scale,
                            void* grad_logits, DType grad_dtype, int64_t rows, int64_t vocab,
                            int64_t ignore_index) {
  if (rows * vocab == 0) return;
  const T* x = static_cast<const T*>(logits);
  const T* l = static_cast<const T*>(lse);
  const T* g = static_cast<const T*>(grad_loss);
  dispatch_same_or_narrower<T>(grad_dtype, kernels::kCrossEntropyBackward, [&](auto gz) {
    using G = decltype(gz);
    G* gx = static_cast<G*>(grad_logits);
    if (vocab <= kShortRow)
      cross_entropy_backward_kernel<32, T, G>
          <<<grid_for(ceil_div(rows, kThreads / 32)), kThreads, 0, stream()>>>(
              x, targets, l, g, grad_stride, scale, gx, rows, vocab, ignore_index);
    else
      cross_entropy_backward_kernel<kThreads, T, G><<<grid_for(rows), kThreads, 0, stream()>>>(
          x, targets, l, g, grad_stride, scale, gx, rows, vocab, ignore_index);
    GRADUS_CUDA_CHECK_LAUNCH("cross_entropy_backward");
  });
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL(kernels::kCrossEntropyCheckTargets, cross_entropy_check_targets);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kCrossEntropyForward, cross_entropy_forward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kCrossEntropyBackward, cross_entropy_backward);

}  // namespace gradus::cuda
