// Blocked attention on cuBLAS (see kernels/cuda/attention_blocked.h; the same algorithm as the CPU
// kernel kernels/cpu/attention.cpp, with every (b, h) of a block of query rows in one batched
// product).
//
// Forward, for each block of R query rows [r0, r0 + R) and the nk keys the block can see (causal:
// up to its last row's diagonal, so the products skip the upper triangle block by block):
//   S   = scale Q_blk K[0:nk]^T              gemm, (BH, R, nk) in the compute type A
//   P   = exp(S - lse), lse = log sum exp S  a warp per row; masked entries 0; P in T
//   O_blk = P V[0:nk]                         gemm, (BH, R, D)
// Backward, with delta = rowsum(dO * O) and the gradients accumulated in A (f32 for bf16):
//   S = scale Q_blk K^T;  P = exp(S - lse)             (recomputed, in T for the products)
//   dV[0:nk] += P^T dO_blk                             gemm, beta 1
//   dP = dO_blk V^T                                    gemm, (BH, R, nk) in A
//   dS = scale P (dP - delta)                          a warp per row, in T
//   dQ_blk = dS K;  dK[0:nk] += dS^T Q_blk             gemms
// cuBLAS wants one batch stride per operand: an operand whose (b, h) planes are not evenly spaced
// (the heads of a (B, T, H, D) projection) is gathered into a contiguous (B, H, T, D) copy first;
// outputs are written through a contiguous buffer and scattered into their layout. These copies
// move B H T D elements, negligible beside the B H Tq Tk of the scores.
//
// Rows per block: as many as keep the (BH, R, Tk) score slice within kScoreBytes (at most 256,
// at least 16), so memory stays bounded whatever the length.
//
// Deterministic: cuBLAS runs without atomics (kernels/cuda/runtime.cpp), each gradient block is
// accumulated in block order on the one stream, and the row kernels have one writer per element.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "core/error.h"
#include "core/tensor.h"
#include "kernels/cuda/attention_blocked.h"
#include "kernels/cuda/batched_gemm.cuh"
#include "kernels/cuda/common.cuh"

namespace gradus::cuda {
namespace {

using kernels::AttentionOperand;
using kernels::AttentionOutput;
using kernels::AttentionShape;

// The largest score slice of one block, in bytes (two of them live in the backward).
constexpr int64_t kScoreBytes = int64_t{256} << 20;


// The products of this file (kernels/cuda/batched_gemm.cuh), naming it in their errors.
template <class TA, class TC, class... Args> void gemm(Args&&... args) {
  batched_gemm<TA, TC>(GemmCaller{"attention (blocked)", "GRADUS_ATTENTION_KERNEL=tiled or reference"}, std::forward<Args>(args)...);
}

// ---------------------------------------------------------------- layouts

// x: (B, H, T, D) -> y: (B, H, T, D) with the strides of each; converts the element type on the way
// (bf16 <-> f32 through the compute type). A thread per element.
template <class TI, class TO>
__global__ void copy_heads_kernel(const TI* x, int64_t xb, int64_t xh, int64_t xt, TO* y,
                                  int64_t yb, int64_t yh, int64_t yt, int64_t heads, int64_t t,
                                  int64_t d, int64_t n) {
  GRADUS_CUDA_LOOP(e, n) {
    const int64_t c = e % d, r = e / d, i = r % t, bh = r / t, h = bh % heads, b = bh / heads;
    y[b * yb + h * yh + i * yt + c] = from_acc<TO>(to_acc(x[b * xb + h * xh + i * xt + c]));
  }
}
template <class TI, class TO>
void copy_heads(const TI* x, int64_t xb, int64_t xh, int64_t xt, TO* y, int64_t yb, int64_t yh,
                int64_t yt, int64_t batch, int64_t heads, int64_t t, int64_t d) {
  const int64_t n = batch * heads * t * d;
  if (n == 0) return;
  copy_heads_kernel<<<grid_for(ceil_div(n, kThreads)), kThreads, 0, stream()>>>(
      x, xb, xh, xt, y, yb, yh, yt, heads, t, d, n);
  GRADUS_CUDA_CHECK_LAUNCH("attention_copy_heads");
}

// The operand itself when its (b, h) planes are evenly spaced, else a contiguous copy.
template <class T>
Planes<T> planes_of(const AttentionOperand& x, const AttentionShape& s, int64_t t) {
  const int64_t d = s.head_dim;
  const T* data = static_cast<const T*>(x.data);
  Planes<T> p = evenly_spaced_planes(data, x.stride_b, x.stride_h, x.stride_t, s.batch, s.heads,
                                     t, d);
  if (p.data != nullptr) return p;
  p.copy = Tensor::empty({s.batch, s.heads, t, d}, element_dtype<T>(), kGPU);
  T* dst = static_cast<T*>(p.copy.raw_data());
  copy_heads(data, x.stride_b, x.stride_h, x.stride_t, dst, s.heads * t * d, t * d, d, s.batch,
             s.heads, t, d);
  p.data = dst;
  p.ld = d;
  p.stride = t * d;
  return p;
}

// Query rows per block (see the file comment).
int64_t block_rows(const AttentionShape& s, int64_t bytes_per_score) {
  const int64_t per_row = std::max<int64_t>(1, s.batch * s.heads * s.t_k * bytes_per_score);
  return std::clamp<int64_t>(kScoreBytes / per_row, 16, 256);
}

// ---------------------------------------------------------------- row kernels

// The rows of a warp-per-row kernel as a grid-stride loop: grid_for caps the grid, so past 2^23
// rows (B H Tq for delta) a warp takes several. row is the same in all 32 lanes, so the warp stays
// together for its shuffles.
#define GRADUS_WARP_ROWS(row, count)                                                          \
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; \
       row < (count); row += static_cast<int64_t>(gridDim.x) * (blockDim.x / 32))

// Keys [0, visible) of query row i.
__device__ __forceinline__ int64_t visible_keys(int64_t i, int64_t t_q, int64_t t_k, bool causal) {
  return causal ? min(t_k, i + (t_k - t_q) + 1) : t_k;
}

// scores: (BH, rows, nk) in A -> probs = exp(scores - lse) in T (0 past each row's visible keys),
// and lse (BH, t_q) for rows r0 + [0, rows). A warp per row.
template <class T, class A>
__global__ void softmax_rows_kernel(const A* scores, T* probs, A* lse, int64_t count, int64_t rows,
                                    int64_t nk, int64_t r0, int64_t t_q, int64_t t_k, bool causal) {
  const int lane = threadIdx.x & 31;
  GRADUS_WARP_ROWS(row, count) {
    const int64_t bh = row / rows, i = r0 + row % rows;
    const int64_t n = visible_keys(i, t_q, t_k, causal);
    const A* s = scores + row * nk;
    T* p = probs + row * nk;
    A m = A(-INFINITY);
    for (int64_t j = lane; j < n; j += 32) m = fmax(m, s[j]);
    m = warp_max(m);
    A sum = 0;
    for (int64_t j = lane; j < n; j += 32) sum += dexp(s[j] - m);
    sum = warp_sum(sum);
    const A l = m + dlog(sum);
    for (int64_t j = lane; j < nk; j += 32) p[j] = from_acc<T>(j < n ? dexp(s[j] - l) : A(0));
    if (lane == 0) lse[bh * t_q + i] = l;
  }
}

// probs = exp(scores - lse) in T, 0 past each row's visible keys (the backward's P). A warp per
// row.
template <class T, class A>
__global__ void probs_rows_kernel(const A* scores, const A* lse, T* probs, int64_t count,
                                  int64_t rows, int64_t nk, int64_t r0, int64_t t_q, int64_t t_k,
                                  bool causal) {
  const int lane = threadIdx.x & 31;
  GRADUS_WARP_ROWS(row, count) {
    const int64_t bh = row / rows, i = r0 + row % rows;
    const int64_t n = visible_keys(i, t_q, t_k, causal);
    const A l = lse[bh * t_q + i];
    for (int64_t j = lane; j < nk; j += 32)
      probs[row * nk + j] = from_acc<T>(j < n ? dexp(scores[row * nk + j] - l) : A(0));
  }
}

// ds = scale P (dP - delta) in T, P = exp(scores - lse) recomputed in A. A warp per row.
template <class T, class A>
__global__ void grad_scores_kernel(const A* scores, const A* dp, const A* lse, const A* delta,
                                   T* ds, A scale, int64_t count, int64_t rows, int64_t nk,
                                   int64_t r0, int64_t t_q, int64_t t_k, bool causal) {
  const int lane = threadIdx.x & 31;
  GRADUS_WARP_ROWS(row, count) {
    const int64_t bh = row / rows, i = r0 + row % rows;
    const int64_t n = visible_keys(i, t_q, t_k, causal);
    const A l = lse[bh * t_q + i], di = delta[bh * t_q + i];
    for (int64_t j = lane; j < nk; j += 32) {
      const int64_t e = row * nk + j;
      ds[e] = from_acc<T>(j < n ? scale * dexp(scores[e] - l) * (dp[e] - di) : A(0));
    }
  }
}

// delta (BH, t_q) = rowsum(grad_out * out), read through their strides. A warp per row.
template <class T, class A>
__global__ void delta_kernel(const T* go, int64_t gb, int64_t gh, int64_t gt, const T* o,
                             int64_t ob, int64_t oh, int64_t ot, A* delta, int64_t heads,
                             int64_t t_q, int64_t d, int64_t count) {
  const int lane = threadIdx.x & 31;
  GRADUS_WARP_ROWS(row, count) {
    const int64_t i = row % t_q, bh = row / t_q, h = bh % heads, b = bh / heads;
    const T* g = go + b * gb + h * gh + i * gt;
    const T* x = o + b * ob + h * oh + i * ot;
    A acc = 0;
    for (int64_t c = lane; c < d; c += 32) acc += to_acc(g[c]) * to_acc(x[c]);
    acc = warp_sum(acc);
    if (lane == 0) delta[row] = acc;
  }
}

constexpr int kRowsPerLaunchBlock = kThreads / 32;  // a warp per row

int rows_grid(int64_t count) { return grid_for(ceil_div(count, kRowsPerLaunchBlock)); }

#undef GRADUS_WARP_ROWS

}  // namespace

// ---------------------------------------------------------------- forward

template <class T>
void attention_forward_blocked(const AttentionShape& s, AttentionOperand q, AttentionOperand k,
                               AttentionOperand v, AttentionOutput out, void* lse_) {
  using A = acc_t<T>;
  const int64_t BH = s.batch * s.heads, D = s.head_dim;
  if (BH == 0 || s.t_q == 0) return;
  const Planes<T> qp = planes_of<T>(q, s, s.t_q), kp = planes_of<T>(k, s, s.t_k),
                  vp = planes_of<T>(v, s, s.t_k);
  // The output through a contiguous (B, H, Tq, D) buffer, scattered into out's layout at the end.
  Tensor o_buffer = Tensor::empty({s.batch, s.heads, s.t_q, D}, element_dtype<T>(), kGPU);
  T* o = static_cast<T*>(o_buffer.raw_data());
  A* lse = static_cast<A*>(lse_);
  const int64_t R = std::min(s.t_q, block_rows(s, sizeof(A)));
  Tensor scores_t = Tensor::empty({BH * R * s.t_k}, acc_dtype<A>(), kGPU);
  Tensor probs_t = Tensor::empty({BH * R * s.t_k}, element_dtype<T>(), kGPU);
  A* scores = static_cast<A*>(scores_t.raw_data());
  T* probs = static_cast<T*>(probs_t.raw_data());
  for (int64_t r0 = 0; r0 < s.t_q; r0 += R) {
    const int64_t rows = std::min(R, s.t_q - r0);
    const int64_t last = r0 + rows - 1;
    const int64_t nk = s.causal ? std::min(s.t_k, last + (s.t_k - s.t_q) + 1) : s.t_k;
    // scores = scale q_blk k^T: (BH, rows, nk)
    gemm<T, A>(false, true, rows, nk, D, s.scale, qp.data + r0 * qp.ld, qp.ld, qp.stride, kp.data,
               kp.ld, kp.stride, 0.0, scores, nk, rows * nk, BH);
    const int64_t count = BH * rows;
    softmax_rows_kernel<T, A><<<rows_grid(count), kThreads, 0, stream()>>>(
        scores, probs, lse, count, rows, nk, r0, s.t_q, s.t_k, s.causal);
    GRADUS_CUDA_CHECK_LAUNCH("attention_forward (blocked softmax)");
    // o_blk = probs v: (BH, rows, D)
    gemm<T, T>(false, false, rows, D, nk, 1.0, probs, nk, rows * nk, vp.data, vp.ld, vp.stride, 0.0,
               o + r0 * D, D, s.t_q * D, BH);
  }
  copy_heads(o, s.heads * s.t_q * D, s.t_q * D, D, static_cast<T*>(out.data), out.stride_b,
             out.stride_h, out.stride_t, s.batch, s.heads, s.t_q, D);
}

// ---------------------------------------------------------------- backward

template <class T>
void attention_backward_blocked(const AttentionShape& s, AttentionOperand q, AttentionOperand k,
                                AttentionOperand v, AttentionOperand out, AttentionOperand grad_out,
                                const void* lse_, void* delta_, AttentionOutput grad_q,
                                AttentionOutput grad_k, AttentionOutput grad_v) {
  using A = acc_t<T>;
  const int64_t BH = s.batch * s.heads, D = s.head_dim;
  if (BH == 0) return;
  const A* lse = static_cast<const A*>(lse_);
  A* delta = static_cast<A*>(delta_);
  // Gradients accumulate in the compute type in contiguous (B, H, T, D) buffers (zero: keys no
  // query sees keep zero gradients), converted into their outputs' dtype and layout at the end.
  Tensor dq_t = Tensor::empty({s.batch, s.heads, s.t_q, D}, acc_dtype<A>(), kGPU);
  Tensor dk_t = Tensor::zeros({s.batch, s.heads, s.t_k, D}, acc_dtype<A>(), kGPU);
  Tensor dv_t = Tensor::zeros({s.batch, s.heads, s.t_k, D}, acc_dtype<A>(), kGPU);
  A* dq = static_cast<A*>(dq_t.raw_data());
  A* dk = static_cast<A*>(dk_t.raw_data());
  A* dv = static_cast<A*>(dv_t.raw_data());
  if (s.t_q > 0) {
    const int64_t rows_all = BH * s.t_q;
    delta_kernel<T, A><<<rows_grid(rows_all), kThreads, 0, stream()>>>(
        static_cast<const T*>(grad_out.data), grad_out.stride_b, grad_out.stride_h,
        grad_out.stride_t, static_cast<const T*>(out.data), out.stride_b, out.stride_h,
        out.stride_t, delta, s.heads, s.t_q, D, rows_all);
    GRADUS_CUDA_CHECK_LAUNCH("attention_backward (blocked delta)");
    const Planes<T> qp = planes_of<T>(q, s, s.t_q), kp = planes_of<T>(k, s, s.t_k),
                    vp = planes_of<T>(v, s, s.t_k), gp = planes_of<T>(grad_out, s, s.t_q);
    const int64_t R = std::min(s.t_q, block_rows(s, 2 * sizeof(A)));
    Tensor scores_t = Tensor::empty({BH * R * s.t_k}, acc_dtype<A>(), kGPU);
    Tensor dp_t = Tensor::empty({BH * R * s.t_k}, acc_dtype<A>(), kGPU);
    Tensor probs_t = Tensor::empty({BH * R * s.t_k}, element_dtype<T>(), kGPU);
    A* scores = static_cast<A*>(scores_t.raw_data());
    A* dp = static_cast<A*>(dp_t.raw_data());
    T* probs = static_cast<T*>(probs_t.raw_data());  // P, then dS
    for (int64_t r0 = 0; r0 < s.t_q; r0 += R) {
      const int64_t rows = std::min(R, s.t_q - r0);
      const int64_t last = r0 + rows - 1;
      const int64_t nk = s.causal ? std::min(s.t_k, last + (s.t_k - s.t_q) + 1) : s.t_k;
      const int64_t count = BH * rows;
      const T* q_blk = qp.data + r0 * qp.ld;
      const T* go_blk = gp.data + r0 * gp.ld;
      // scores = scale q_blk k^T; probs = exp(scores - lse)
      gemm<T, A>(false, true, rows, nk, D, s.scale, q_blk, qp.ld, qp.stride, kp.data, kp.ld,
                 kp.stride, 0.0, scores, nk, rows * nk, BH);
      probs_rows_kernel<T, A><<<rows_grid(count), kThreads, 0, stream()>>>(
          scores, lse, probs, count, rows, nk, r0, s.t_q, s.t_k, s.causal);
      GRADUS_CUDA_CHECK_LAUNCH("attention_backward (blocked probabilities)");
      // dv[0:nk] += probs^T go_blk: (BH, nk, D)
      gemm<T, A>(true, false, nk, D, rows, 1.0, probs, nk, rows * nk, go_blk, gp.ld, gp.stride, 1.0,
                 dv, D, s.t_k * D, BH);
      // dp = go_blk v^T: (BH, rows, nk); ds = scale p (dp - delta) into probs
      gemm<T, A>(false, true, rows, nk, D, 1.0, go_blk, gp.ld, gp.stride, vp.data, vp.ld, vp.stride,
                 0.0, dp, nk, rows * nk, BH);
      grad_scores_kernel<T, A><<<rows_grid(count), kThreads, 0, stream()>>>(
          scores, dp, lse, delta, probs, static_cast<A>(s.scale), count, rows, nk, r0, s.t_q, s.t_k,
          s.causal);
      GRADUS_CUDA_CHECK_LAUNCH("attention_backward (blocked score gradient)");
      // dq_blk = ds k: (BH, rows, D); dk[0:nk] += ds^T q_blk: (BH, nk, D)
      gemm<T, A>(false, false, rows, D, nk, 1.0, probs, nk, rows * nk, kp.data, kp.ld, kp.stride,
                 0.0, dq + r0 * D, D, s.t_q * D, BH);
      gemm<T, A>(true, false, nk, D, rows, 1.0, probs, nk, rows * nk, q_blk, qp.ld, qp.stride, 1.0,
                 dk, D, s.t_k * D, BH);
    }
  }
  copy_heads(dq, s.heads * s.t_q * D, s.t_q * D, D, static_cast<T*>(grad_q.data), grad_q.stride_b,
             grad_q.stride_h, grad_q.stride_t, s.batch, s.heads, s.t_q, D);
  copy_heads(dk, s.heads * s.t_k * D, s.t_k * D, D, static_cast<T*>(grad_k.data), grad_k.stride_b,
             grad_k.stride_h, grad_k.stride_t, s.batch, s.heads, s.t_k, D);
  copy_heads(dv, s.heads * s.t_k * D, s.t_k * D, D, static_cast<T*>(grad_v.data), grad_v.stride_b,
             grad_v.stride_h, grad_v.stride_t, s.batch, s.heads, s.t_k, D);
}

#define GRADUS_INSTANTIATE_BLOCKED(T)                                                             \
  template void attention_forward_blocked<T>(const AttentionShape&, AttentionOperand,             \
                                             AttentionOperand, AttentionOperand, AttentionOutput, \
                                             void*);                                              \
  template void attention_backward_blocked<T>(                                                    \
      const AttentionShape&, AttentionOperand, AttentionOperand, AttentionOperand,                \
      AttentionOperand, AttentionOperand, const void*, void*, AttentionOutput, AttentionOutput,   \
      AttentionOutput);
GRADUS_INSTANTIATE_BLOCKED(float)
GRADUS_INSTANTIATE_BLOCKED(double)
GRADUS_INSTANTIATE_BLOCKED(bf16)
#undef GRADUS_INSTANTIATE_BLOCKED

}  // namespace gradus::cuda
