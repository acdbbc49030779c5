// CUDA hardmax self-attention (contract and arithmetic order: kernels/hardmax.h). The construction
// of models/hardmax is exact only if every backend rounds as the CPU does, so every product and
// sum here is an explicitly rounded intrinsic (no FMA contraction) in the CPU's order: the GPU
// result equals the CPU's bit for bit.
//
// Forward: a first kernel computes each token's key score s_j = k . x_j (rank-1) or z_j = A x_j
// (general); then one thread per token finds its selected set C_i by scanning the sequence and
// writes y_i. Backward is a gather (no atomics): one thread per token j sums the shares of the
// tokens i that selected it, in ascending i as the CPU adds them.
#include <cmath>

#include "core/tensor.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rounded.cuh"
#include "kernels/hardmax.h"

namespace gradus::cuda {
namespace {


// a . x summed in coordinate order from 0. a, x: (C)
template <class T> __device__ T dot_rn(const T* a, const T* x, int64_t C) {
  T acc = 0;
  for (int64_t c = 0; c < C; ++c) acc = add_rn(acc, mul_rn(a[c], x[c]));
  return acc;
}

// keys: (B, T, K) with K = 1 (rank-1: k . x_j) or C (general: rows of A x_j).
// x: (B, T, C); proj: (K, C) (k as one row, or A).
template <class T>
__global__ void key_kernel(const T* x, const T* proj, T* keys, int64_t tokens, int64_t K,
                           int64_t C) {
  GRADUS_CUDA_LOOP(idx, tokens * K) {
    const int64_t token = idx / K, r = idx % K;
    keys[idx] = dot_rn(proj + r * C, x + token * C, C);
  }
}

// The score of token j for query token i, as the CPU computes it.
template <class T> struct Scorer {
  const T* x;     // (B, T, C)
  const T* q;     // (C) or nullptr (general)
  const T* keys;  // (B, T, 1) or (B, T, C)
  int64_t T_, C;
  // Per query token: the rank-1 sign term q . x_i (unused for general scores).
  __device__ T query(int64_t b, int64_t i) const {
    return q ? dot_rn(q, x + (b * T_ + i) * C, C) : T(0);
  }
  __device__ T score(int64_t b, int64_t i, T ci, int64_t j) const {
    if (q) {
      const T s = keys[b * T_ + j];
      return ci > 0 ? s : ci < 0 ? -s : T(0);
    }
    return dot_rn(x + (b * T_ + i) * C, keys + (b * T_ + j) * C, C);
  }
  // The best score of token i and the size of its selected set (0: all scores NaN, then every
  // token of the sequence is selected, as on the CPU).
  __device__ void best(int64_t b, int64_t i, int64_t L, T* best_out, int64_t* count) const {
    const T ci = query(b, i);
    T best = -INFINITY;
    for (int64_t j = 0; j < L; ++j) {
      const T s = score(b, i, ci, j);
      if (s > best) best = s;
    }
    int64_t n = 0;
    for (int64_t j = 0; j < L; ++j) n += score(b, i, ci, j) == best ? 1 : 0;
    *best_out = best;
    *count = n;
  }
  __device__ bool selects(int64_t b, int64_t i, T ci, T best, int64_t count, int64_t j) const {
    return count == 0 || score(b, i, ci, j) == best;
  }
};

// mean_i (C values) into m: x_{j0} + (sum over C_i in index order of (x_j - x_{j0})) / |C_i|.
template <class T>
__device__ void selected_mean(const Scorer<T>& sc, int64_t b, int64_t i, int64_t L, T* m) {
  T best;
  int64_t count;
  sc.best(b, i, L, &best, &count);
  const T ci = sc.query(b, i);
  const T* xb = sc.x + b * sc.T_ * sc.C;
  int64_t j0 = -1;
  for (int64_t j = 0; j < L && j0 < 0; ++j)
    if (sc.selects(b, i, ci, best, count, j)) j0 = j;
  const T size = static_cast<T>(count == 0 ? L : count);
  for (int64_t c = 0; c < sc.C; ++c) {
    T acc = 0;
    for (int64_t j = 0; j < L; ++j)
      if (sc.selects(b, i, ci, best, count, j)) acc = add_rn(acc, sub_rn(xb[j * sc.C + c], xb[j0 * sc.C + c]));
    m[c] = add_rn(xb[j0 * sc.C + c], div_rn(acc, size));
  }
}

// y_i = (1 - alpha) x_i + alpha mean_i; padding tokens and alpha == 0 copy x. One thread per token.
// x, y: (B, T, C). With y == nullptr the kernel writes only mean_out: (B, T, C) (for the backward).
template <class T>
__global__ void hardmax_forward_kernel(Scorer<T> sc, const T* alpha_p, const int64_t* lengths,
                                       T* y, T* mean_out, int64_t B) {
  const int64_t T_ = sc.T_, C = sc.C;
  GRADUS_CUDA_LOOP(token, B * T_) {
    const int64_t b = token / T_, i = token % T_;
    const int64_t L = lengths ? lengths[b] : T_;
    const T alpha = *alpha_p;
    const T* xi = sc.x + token * C;
    if (y == nullptr) {  // the backward's means only (padding tokens have none)
      if (i < L) selected_mean(sc, b, i, L, mean_out + token * C);
      continue;
    }
    T* yi = y + token * C;
    if (i >= L || alpha == T(0)) {
      for (int64_t c = 0; c < C; ++c) yi[c] = xi[c];
      continue;
    }
    const T oma = sub_rn(T(1), alpha);
    selected_mean(sc, b, i, L, yi);  // y doubles as scratch for the mean
    for (int64_t c = 0; c < C; ++c) yi[c] = add_rn(mul_rn(oma, xi[c]), mul_rn(alpha, yi[c]));
  }
}

// gx_j = (1 - alpha) gy_j (j < L; gy_j for padding) + sum over i ascending with j in C_i of
// (alpha / |C_i|) gy_i. One thread per token j. gy, gx: (B, T, C).
template <class T>
__global__ void hardmax_grad_x_kernel(Scorer<T> sc, const T* alpha_p, const int64_t* lengths,
                                      const T* gy, T* gx, int64_t B) {
  const int64_t T_ = sc.T_, C = sc.C;
  GRADUS_CUDA_LOOP(token, B * T_) {
    const int64_t b = token / T_, j = token % T_;
    const int64_t L = lengths ? lengths[b] : T_;
    const T alpha = *alpha_p;
    const T oma = sub_rn(T(1), alpha);
    T* g = gx + token * C;
    for (int64_t c = 0; c < C; ++c) g[c] = j < L ? mul_rn(oma, gy[token * C + c]) : gy[token * C + c];
    if (j >= L) continue;
    for (int64_t i = 0; i < L; ++i) {
      T best;
      int64_t count;
      sc.best(b, i, L, &best, &count);
      const T ci = sc.query(b, i);
      if (!sc.selects(b, i, ci, best, count, j)) continue;
      const T share = div_rn(alpha, static_cast<T>(count == 0 ? L : count));
      const T* gi = gy + (b * T_ + i) * C;
      for (int64_t c = 0; c < C; ++c) g[c] = add_rn(g[c], mul_rn(share, gi[c]));
    }
  }
}

// galpha[b] = sum over i < L, c in order of gy_ic (mean_ic - x_ic). One thread per sequence
// (a single running sum, as on the CPU). means: (B, T, C).
template <class T>
__global__ void hardmax_grad_alpha_kernel(const T* x, const T* means, const T* gy,
                                          const int64_t* lengths, T* galpha, int64_t B, int64_t T_,
                                          int64_t C) {
  GRADUS_CUDA_LOOP(b, B) {
    const int64_t L = lengths ? lengths[b] : T_;
    T ga = 0;
    for (int64_t i = 0; i < L; ++i)
      for (int64_t c = 0; c < C; ++c) {
        const int64_t at = (b * T_ + i) * C + c;
        ga = add_rn(ga, mul_rn(gy[at], sub_rn(means[at], x[at])));
      }
    galpha[b] = ga;
  }
}

template <class T>
Scorer<T> make_scorer(const T* x, const T* q, const T* proj, int64_t K, int64_t B, int64_t T_,
                      int64_t C, Tensor& keys_storage) {
  const int64_t tokens = B * T_;
  keys_storage = Tensor::empty({std::max<int64_t>(tokens * K, 1)}, dtype_of<T>(), kGPU);
  T* keys = static_cast<T*>(keys_storage.raw_data());
  if (tokens > 0) {
    key_kernel<T><<<elementwise_blocks(tokens * K), kThreads, 0, stream()>>>(x, proj, keys, tokens,
                                                                              K, C);
    GRADUS_CUDA_CHECK_LAUNCH("hardmax_keys");
  }
  return Scorer<T>{x, q, keys, T_, C};
}

template <class T>
void forward_impl(const void* x_, const void* q_, const void* proj_, int64_t K, const void* alpha,
                  const int64_t* lengths, void* y, int64_t B, int64_t T_, int64_t C) {
  if (B * T_ * C == 0) return;
  Tensor keys;
  Scorer<T> sc = make_scorer(static_cast<const T*>(x_), static_cast<const T*>(q_),
                             static_cast<const T*>(proj_), K, B, T_, C, keys);
  hardmax_forward_kernel<T><<<elementwise_blocks(B * T_), kThreads, 0, stream()>>>(
      sc, static_cast<const T*>(alpha), lengths, static_cast<T*>(y), nullptr, B);
  GRADUS_CUDA_CHECK_LAUNCH("hardmax_forward");
}

template <class T>
void backward_impl(const void* x_, const void* q_, const void* proj_, int64_t K, const void* alpha_,
                   const int64_t* lengths, const void* gy_, void* gx_, void* galpha_, int64_t B,
                   int64_t T_, int64_t C) {
  if (B == 0) return;
  const T* x = static_cast<const T*>(x_);
  const T* alpha = static_cast<const T*>(alpha_);
  const T* gy = static_cast<const T*>(gy_);
  Tensor keys;
  Scorer<T> sc = make_scorer(x, static_cast<const T*>(q_), static_cast<const T*>(proj_), K, B, T_,
                             C, keys);
  Tensor means = Tensor::empty({std::max<int64_t>(B * T_ * C, 1)}, dtype_of<T>(), kGPU);
  T* m = static_cast<T*>(means.raw_data());
  if (B * T_ * C > 0) {
    // Means of every token (y itself is not needed: pass a null output).
    hardmax_forward_kernel<T><<<elementwise_blocks(B * T_), kThreads, 0, stream()>>>(
        sc, alpha, lengths, nullptr, m, B);
    GRADUS_CUDA_CHECK_LAUNCH("hardmax_means");
    hardmax_grad_x_kernel<T><<<elementwise_blocks(B * T_), kThreads, 0, stream()>>>(
        sc, alpha, lengths, gy, static_cast<T*>(gx_), B);
    GRADUS_CUDA_CHECK_LAUNCH("hardmax_grad_x");
  }
  hardmax_grad_alpha_kernel<T><<<elementwise_blocks(B), kThreads, 0, stream()>>>(
      x, m, gy, lengths, static_cast<T*>(galpha_), B, T_, C);
  GRADUS_CUDA_CHECK_LAUNCH("hardmax_grad_alpha");
}

template <class T>
void hardmax_rank1_forward(const void* x, const void* q, const void* k, const void* alpha,
                           const int64_t* lengths, void* y, int64_t B, int64_t T_, int64_t C) {
  forward_impl<T>(x, q, k, 1, alpha, lengths, y, B, T_, C);
}
template <class T>
void hardmax_general_forward(const void* x, const void* A, const void* alpha,
                             const int64_t* lengths, void* y, int64_t B, int64_t T_, int64_t C) {
  forward_impl<T>(x, nullptr, A, C, alpha, lengths, y, B, T_, C);
}
template <class T>
void hardmax_rank1_backward(const void* x, const void* q, const void* k, const void* alpha,
                            const int64_t* lengths, const void* gy, void* gx, void* galpha,
                            int64_t B, int64_t T_, int64_t C) {
  backward_impl<T>(x, q, k, 1, alpha, lengths, gy, gx, galpha, B, T_, C);
}
template <class T>
void hardmax_general_backward(const void* x, const void* A, const void* alpha,
                              const int64_t* lengths, const void* gy, void* gx, void* galpha,
                              int64_t B, int64_t T_, int64_t C) {
  backward_impl<T>(x, nullptr, A, C, alpha, lengths, gy, gx, galpha, B, T_, C);
}

}  // namespace

// f32 and f64: the construction runs in those precisions.
GRADUS_REGISTER_CUDA_KERNEL_F32_F64(kernels::kHardmaxRank1Forward, hardmax_rank1_forward);
GRADUS_REGISTER_CUDA_KERNEL_F32_F64(kernels::kHardmaxRank1Backward, hardmax_rank1_backward);
GRADUS_REGISTER_CUDA_KERNEL_F32_F64(kernels::kHardmaxGeneralForward, hardmax_general_forward);
GRADUS_REGISTER_CUDA_KERNEL_F32_F64(kernels::kHardmaxGeneralBackward, hardmax_general_backward);

}  // namespace gradus::cuda
