// CUDA streaming PNA aggregation, forward and backward (contract: kernels/pna.h): the moments sum,
// sq, max, min and deg of the values over the causal soft adjacency a' = threshold(relu(s) or
// softmax(s)), s = scale q k^T, without the (B, H, T, T) scores or adjacency in memory.
//
// Two kernel families, chosen by GRADUS_PNA_KERNEL (kernels/cuda/pna_select.h):
// - blocked (the default): the structure of kernels/cuda/attention_blocked.cu. For each block of R
//   query rows [r0, r0 + R) of every (b, h) at once, and the nk = r0 + R keys the block can see:
//     forward   S = scale Q_blk K[0:nk]^T                     gemm, (BH, R, nk) in A
//               a' = threshold(adjacency(S)), j > i zeroed   a warp per row; writes lse and deg
//               sum_blk = a' V,  sq_blk = a' V^2             gemms straight into the moments
//               max / min: a block per (bh, 32 rows, 32 channels), the keys with a' > 0
//               streamed through shared memory 64 at a time, 4 rows per thread
//     backward  S, a' rebuilt (softmax from the saved lse)
//               gv += a'^T g_sum_blk, u += a'^T g_sq_blk     gemms, beta 1
//               dA' = g_sum_blk V^T + g_sq_blk (V^2)^T       gemms, (BH, R, nk) in A
//               dS = (dA' + g_deg) threshold'(a), then relu [s > 0] or softmax a (dA - rowsum(a
//               dA))
//                                                            a warp per row
//               grad_q_blk = scale dS K,  gk += scale dS^T Q_blk   gemms
//     then gv += the extrema's gradient at their args (a thread per (bh, channel), rows in order)
//     and grad_v = gv + 2 V u.
//   A is the compute type (f32 for f32 and bf16, f64 for f64); the products take T operands (bf16
//   on the tensor cores, f32 accumulation) and write A results: the moments and the gradient
//   accumulators are A, so no sum of up to T products is ever rounded to bf16. The gradient's
//   g_sum and g_sq blocks are rounded to T for the products (bf16 operands, as in
//   attention_blocked.cu's grad_out).
// - reference: a thread per (b, h, row), loops over the keys (or queries) and channels, no cuBLAS:
//   plainly the formulas of kernels/pna.h, for the comparison tests.
//
// Workspace (blocked): one (BH, R, T) slice of S in A plus a' in T (forward; the same buffer when T
// is A), S and dA' in A plus a' / dS in T (backward); R is as large as keeps the slices within
// kScoreBytes (16 to 256 rows). Besides: V^2 in T (B, H, T, D) when with_square, gathered copies of
// operands whose (b, h) planes are not evenly spaced, and the A accumulators (B, H, T, D) of the
// backward.
//
// Floor: per (b, h) and under the causal half, each T x T x D product is about T^2 D flops: the
// forward runs 3 of them (S, sum, sq) plus the extrema's T^2 D / 2 comparisons each, the backward 7
// (S, two for dA', two for grad_v, grad_q, grad_k). At B 16, H 12, T 1024, D 64 that is 39 GFLOP
// forward and 90 GFLOP backward, 0.04 + 0.09 ms at 990 TFLOP/s of bf16 tensor cores; the blocked
// kernels move every score slice through HBM several times (about 16 bytes per (query, key) entry
// forward and 30 backward), so they are bound by memory, not by these flops. nk stops at the
// block's last row, so the products skip the upper triangle block by block (the diagonal blocks'
// upper halves are computed and zeroed).
//
// Deterministic: cuBLAS runs without atomics (kernels/cuda/runtime.cpp), the gradient blocks are
// added in block order on the one stream, every row kernel has one writer per element, and the
// extrema's gradient is added by one thread per (bh, channel) in row order.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "core/error.h"
#include "core/tensor.h"
#include "kernels/cuda/batched_gemm.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/pna_select.h"
#include "kernels/pna.h"

namespace gradus::cuda {
namespace {

using kernels::AttentionOperand;
using kernels::AttentionOutput;
using kernels::PnaAdjacency;
using kernels::PnaShape;
using kernels::PnaThreshold;

// The largest workspace of score-sized slices of one block, in bytes.
constexpr int64_t kScoreBytes = int64_t{256} << 20;

// ---------------------------------------------------------------- the formulas of kernels/pna.h

// The adjacency options as the kernels read them, in the compute type A.
template <class A>
struct PnaParams {
  bool softmax;
  PnaThreshold threshold;
  A scale, tau, beta;
};
template <class A>
PnaParams<A> params_of(const PnaShape& s) {
  return {s.adjacency == PnaAdjacency::softmax, s.threshold, static_cast<A>(s.scale),
          static_cast<A>(s.tau), static_cast<A>(s.beta)};
}

__device__ __forceinline__ float dlog1p(float v) { return log1pf(v); }
__device__ __forceinline__ double dlog1p(double v) { return log1p(v); }

// a = relu(s), or exp(s - lse) for the softmax adjacency.
template <class A>
__device__ __forceinline__ A adjacency_of(const PnaParams<A>& p, A s, A lse) {
  return p.softmax ? dexp(s - lse) : (s > A(0) ? s : A(0));
}
// a' = threshold(a).
template <class A>
__device__ __forceinline__ A threshold_of(const PnaParams<A>& p, A a) {
  const A x = a - p.tau, z = p.beta * x;
  switch (p.threshold) {
    case PnaThreshold::none: return a;
    case PnaThreshold::relu: return x > A(0) ? x : A(0);
    case PnaThreshold::sharp_softplus: return z > A(20) ? x : dlog1p(dexp(z)) / p.beta;
    case PnaThreshold::sigmoid: return A(1) / (A(1) + dexp(-z));
    case PnaThreshold::binary: return a > p.tau ? A(1) : A(0);
  }
  return a;
}
// threshold'(a) (0 for binary: a step passes no gradient).
template <class A>
__device__ __forceinline__ A threshold_slope(const PnaParams<A>& p, A a) {
  const A z = p.beta * (a - p.tau);
  switch (p.threshold) {
    case PnaThreshold::none: return A(1);
    case PnaThreshold::relu: return a > p.tau ? A(1) : A(0);
    case PnaThreshold::sharp_softplus: return z > A(20) ? A(1) : A(1) / (A(1) + dexp(-z));
    case PnaThreshold::sigmoid: {
      const A g = A(1) / (A(1) + dexp(-z));
      return p.beta * g * (A(1) - g);
    }
    case PnaThreshold::binary: return A(0);
  }
  return A(1);
}

// A (B, H, T, D) operand: row t of head (b, h) starts at data + b sb + h sh + t st; its D channels
// are contiguous.
template <class T>
struct Heads {
  T* data;
  int64_t sb, sh, st, heads;
  __device__ __forceinline__ T* row(int64_t bh, int64_t t) const {
    return data + (bh / heads) * sb + (bh % heads) * sh + t * st;
  }
};
template <class T>
Heads<const T> heads_of(const AttentionOperand& o, int64_t heads) {
  return {static_cast<const T*>(o.data), o.stride_b, o.stride_h, o.stride_t, heads};
}
template <class T>
Heads<T> heads_of(const AttentionOutput& o, int64_t heads) {
  return {static_cast<T*>(o.data), o.stride_b, o.stride_h, o.stride_t, heads};
}

// ---------------------------------------------------------------- layouts

// x: (B H, T, D) through its strides -> y: (B H, T, D) through its strides; converts the element
// type on the way (through the compute type), squaring each element when `square`. A thread per
// element.
template <class TI, class TO>
__global__ void pna_copy_heads_kernel(Heads<const TI> x, Heads<TO> y, int64_t t, int64_t d,
                                      bool square, int64_t n) {
  GRADUS_CUDA_LOOP(e, n) {
    const int64_t c = e % d, r = e / d, i = r % t, bh = r / t;
    const auto v = to_acc(x.row(bh, i)[c]);
    y.row(bh, i)[c] = from_acc<TO>(square ? v * v : v);
  }
}
template <class TI, class TO>
void copy_heads(Heads<const TI> x, Heads<TO> y, int64_t bh, int64_t t, int64_t d,
                bool square = false) {
  const int64_t n = bh * t * d;
  if (n == 0) return;
  pna_copy_heads_kernel<TI, TO>
      <<<grid_for(ceil_div(n, kThreads)), kThreads, 0, stream()>>>(x, y, t, d, square, n);
  GRADUS_CUDA_CHECK_LAUNCH("pna_copy_heads");
}
// A contiguous (B, H, T, D) buffer as Heads.
template <class T>
Heads<T> contiguous_heads(T* data, int64_t heads, int64_t t, int64_t d) {
  return {data, heads * t * d, t * d, d, heads};
}

// The operand itself when its (b, h) planes are evenly spaced, else a contiguous copy (as
// attention_blocked.cu).
template <class T>
Planes<T> planes_of(const AttentionOperand& x, const PnaShape& s) {
  const int64_t d = s.head_dim, t = s.t;
  Planes<T> p = evenly_spaced_planes(static_cast<const T*>(x.data), x.stride_b, x.stride_h,
                                     x.stride_t, s.batch, s.heads, t, d);
  if (p.data != nullptr) return p;
  p.copy = Tensor::empty({s.batch, s.heads, t, d}, element_dtype<T>(), kGPU);
  T* dst = static_cast<T*>(p.copy.raw_data());
  copy_heads(heads_of<T>(x, s.heads), contiguous_heads(dst, s.heads, t, d), s.batch * s.heads, t,
             d);
  p.data = dst;
  p.ld = d;
  p.stride = t * d;
  return p;
}
// A contiguous (B, H, T, D) buffer in T: x converted (and squared when `square`).
template <class T, class TI>
Planes<T> converted_planes(Heads<const TI> x, const PnaShape& s, bool square) {
  Planes<T> p;
  p.copy = Tensor::empty({s.batch, s.heads, s.t, s.head_dim}, element_dtype<T>(), kGPU);
  T* dst = static_cast<T*>(p.copy.raw_data());
  copy_heads(x, contiguous_heads(dst, s.heads, s.t, s.head_dim), s.batch * s.heads, s.t, s.head_dim,
             square);
  p.data = dst;
  p.ld = s.head_dim;
  p.stride = s.t * s.head_dim;
  return p;
}

// The products of this file (kernels/cuda/batched_gemm.cuh), naming it in their errors.
template <class TA, class TC, class... Args>
void gemm(Args&&... args) {
  batched_gemm<TA, TC>(GemmCaller{"pna (blocked)", "GRADUS_PNA_KERNEL=reference"},
                       std::forward<Args>(args)...);
}

// Query rows per block: as many as keep `bytes_per_score` bytes per (bh, row, key) within
// kScoreBytes, 16 to 256, at most T.
int64_t block_rows(const PnaShape& s, int64_t bytes_per_score) {
  const int64_t per_row = std::max<int64_t>(1, s.batch * s.heads * s.t * bytes_per_score);
  return std::min(s.t, std::clamp<int64_t>(kScoreBytes / per_row, 16, 256));
}

// ---------------------------------------------------------------- blocked: row kernels

// The rows of a warp-per-row kernel as a grid-stride loop (grid_for caps the grid); row is the
// same in all 32 lanes, so the warp stays together for its shuffles.
#define GRADUS_WARP_ROWS(row, count)                                                          \
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; \
       row < (count); row += static_cast<int64_t>(gridDim.x) * (blockDim.x / 32))

constexpr int kRowsPerLaunchBlock = kThreads / 32;  // a warp per row
int rows_grid(int64_t count) { return grid_for(ceil_div(count, kRowsPerLaunchBlock)); }

// Forward. scores: (BH, rows, nk) s in A -> scores: a' in A (in place), ap: a' in T (the same
// buffer when T is A), lse: (BH, t) for the softmax adjacency, deg into moments (BH, t, w) column
// w - 1; rows r0 + [0, rows), key j of row i visible iff j <= i. A warp per row.
template <class T, class A>
__global__ void pna_adjacency_forward_kernel(A* scores, T* ap, A* lse, A* moments, PnaParams<A> p,
                                             int64_t count, int64_t rows, int64_t nk, int64_t r0,
                                             int64_t t, int64_t w) {
  const int lane = threadIdx.x & 31;
  GRADUS_WARP_ROWS(row, count) {
    const int64_t bh = row / rows, i = r0 + row % rows, n = i + 1;
    A* s = scores + row * nk;
    T* a_out = ap + row * nk;
    A l = 0;
    if (p.softmax) {
      A m = A(-INFINITY);
      for (int64_t j = lane; j < n; j += 32) m = fmax(m, s[j]);
      m = warp_max(m);
      A sum = 0;
      for (int64_t j = lane; j < n; j += 32) sum += dexp(s[j] - m);
      l = m + dlog(warp_sum(sum));
      if (lane == 0) lse[bh * t + i] = l;
    }
    A deg = 0;
    for (int64_t j = lane; j < nk; j += 32) {
      const A x = j < n ? threshold_of(p, adjacency_of(p, s[j], l)) : A(0);
      deg += x;
      s[j] = x;
      a_out[j] = from_acc<T>(x);
    }
    deg = warp_sum(deg);
    if (lane == 0) moments[(bh * t + i) * w + (w - 1)] = deg;
  }
}

// Forward extrema, tiled. a': (BH, rows, nk) in A, v: (BH, t, D) -> moments (BH, t, w) max block
// at max_offset and min block at min_offset (negative: not asked), arg_max / arg_min (BH, t, D):
// per channel, the extremum of v_j over {j <= i : a'_ij > 0}, the first j among ties, 0 and -1
// without neighbours.
//
// A block of 8 warps owns 32 rows of one (b, h) and 32 channels (a lane each); warp w keeps the
// running extrema of rows w, w + 8, w + 16, w + 24 in registers. The keys the tile's last row sees
// stream through shared memory 64 at a time: a' (32 rows, 64 keys) and v (64 keys, 32 channels)
// in A. Each lane reads v once per key for its 4 rows (a per-thread loop over the keys reads v
// once per (row, key) from global memory: 3.7 ms a call at the medium shape on an H100, 53% of a
// pna step), the a' of a row is one broadcast read for the warp, and a' > 0 is the same for the
// whole warp, so the branch does not diverge. The keys are visited in ascending order with strict
// comparisons, as the per-thread loop of the reference kernels does, so ties and NaN give the same
// results bit for bit.
constexpr int kExtremaRows = 32;                                            // rows per block
constexpr int kExtremaKeys = 64;                                            // keys per tile
constexpr int kExtremaThreads = 256;                                        // 8 warps
constexpr int kExtremaRowsPerWarp = kExtremaRows / (kExtremaThreads / 32);  // 4

template <class A>
constexpr int extrema_shared_bytes() {
  return 2 * kExtremaRows * kExtremaKeys * static_cast<int>(sizeof(A));  // a' (32, 64), v (64, 32)
}

template <class T, class A>
__global__ void __launch_bounds__(kExtremaThreads)
    pna_extrema_kernel(const A* ap, Heads<const T> v, A* moments, int32_t* arg_max,
                       int32_t* arg_min, int64_t max_offset, int64_t min_offset, int64_t bh_count,
                       int64_t rows, int64_t nk, int64_t r0, int64_t t, int64_t d, int64_t w) {
  extern __shared__ __align__(16) unsigned char extrema_smem[];
  A* a_tile = reinterpret_cast<A*>(extrema_smem);    // (32 rows, 64 keys)
  A* v_tile = a_tile + kExtremaRows * kExtremaKeys;  // (64 keys, 32 channels)
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t row_tiles = (rows + kExtremaRows - 1) / kExtremaRows, channel_tiles = (d + 31) / 32;
  const int64_t units = bh_count * row_tiles * channel_tiles;
  // The unit loop and the key loop have block-uniform bounds: every thread reaches the barriers.
  for (int64_t unit = blockIdx.x; unit < units; unit += gridDim.x) {
    const int64_t c0 = (unit % channel_tiles) * 32,
                  row0 = (unit / channel_tiles) % row_tiles * kExtremaRows,
                  bh = unit / (channel_tiles * row_tiles);
    const int64_t row_end = rows < row0 + kExtremaRows ? rows : row0 + kExtremaRows;
    const int64_t keys = r0 + row_end;  // the last row, r0 + row_end - 1, sees keys [0, keys)
    A hi[kExtremaRowsPerWarp], lo[kExtremaRowsPerWarp];
    int32_t at_hi[kExtremaRowsPerWarp], at_lo[kExtremaRowsPerWarp];
#pragma unroll
    for (int k = 0; k < kExtremaRowsPerWarp; ++k) hi[k] = lo[k] = A(0), at_hi[k] = at_lo[k] = -1;
    for (int64_t j0 = 0; j0 < keys; j0 += kExtremaKeys) {
      __syncthreads();  // the previous tile has been read
      for (int e = threadIdx.x; e < kExtremaRows * kExtremaKeys; e += kExtremaThreads) {
        const int r = e / kExtremaKeys, jj = e % kExtremaKeys;
        const int64_t row = row0 + r, j = j0 + jj;
        a_tile[e] = row < rows && j < nk ? ap[(bh * rows + row) * nk + j] : A(0);
      }
      for (int e = threadIdx.x; e < kExtremaKeys * 32; e += kExtremaThreads) {
        const int jj = e / 32, cc = e % 32;
        const int64_t j = j0 + jj, c = c0 + cc;
        v_tile[e] = j < t && c < d ? to_acc(v.row(bh, j)[c]) : A(0);
      }
      __syncthreads();
      const int tile_keys = keys - j0 < kExtremaKeys ? static_cast<int>(keys - j0) : kExtremaKeys;
      for (int jj = 0; jj < tile_keys; ++jj) {
        const A x = v_tile[jj * 32 + lane];
        const int64_t j = j0 + jj;
#pragma unroll
        for (int k = 0; k < kExtremaRowsPerWarp; ++k) {
          const int r = warp + k * (kExtremaThreads / 32);
          if (j > r0 + row0 + r || !(a_tile[r * kExtremaKeys + jj] > A(0))) continue;
          if (at_hi[k] < 0 || x > hi[k]) hi[k] = x, at_hi[k] = static_cast<int32_t>(j);
          if (at_lo[k] < 0 || x < lo[k]) lo[k] = x, at_lo[k] = static_cast<int32_t>(j);
        }
      }
    }
    const int64_t c = c0 + lane;
#pragma unroll
    for (int k = 0; k < kExtremaRowsPerWarp; ++k) {
      const int64_t row = row0 + warp + k * (kExtremaThreads / 32);
      if (row >= rows || c >= d) continue;
      const int64_t i = r0 + row, out = (bh * t + i) * d + c;
      A* m = moments + (bh * t + i) * w;
      if (max_offset >= 0) {
        m[max_offset + c] = hi[k];
        arg_max[out] = at_hi[k];
      }
      if (min_offset >= 0) {
        m[min_offset + c] = lo[k];
        arg_min[out] = at_lo[k];
      }
    }
  }
}

// Backward. scores: (BH, rows, nk) s in A -> ap: a' in T (0 for j > i), from the saved lse. A warp
// per row.
template <class T, class A>
__global__ void pna_adjacency_backward_kernel(const A* scores, const A* lse, T* ap, PnaParams<A> p,
                                              int64_t count, int64_t rows, int64_t nk, int64_t r0,
                                              int64_t t) {
  const int lane = threadIdx.x & 31;
  GRADUS_WARP_ROWS(row, count) {
    const int64_t bh = row / rows, i = r0 + row % rows, n = i + 1;
    const A l = p.softmax ? lse[bh * t + i] : A(0);
    for (int64_t j = lane; j < nk; j += 32)
      ap[row * nk + j] =
          from_acc<T>(j < n ? threshold_of(p, adjacency_of(p, scores[row * nk + j], l)) : A(0));
  }
}

// Backward. scores: (BH, rows, nk) s in A, dap: (BH, rows, nk) g_sum . v_j + g_sq . v_j^2 in A
// (overwritten with g_a), grad (BH, t, w) for g_deg -> ds: (BH, rows, nk) g_s in T (0 for j > i):
// g_a = (dap + g_deg) threshold'(a); relu: g_s = g_a [s > 0]; softmax: g_s = a (g_a - sum_j a g_a).
// A warp per row.
template <class T, class A>
__global__ void pna_grad_scores_kernel(const A* scores, A* dap, const A* lse, const A* grad, T* ds,
                                       PnaParams<A> p, int64_t count, int64_t rows, int64_t nk,
                                       int64_t r0, int64_t t, int64_t w) {
  const int lane = threadIdx.x & 31;
  GRADUS_WARP_ROWS(row, count) {
    const int64_t bh = row / rows, i = r0 + row % rows, n = i + 1;
    const A l = p.softmax ? lse[bh * t + i] : A(0);
    const A g_deg = grad[(bh * t + i) * w + (w - 1)];
    const A* s = scores + row * nk;
    A* g = dap + row * nk;
    A dot = 0;  // sum_j a_ij g_a_ij (softmax)
    for (int64_t j = lane; j < n; j += 32) {
      const A a = adjacency_of(p, s[j], l);
      const A ga = (g[j] + g_deg) * threshold_slope(p, a);
      g[j] = ga;
      dot += a * ga;
    }
    if (p.softmax) dot = warp_sum(dot);
    for (int64_t j = lane; j < nk; j += 32) {
      A v = 0;
      if (j < n) v = p.softmax ? dexp(s[j] - l) * (g[j] - dot) : (s[j] > A(0) ? g[j] : A(0));
      ds[row * nk + j] = from_acc<T>(v);
    }
  }
}

#undef GRADUS_WARP_ROWS

// gv: (BH, t, D) in A += the extrema's gradient: g_max[i, c] (grad (BH, t, w) at max_offset) at
// row arg_max[i, c], likewise min (offsets negative: not asked). A thread per (bh, channel), rows
// in ascending order, so the additions into one element run in a fixed order without atomics.
template <class A>
__global__ void pna_extrema_grad_kernel(const A* grad, const int32_t* arg_max,
                                        const int32_t* arg_min, A* gv, int64_t max_offset,
                                        int64_t min_offset, int64_t bh_count, int64_t t, int64_t d,
                                        int64_t w) {
  GRADUS_CUDA_LOOP(e, bh_count * d) {
    const int64_t c = e % d, bh = e / d;
    for (int64_t i = 0; i < t; ++i) {
      const int64_t r = bh * t + i;
      if (max_offset >= 0 && arg_max[r * d + c] >= 0)
        gv[(bh * t + arg_max[r * d + c]) * d + c] += grad[r * w + max_offset + c];
      if (min_offset >= 0 && arg_min[r * d + c] >= 0)
        gv[(bh * t + arg_min[r * d + c]) * d + c] += grad[r * w + min_offset + c];
    }
  }
}

// The same sums with the column in shared memory: a block of one warp per (bh, 32 channels), lane
// c's column gv[bh, :, c] held in col[i * 32 + lane] (t * 32 values of A). Each lane reads and
// writes its own column only, in the same ascending row order as pna_extrema_grad_kernel, so the
// results are that kernel's bit for bit; what changes is where the read-modify-write chain runs:
// about 30 cycles a step in shared memory against a global load's latency (on an H100 the global
// kernel took 0.87 ms a call at B 16, T 1024, D 64: 1024 dependent steps per thread, 12288
// threads). The row loads do not depend on the column, so 8 rows are read ahead. The host uses it
// where the column fits the block's shared memory (t * 32 * sizeof(A) bytes).
template <class A>
__global__ void __launch_bounds__(32)
    pna_extrema_grad_column_kernel(const A* __restrict__ grad, const int32_t* __restrict__ arg_max,
                                   const int32_t* __restrict__ arg_min, A* gv, int64_t max_offset,
                                   int64_t min_offset, int64_t bh_count, int64_t t, int64_t d,
                                   int64_t w) {
  extern __shared__ __align__(16) unsigned char column_smem[];
  A* col = reinterpret_cast<A*>(column_smem);
  constexpr int kAhead = 8;
  const int lane = threadIdx.x;
  const int64_t groups = (d + 31) / 32;
  for (int64_t unit = blockIdx.x; unit < bh_count * groups; unit += gridDim.x) {
    const int64_t bh = unit / groups, c = (unit % groups) * 32 + lane;
    if (c >= d) continue;  // no barrier below: each lane works alone
    A* g_col = gv + bh * t * d + c;
    for (int64_t i = 0; i < t; ++i) col[i * 32 + lane] = g_col[i * d];
    for (int64_t i0 = 0; i0 < t; i0 += kAhead) {
      int32_t j_max[kAhead], j_min[kAhead];
      A v_max[kAhead], v_min[kAhead];
#pragma unroll
      for (int k = 0; k < kAhead; ++k) {
        const int64_t i = i0 + k, r = bh * t + i;
        j_max[k] = j_min[k] = -1;
        if (i < t && max_offset >= 0) {
          j_max[k] = arg_max[r * d + c];
          v_max[k] = grad[r * w + max_offset + c];
        }
        if (i < t && min_offset >= 0) {
          j_min[k] = arg_min[r * d + c];
          v_min[k] = grad[r * w + min_offset + c];
        }
      }
#pragma unroll
      for (int k = 0; k < kAhead; ++k) {  // row i0 + k: max first, then min, as the global kernel
        if (j_max[k] >= 0) col[j_max[k] * 32 + lane] += v_max[k];
        if (j_min[k] >= 0) col[j_min[k] * 32 + lane] += v_min[k];
      }
    }
    for (int64_t i = 0; i < t; ++i) g_col[i * d] = col[i * 32 + lane];
  }
}

// Launches the extrema gradient: the shared-memory column kernel where a column of t rows fits the
// device's opt-in shared memory per block (t up to 1816 rows in f32 on an H100), the global one
// elsewhere.
template <class A>
void extrema_grad(const A* grad, const int32_t* arg_max, const int32_t* arg_min, A* gv,
                  int64_t max_offset, int64_t min_offset, int64_t bh, int64_t t, int64_t d,
                  int64_t w) {
  const int64_t bytes = t * 32 * static_cast<int64_t>(sizeof(A));
  static const int64_t limit = properties().sharedMemPerBlockOptin;
  if (bytes <= limit) {
    static int64_t allowed = 48 * 1024;  // what a kernel may use without opting in
    if (bytes > allowed) {
      GRADUS_CUDA_CHECK(cudaFuncSetAttribute(pna_extrema_grad_column_kernel<A>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(limit)));
      allowed = limit;
    }
    const int64_t units = bh * ceil_div(d, int64_t{32});
    pna_extrema_grad_column_kernel<A><<<grid_for(units), 32, bytes, stream()>>>(
        grad, arg_max, arg_min, gv, max_offset, min_offset, bh, t, d, w);
    GRADUS_CUDA_CHECK_LAUNCH("pna_backward (blocked extrema gradient, shared column)");
    return;
  }
  pna_extrema_grad_kernel<A><<<grid_for(ceil_div(bh * d, kThreads)), kThreads, 0, stream()>>>(
      grad, arg_max, arg_min, gv, max_offset, min_offset, bh, t, d, w);
  GRADUS_CUDA_CHECK_LAUNCH("pna_backward (blocked extrema gradient)");
}

// grad_v = gv + 2 v u (u null: no square block), gv, u: (BH, t, D) contiguous in A, v and grad_v
// through their strides. A thread per element.
template <class T, class A>
__global__ void pna_grad_v_kernel(const A* gv, const A* u, Heads<const T> v, Heads<T> grad_v,
                                  int64_t t, int64_t d, int64_t n) {
  GRADUS_CUDA_LOOP(e, n) {
    const int64_t c = e % d, r = e / d, i = r % t, bh = r / t;
    A x = gv[e];
    if (u != nullptr) x += A(2) * to_acc(v.row(bh, i)[c]) * u[e];
    grad_v.row(bh, i)[c] = from_acc<T>(x);
  }
}

// The offsets of the extrema blocks, -1 when not asked.
int64_t max_offset_of(const PnaShape& s) { return s.with_max ? s.max_offset() : -1; }
int64_t min_offset_of(const PnaShape& s) { return s.with_min ? s.min_offset() : -1; }

// ---------------------------------------------------------------- blocked: forward

template <class T>
void pna_forward_blocked(const PnaShape& s, AttentionOperand q, AttentionOperand k,
                         AttentionOperand v, void* moments_, int32_t* arg_max, int32_t* arg_min,
                         void* lse_) {
  using A = acc_t<T>;
  constexpr bool same = std::is_same_v<T, A>;
  const int64_t BH = s.batch * s.heads, D = s.head_dim, W = s.width(), t = s.t;
  A* moments = static_cast<A*>(moments_);
  A* lse = static_cast<A*>(lse_);
  const PnaParams<A> p = params_of<A>(s);
  const Planes<T> qp = planes_of<T>(q, s), kp = planes_of<T>(k, s), vp = planes_of<T>(v, s);
  Planes<T> v2;
  if (s.with_square) v2 = converted_planes<T>(heads_of<T>(v, s.heads), s, true);
  const int64_t R = block_rows(s, sizeof(A) + (same ? 0 : sizeof(T)));
  Tensor scores_t = Tensor::empty({BH * R * t}, acc_dtype<A>(), kGPU);
  Tensor ap_t = same ? Tensor() : Tensor::empty({BH * R * t}, element_dtype<T>(), kGPU);
  A* scores = static_cast<A*>(scores_t.raw_data());
  T* ap = same ? reinterpret_cast<T*>(scores) : static_cast<T*>(ap_t.raw_data());
  for (int64_t r0 = 0; r0 < t; r0 += R) {
    const int64_t rows = std::min(R, t - r0), nk = r0 + rows, count = BH * rows;
    // scores = scale q_blk k^T: (BH, rows, nk)
    gemm<T, A>(false, true, rows, nk, D, s.scale, qp.data + r0 * qp.ld, qp.ld, qp.stride, kp.data,
               kp.ld, kp.stride, 0.0, scores, nk, rows * nk, BH);
    pna_adjacency_forward_kernel<T, A><<<rows_grid(count), kThreads, 0, stream()>>>(
        scores, ap, lse, moments, p, count, rows, nk, r0, t, W);
    GRADUS_CUDA_CHECK_LAUNCH("pna_forward (blocked adjacency)");
    // sum_blk = a' v, sq_blk = a' v^2: (BH, rows, D) into the moments' rows (leading dimension W)
    A* m_blk = moments + r0 * W;
    gemm<T, A>(false, false, rows, D, nk, 1.0, ap, nk, rows * nk, vp.data, vp.ld, vp.stride, 0.0,
               m_blk, W, t * W, BH);
    if (s.with_square)
      gemm<T, A>(false, false, rows, D, nk, 1.0, ap, nk, rows * nk, v2.data, v2.ld, v2.stride, 0.0,
                 m_blk + s.square_offset(), W, t * W, BH);
    if (s.with_max || s.with_min) {
      // (BH, ceil(rows / 32), ceil(D / 32)) units of 32 rows and 32 channels
      const int64_t units = BH * ceil_div(rows, int64_t{kExtremaRows}) * ceil_div(D, int64_t{32});
      constexpr int shared_bytes = extrema_shared_bytes<A>();
      pna_extrema_kernel<T, A><<<grid_for(units), kExtremaThreads, shared_bytes, stream()>>>(
          scores, heads_of<T>(v, s.heads), moments, arg_max, arg_min, max_offset_of(s),
          min_offset_of(s), BH, rows, nk, r0, t, D, W);
      GRADUS_CUDA_CHECK_LAUNCH("pna_forward (blocked extrema)");
    }
  }
}

// ---------------------------------------------------------------- blocked: backward

template <class T>
void pna_backward_blocked(const PnaShape& s, AttentionOperand q, AttentionOperand k,
                          AttentionOperand v, const void* lse_, const int32_t* arg_max,
                          const int32_t* arg_min, const void* grad_, AttentionOutput grad_q,
                          AttentionOutput grad_k, AttentionOutput grad_v) {
  using A = acc_t<T>;
  const int64_t BH = s.batch * s.heads, D = s.head_dim, W = s.width(), t = s.t;
  const A* lse = static_cast<const A*>(lse_);
  const A* grad = static_cast<const A*>(grad_);
  const PnaParams<A> p = params_of<A>(s);
  // Gradients accumulate in A in contiguous (B, H, T, D) buffers (zero: keys no query sees keep
  // zero gradients), converted into their outputs' dtype and layout at the end. u = sum_i a'_ij
  // g_sq_i, the square block's gradient before the factor 2 v_j.
  Tensor dq_t = Tensor::empty({s.batch, s.heads, t, D}, acc_dtype<A>(), kGPU);
  Tensor dk_t = Tensor::zeros({s.batch, s.heads, t, D}, acc_dtype<A>(), kGPU);
  Tensor dv_t = Tensor::zeros({s.batch, s.heads, t, D}, acc_dtype<A>(), kGPU);
  Tensor u_t =
      s.with_square ? Tensor::zeros({s.batch, s.heads, t, D}, acc_dtype<A>(), kGPU) : Tensor();
  A* dq = static_cast<A*>(dq_t.raw_data());
  A* dk = static_cast<A*>(dk_t.raw_data());
  A* dv = static_cast<A*>(dv_t.raw_data());
  A* u = s.with_square ? static_cast<A*>(u_t.raw_data()) : nullptr;
  const Planes<T> qp = planes_of<T>(q, s), kp = planes_of<T>(k, s), vp = planes_of<T>(v, s);
  Planes<T> v2;
  if (s.with_square) v2 = converted_planes<T>(heads_of<T>(v, s.heads), s, true);
  // The g_sum and g_sq blocks of grad as T operands: grad itself (leading dimension W) when T is A,
  // else converted copies.
  const Heads<const A> grad_heads{grad, s.heads * t * W, t * W, W, s.heads};
  Planes<T> gs, gq;
  if constexpr (std::is_same_v<T, A>) {
    gs = {grad, W, t * W, {}};
    if (s.with_square) gq = {grad + s.square_offset(), W, t * W, {}};
  } else {
    gs = converted_planes<T>(grad_heads, s, false);
    if (s.with_square) {
      Heads<const A> sq_heads = grad_heads;
      sq_heads.data += s.square_offset();
      gq = converted_planes<T>(sq_heads, s, false);
    }
  }
  const int64_t R = block_rows(s, 2 * sizeof(A) + sizeof(T));
  Tensor scores_t = Tensor::empty({BH * R * t}, acc_dtype<A>(), kGPU);
  Tensor dap_t = Tensor::empty({BH * R * t}, acc_dtype<A>(), kGPU);
  Tensor ap_t = Tensor::empty({BH * R * t}, element_dtype<T>(), kGPU);
  A* scores = static_cast<A*>(scores_t.raw_data());
  A* dap = static_cast<A*>(dap_t.raw_data());
  T* ap = static_cast<T*>(ap_t.raw_data());  // a', then dS
  for (int64_t r0 = 0; r0 < t; r0 += R) {
    const int64_t rows = std::min(R, t - r0), nk = r0 + rows, count = BH * rows;
    const T* q_blk = qp.data + r0 * qp.ld;
    // scores = scale q_blk k^T; ap = a'
    gemm<T, A>(false, true, rows, nk, D, s.scale, q_blk, qp.ld, qp.stride, kp.data, kp.ld,
               kp.stride, 0.0, scores, nk, rows * nk, BH);
    pna_adjacency_backward_kernel<T, A>
        <<<rows_grid(count), kThreads, 0, stream()>>>(scores, lse, ap, p, count, rows, nk, r0, t);
    GRADUS_CUDA_CHECK_LAUNCH("pna_backward (blocked adjacency)");
    // dv[0:nk] += a'^T g_sum_blk, u[0:nk] += a'^T g_sq_blk: (BH, nk, D)
    gemm<T, A>(true, false, nk, D, rows, 1.0, ap, nk, rows * nk, gs.data + r0 * gs.ld, gs.ld,
               gs.stride, 1.0, dv, D, t * D, BH);
    if (s.with_square)
      gemm<T, A>(true, false, nk, D, rows, 1.0, ap, nk, rows * nk, gq.data + r0 * gq.ld, gq.ld,
                 gq.stride, 1.0, u, D, t * D, BH);
    // dap = g_sum_blk v^T + g_sq_blk (v^2)^T: (BH, rows, nk)
    gemm<T, A>(false, true, rows, nk, D, 1.0, gs.data + r0 * gs.ld, gs.ld, gs.stride, vp.data,
               vp.ld, vp.stride, 0.0, dap, nk, rows * nk, BH);
    if (s.with_square)
      gemm<T, A>(false, true, rows, nk, D, 1.0, gq.data + r0 * gq.ld, gq.ld, gq.stride, v2.data,
                 v2.ld, v2.stride, 1.0, dap, nk, rows * nk, BH);
    pna_grad_scores_kernel<T, A><<<rows_grid(count), kThreads, 0, stream()>>>(
        scores, dap, lse, grad, ap, p, count, rows, nk, r0, t, W);
    GRADUS_CUDA_CHECK_LAUNCH("pna_backward (blocked score gradient)");
    // dq_blk = scale ds k: (BH, rows, D); dk[0:nk] += scale ds^T q_blk: (BH, nk, D)
    gemm<T, A>(false, false, rows, D, nk, s.scale, ap, nk, rows * nk, kp.data, kp.ld, kp.stride,
               0.0, dq + r0 * D, D, t * D, BH);
    gemm<T, A>(true, false, nk, D, rows, s.scale, ap, nk, rows * nk, q_blk, qp.ld, qp.stride, 1.0,
               dk, D, t * D, BH);
  }
  if (s.with_max || s.with_min) {
    extrema_grad<A>(grad, arg_max, arg_min, dv, max_offset_of(s), min_offset_of(s), BH, t, D, W);
  }
  const int64_t n = BH * t * D;
  pna_grad_v_kernel<T, A><<<grid_for(ceil_div(n, kThreads)), kThreads, 0, stream()>>>(
      dv, u, heads_of<T>(v, s.heads), heads_of<T>(grad_v, s.heads), t, D, n);
  GRADUS_CUDA_CHECK_LAUNCH("pna_backward (blocked grad_v)");
  copy_heads(contiguous_heads<const A>(dq, s.heads, t, D), heads_of<T>(grad_q, s.heads), BH, t, D);
  copy_heads(contiguous_heads<const A>(dk, s.heads, t, D), heads_of<T>(grad_k, s.heads), BH, t, D);
}

// ---------------------------------------------------------------- reference

// s_ij = scale q_i . k_j in A, channels in order.
template <class T, class A>
__device__ A pna_score(const T* qi, const T* kj, int64_t d, A scale) {
  A acc = 0;
  for (int64_t c = 0; c < d; ++c) acc += to_acc(qi[c]) * to_acc(kj[c]);
  return scale * acc;
}
// lse_i = log sum_{j <= i} exp(s_ij), the maximum first.
template <class T, class A>
__device__ A pna_row_lse(const T* qi, Heads<const T> k, int64_t bh, int64_t i, int64_t d, A scale) {
  A m = A(-INFINITY);
  for (int64_t j = 0; j <= i; ++j) m = fmax(m, pna_score(qi, k.row(bh, j), d, scale));
  A sum = 0;
  for (int64_t j = 0; j <= i; ++j) sum += dexp(pna_score(qi, k.row(bh, j), d, scale) - m);
  return m + dlog(sum);
}
// g_a'_ij = g_sum_i . v_j + g_sq_i . v_j^2 + g_deg_i; g (w) is row i of grad.
template <class T, class A>
__device__ A pna_grad_adjacency(const A* g, const T* vj, int64_t d, int64_t sq_offset, int64_t w) {
  A acc = g[w - 1];
  for (int64_t c = 0; c < d; ++c) {
    const A x = to_acc(vj[c]);
    acc += g[c] * x;
    if (sq_offset >= 0) acc += g[sq_offset + c] * x * x;
  }
  return acc;
}

// q, k, v: (BH, t, D) -> moments (BH, t, w), arg_max / arg_min (BH, t, D), lse (BH, t) (softmax).
// A thread per (bh, row): the row's moments accumulate over the keys j <= i in order.
template <class T, class A>
__global__ void pna_forward_reference_kernel(Heads<const T> q, Heads<const T> k, Heads<const T> v,
                                             A* moments, int32_t* arg_max, int32_t* arg_min, A* lse,
                                             PnaParams<A> p, int64_t sq_offset, int64_t max_offset,
                                             int64_t min_offset, int64_t count, int64_t t,
                                             int64_t d, int64_t w) {
  GRADUS_CUDA_LOOP(row, count) {
    const int64_t bh = row / t, i = row % t;
    const T* qi = q.row(bh, i);
    A l = 0;
    if (p.softmax) {
      l = pna_row_lse(qi, k, bh, i, d, p.scale);
      lse[row] = l;
    }
    A* m = moments + row * w;
    for (int64_t c = 0; c < w; ++c) m[c] = 0;
    for (int64_t c = 0; c < d; ++c) {
      if (max_offset >= 0) arg_max[row * d + c] = -1;
      if (min_offset >= 0) arg_min[row * d + c] = -1;
    }
    A deg = 0;
    for (int64_t j = 0; j <= i; ++j) {
      const A x = threshold_of(p, adjacency_of(p, pna_score(qi, k.row(bh, j), d, p.scale), l));
      deg += x;
      const T* vj = v.row(bh, j);
      for (int64_t c = 0; c < d; ++c) {
        const A y = to_acc(vj[c]);
        m[c] += x * y;
        if (sq_offset >= 0) m[sq_offset + c] += x * y * y;
        if (!(x > A(0))) continue;  // the extrema range over the neighbours only
        const int64_t e = row * d + c;
        if (max_offset >= 0 && (arg_max[e] < 0 || y > m[max_offset + c])) {
          m[max_offset + c] = y;
          arg_max[e] = static_cast<int32_t>(j);
        }
        if (min_offset >= 0 && (arg_min[e] < 0 || y < m[min_offset + c])) {
          m[min_offset + c] = y;
          arg_min[e] = static_cast<int32_t>(j);
        }
      }
    }
    m[w - 1] = deg;
  }
}

// grad_q rows: dq (BH, t, D) in A, and row_dot (BH, t) = sum_j a_ij g_a_ij (softmax) for the key
// kernel. A thread per (bh, query row), keys in ascending order.
template <class T, class A>
__global__ void pna_grad_q_reference_kernel(Heads<const T> q, Heads<const T> k, Heads<const T> v,
                                            const A* lse, const A* grad, A* dq, A* row_dot,
                                            PnaParams<A> p, int64_t sq_offset, int64_t count,
                                            int64_t t, int64_t d, int64_t w) {
  GRADUS_CUDA_LOOP(row, count) {
    const int64_t bh = row / t, i = row % t;
    const T* qi = q.row(bh, i);
    const A* g = grad + row * w;
    const A l = p.softmax ? lse[row] : A(0);
    A dot = 0;
    if (p.softmax)
      for (int64_t j = 0; j <= i; ++j) {
        const A a = adjacency_of(p, pna_score(qi, k.row(bh, j), d, p.scale), l);
        dot += a * pna_grad_adjacency(g, v.row(bh, j), d, sq_offset, w) * threshold_slope(p, a);
      }
    row_dot[row] = dot;
    A* out = dq + row * d;
    for (int64_t c = 0; c < d; ++c) out[c] = 0;
    for (int64_t j = 0; j <= i; ++j) {
      const A s = pna_score(qi, k.row(bh, j), d, p.scale), a = adjacency_of(p, s, l);
      const A ga = pna_grad_adjacency(g, v.row(bh, j), d, sq_offset, w) * threshold_slope(p, a);
      const A ds = p.softmax ? a * (ga - dot) : (s > A(0) ? ga : A(0));
      const T* kj = k.row(bh, j);
      for (int64_t c = 0; c < d; ++c) out[c] += p.scale * ds * to_acc(kj[c]);
    }
  }
}

// grad_k, grad_v rows: dk, dv (BH, t, D) in A. A thread per (bh, key row j), the queries i >= j in
// ascending order, then the extrema's gradient of the rows whose arg is j.
template <class T, class A>
__global__ void pna_grad_kv_reference_kernel(Heads<const T> q, Heads<const T> k, Heads<const T> v,
                                             const A* lse, const A* grad, const A* row_dot,
                                             const int32_t* arg_max, const int32_t* arg_min, A* dk,
                                             A* dv, PnaParams<A> p, int64_t sq_offset,
                                             int64_t max_offset, int64_t min_offset, int64_t count,
                                             int64_t t, int64_t d, int64_t w) {
  GRADUS_CUDA_LOOP(row, count) {
    const int64_t bh = row / t, j = row % t;
    const T* kj = k.row(bh, j);
    const T* vj = v.row(bh, j);
    A* gk = dk + row * d;
    A* gv = dv + row * d;
    for (int64_t c = 0; c < d; ++c) gk[c] = 0, gv[c] = 0;
    for (int64_t i = j; i < t; ++i) {
      const T* qi = q.row(bh, i);
      const A* g = grad + (bh * t + i) * w;
      const A l = p.softmax ? lse[bh * t + i] : A(0);
      const A s = pna_score(qi, kj, d, p.scale), a = adjacency_of(p, s, l);
      const A x = threshold_of(p, a);
      const A ga = pna_grad_adjacency(g, vj, d, sq_offset, w) * threshold_slope(p, a);
      const A ds = p.softmax ? a * (ga - row_dot[bh * t + i]) : (s > A(0) ? ga : A(0));
      for (int64_t c = 0; c < d; ++c) {
        gk[c] += p.scale * ds * to_acc(qi[c]);
        A dvc = g[c];
        if (sq_offset >= 0) dvc += A(2) * g[sq_offset + c] * to_acc(vj[c]);
        gv[c] += x * dvc;
      }
    }
    for (int64_t i = j; i < t; ++i) {
      const int64_t r = bh * t + i;
      for (int64_t c = 0; c < d; ++c) {
        if (max_offset >= 0 && arg_max[r * d + c] == j) gv[c] += grad[r * w + max_offset + c];
        if (min_offset >= 0 && arg_min[r * d + c] == j) gv[c] += grad[r * w + min_offset + c];
      }
    }
  }
}

int64_t square_offset_of(const PnaShape& s) { return s.with_square ? s.square_offset() : -1; }

template <class T>
void pna_forward_reference(const PnaShape& s, AttentionOperand q, AttentionOperand k,
                           AttentionOperand v, void* moments, int32_t* arg_max, int32_t* arg_min,
                           void* lse) {
  using A = acc_t<T>;
  const int64_t count = s.batch * s.heads * s.t;
  pna_forward_reference_kernel<T, A>
      <<<grid_for(ceil_div(count, kThreads)), kThreads, 0, stream()>>>(
          heads_of<T>(q, s.heads), heads_of<T>(k, s.heads), heads_of<T>(v, s.heads),
          static_cast<A*>(moments), arg_max, arg_min, static_cast<A*>(lse), params_of<A>(s),
          square_offset_of(s), max_offset_of(s), min_offset_of(s), count, s.t, s.head_dim,
          s.width());
  GRADUS_CUDA_CHECK_LAUNCH("pna_forward_reference");
}

template <class T>
void pna_backward_reference(const PnaShape& s, AttentionOperand q_, AttentionOperand k_,
                            AttentionOperand v_, const void* lse_, const int32_t* arg_max,
                            const int32_t* arg_min, const void* grad_, AttentionOutput grad_q,
                            AttentionOutput grad_k, AttentionOutput grad_v) {
  using A = acc_t<T>;
  const int64_t BH = s.batch * s.heads, t = s.t, D = s.head_dim, W = s.width(), count = BH * t;
  const auto q = heads_of<T>(q_, s.heads), k = heads_of<T>(k_, s.heads),
             v = heads_of<T>(v_, s.heads);
  const A* lse = static_cast<const A*>(lse_);
  const A* grad = static_cast<const A*>(grad_);
  const PnaParams<A> p = params_of<A>(s);
  Tensor row_dot_t = Tensor::empty({count}, acc_dtype<A>(), kGPU);
  Tensor dq_t = Tensor::empty({s.batch, s.heads, t, D}, acc_dtype<A>(), kGPU);
  Tensor dk_t = Tensor::empty({s.batch, s.heads, t, D}, acc_dtype<A>(), kGPU);
  Tensor dv_t = Tensor::empty({s.batch, s.heads, t, D}, acc_dtype<A>(), kGPU);
  A* row_dot = static_cast<A*>(row_dot_t.raw_data());
  A* dq = static_cast<A*>(dq_t.raw_data());
  A* dk = static_cast<A*>(dk_t.raw_data());
  A* dv = static_cast<A*>(dv_t.raw_data());
  const int grid = grid_for(ceil_div(count, kThreads));
  pna_grad_q_reference_kernel<T, A><<<grid, kThreads, 0, stream()>>>(
      q, k, v, lse, grad, dq, row_dot, p, square_offset_of(s), count, t, D, W);
  GRADUS_CUDA_CHECK_LAUNCH("pna_grad_q_reference");
  pna_grad_kv_reference_kernel<T, A><<<grid, kThreads, 0, stream()>>>(
      q, k, v, lse, grad, row_dot, arg_max, arg_min, dk, dv, p, square_offset_of(s),
      max_offset_of(s), min_offset_of(s), count, t, D, W);
  GRADUS_CUDA_CHECK_LAUNCH("pna_grad_kv_reference");
  copy_heads(contiguous_heads<const A>(dq, s.heads, t, D), heads_of<T>(grad_q, s.heads), BH, t, D);
  copy_heads(contiguous_heads<const A>(dk, s.heads, t, D), heads_of<T>(grad_k, s.heads), BH, t, D);
  copy_heads(contiguous_heads<const A>(dv, s.heads, t, D), heads_of<T>(grad_v, s.heads), BH, t, D);
}

// ---------------------------------------------------------------- entry points

void check_pna_buffers(const PnaShape& s, const int32_t* arg_max, const int32_t* arg_min,
                       const void* lse, const char* kernel) {
  GRADUS_CHECK(!s.with_max || arg_max != nullptr, kernel, "with_max needs arg_max, found null");
  GRADUS_CHECK(!s.with_min || arg_min != nullptr, kernel, "with_min needs arg_min, found null");
  GRADUS_CHECK(s.adjacency != PnaAdjacency::softmax || lse != nullptr, kernel,
               "the softmax adjacency needs lse, found null");
}

template <class T>
void pna_forward(const PnaShape& s, AttentionOperand q, AttentionOperand k, AttentionOperand v,
                 void* moments, int32_t* arg_max, int32_t* arg_min, void* lse) {
  kernels::check_pna_shape(s, kernels::kPnaForward);
  if (s.batch * s.heads * s.t == 0) return;  // nothing to read or write: buffers may be null
  check_pna_buffers(s, arg_max, arg_min, lse, kernels::kPnaForward);
  if (kernels::pna_kernel_choice() == kernels::PnaKernelChoice::blocked)
    return pna_forward_blocked<T>(s, q, k, v, moments, arg_max, arg_min, lse);
  pna_forward_reference<T>(s, q, k, v, moments, arg_max, arg_min, lse);
}

template <class T>
void pna_backward(const PnaShape& s, AttentionOperand q, AttentionOperand k, AttentionOperand v,
                  const void* lse, const int32_t* arg_max, const int32_t* arg_min, const void* grad,
                  AttentionOutput grad_q, AttentionOutput grad_k, AttentionOutput grad_v) {
  kernels::check_pna_shape(s, kernels::kPnaBackward);
  if (s.batch * s.heads * s.t == 0) return;  // nothing to read or write: buffers may be null
  check_pna_buffers(s, arg_max, arg_min, lse, kernels::kPnaBackward);
  if (kernels::pna_kernel_choice() == kernels::PnaKernelChoice::blocked)
    return pna_backward_blocked<T>(s, q, k, v, lse, arg_max, arg_min, grad, grad_q, grad_k, grad_v);
  pna_backward_reference<T>(s, q, k, v, lse, arg_max, arg_min, grad, grad_q, grad_k, grad_v);
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL(kernels::kPnaForward, pna_forward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kPnaBackward, pna_backward);

}  // namespace gradus::cuda
