// CUDA fused scaled-dot-product attention, forward and backward (contract: kernels/attention.h;
// the CPU reference: kernels/cpu/attention.cpp). Neither path keeps the (Tq, Tk) scores: the
// forward saves one log-sum-exp per query row, and the backward rebuilds P = exp(S - lse) from it.
//
// Four kernel families, chosen by GRADUS_ATTENTION_KERNEL (kernels/cuda/attention_select.h):
// - flash (the default): the tensor-core flash kernels (forward and backward) for bf16 with D 64 or
//   128 (kernels/cuda/attention_flash.cu), blocked for everything else;
// - blocked: blocks of query rows through cuBLAS batched products and a warp-per-row softmax, any
//   dtype and head size (kernels/cuda/attention_blocked.cu);
// - reference: one warp per (b, h, row), any head_dim, f32 / f64 / bf16. Every score is a warp-wide
//   dot product; the forward makes a pass for the row maximum, one for the sum, and one per 128
//   channels for the output, so it is plainly the definition of softmax(S) V.
// - tiled (flash-attention-2 style, SIMT): D 64 or 128, f32 and bf16. A block of 4 warps owns a
//   tile of 32 rows (8 per warp) and streams 32-row tiles of the other operand through shared
//   memory (f32), a lane per streamed row; the forward keeps an online softmax per row (running
//   maximum m and sum l, the output accumulator rescaled by exp(m_old - m_new)). Causal key tiles
//   past the diagonal are never loaded.
// f64 and other head sizes always take the reference.
//
// Deterministic (docs/cuda.md): no atomics. Every output element has one writer that adds its terms
// in an order fixed by the shapes: grad_q per query row over ascending keys, grad_k and grad_v per
// key row over ascending queries (a second kernel rather than atomics into grad_q).
//
// Numerics: f32 and bf16 compute in f32, f64 in f64 (acc_t); bf16 operands convert on load (into
// shared memory, for the tiled kernels) and results round once on store. lse and delta are acc_t.
#include <cstdint>

#include "kernels/attention.h"
#include "kernels/cuda/attention_blocked.h"
#include "kernels/cuda/attention_flash.h"
#include "kernels/cuda/attention_select.h"
#include "kernels/cuda/common.cuh"

namespace gradus::cuda {
namespace {

using kernels::AttentionOperand;
using kernels::AttentionOutput;
using kernels::AttentionShape;

// ---------------------------------------------------------------- addressing and masking

// A (B, H, T, D) operand: row t of head (b, h) starts at data + b sb + h sh + t st; its D channels
// are contiguous.
template <class T>
struct Rows {
  T* data;
  int64_t sb, sh, st;
  __device__ __forceinline__ T* plane(int64_t b, int64_t h) const { return data + b * sb + h * sh; }
  __device__ __forceinline__ T* row(int64_t b, int64_t h, int64_t t) const {
    return plane(b, h) + t * st;
  }
};
template <class T>
Rows<const T> rows_of(const AttentionOperand& o) {
  return {static_cast<const T*>(o.data), o.stride_b, o.stride_h, o.stride_t};
}
template <class T>
Rows<T> rows_of(const AttentionOutput& o) {
  return {static_cast<T*>(o.data), o.stride_b, o.stride_h, o.stride_t};
}

struct Geometry {
  int64_t batch, heads, t_q, t_k, d;
  int64_t offset;  // t_k - t_q: query i is position i + offset of the keys' sequence
  bool causal;
};
Geometry geometry_of(const AttentionShape& s) {
  return {s.batch, s.heads, s.t_q, s.t_k, s.head_dim, s.t_k - s.t_q, s.causal};
}
// Query i sees keys [0, visible_keys(i)).
__device__ __forceinline__ int64_t visible_keys(const Geometry& g, int64_t i) {
  return g.causal ? min(g.t_k, i + g.offset + 1) : g.t_k;
}
// Key j is seen by queries [first_query(j), t_q).
__device__ __forceinline__ int64_t first_query(const Geometry& g, int64_t j) {
  return g.causal ? max(int64_t{0}, j - g.offset) : int64_t{0};
}
// Tiles of `tile` rows covering n rows.
__host__ __device__ __forceinline__ int64_t tiles_for(int64_t n, int64_t tile) {
  return (n + tile - 1) / tile;
}
__device__ __forceinline__ bool visible(const Geometry& g, int64_t i, int64_t j) {
  return i < g.t_q && j < g.t_k && (!g.causal || j <= i + g.offset);
}

// ---------------------------------------------------------------- reference kernels
// One warp per row, kRefWarps rows per block; rows beyond a capped grid are taken in turn
// (warp-uniform loop, so every lane reaches the shuffles).

constexpr int kRefWarps = 4;
constexpr int kRefChunk = 4;  // channels per lane per output pass: 128 channels of the row

// a . b over D channels: lane-strided partial sums, then the fixed butterfly (every lane gets it).
template <class T>
__device__ __forceinline__ acc_t<T> warp_dot(const T* a, const T* b, int64_t D, int lane) {
  acc_t<T> s = 0;
  for (int64_t d = lane; d < D; d += 32) s += load(a + d) * load(b + d);
  return warp_sum(s);
}

// q: (B, H, Tq, D), k, v: (B, H, Tk, D) -> out: (B, H, Tq, D), lse: (B, H, Tq).
// Three passes over the visible keys: the maximum m of the scores, l = sum exp(s - m), then per
// 128-channel chunk out = sum exp(s - m) v / l. Every row sees at least key 0 (Tk >= 1, and
// Tk >= Tq under a causal mask), so m is finite and l >= 1.
template <class T>
__global__ void __launch_bounds__(kRefWarps * 32)
    attention_forward_reference_kernel(Geometry g, Rows<const T> q, Rows<const T> k,
                                       Rows<const T> v, Rows<T> out, acc_t<T>* lse,
                                       acc_t<T> scale) {
  using A = acc_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t rows = g.batch * g.heads * g.t_q;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRefWarps + (threadIdx.x >> 5); r < rows;
       r += static_cast<int64_t>(gridDim.x) * kRefWarps) {
    const int64_t i = r % g.t_q, bh = r / g.t_q, b = bh / g.heads, h = bh % g.heads;
    const T* qi = q.row(b, h, i);
    const int64_t n = visible_keys(g, i);
    A m = A(-INFINITY);
    for (int64_t j = 0; j < n; ++j) m = fmax(m, scale * warp_dot(qi, k.row(b, h, j), g.d, lane));
    A l = 0;
    for (int64_t j = 0; j < n; ++j) l += dexp(scale * warp_dot(qi, k.row(b, h, j), g.d, lane) - m);
    T* oi = out.row(b, h, i);
    for (int64_t c0 = 0; c0 < g.d; c0 += 32 * kRefChunk) {
      A acc[kRefChunk] = {};
      for (int64_t j = 0; j < n; ++j) {
        const A p = dexp(scale * warp_dot(qi, k.row(b, h, j), g.d, lane) - m);
        const T* vj = v.row(b, h, j);
#pragma unroll
        for (int u = 0; u < kRefChunk; ++u) {
          const int64_t d = c0 + lane + 32 * u;
          if (d < g.d) acc[u] += p * load(vj + d);
        }
      }
#pragma unroll
      for (int u = 0; u < kRefChunk; ++u) {
        const int64_t d = c0 + lane + 32 * u;
        if (d < g.d) oi[d] = from_acc<T>(acc[u] / l);
      }
    }
    if (lane == 0) lse[r] = m + dlog(l);  // r = (b H + h) Tq + i: lse is contiguous
  }
}

// out, grad_out: (B, H, Tq, D) -> delta: (B, H, Tq), delta = rowsum(grad_out * out). Both kernel
// families use it.
template <class T>
__global__ void __launch_bounds__(kRefWarps * 32)
    attention_delta_kernel(Geometry g, Rows<const T> out, Rows<const T> grad_out, acc_t<T>* delta) {
  const int lane = threadIdx.x & 31;
  const int64_t rows = g.batch * g.heads * g.t_q;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRefWarps + (threadIdx.x >> 5); r < rows;
       r += static_cast<int64_t>(gridDim.x) * kRefWarps) {
    const int64_t i = r % g.t_q, bh = r / g.t_q, b = bh / g.heads, h = bh % g.heads;
    const acc_t<T> s = warp_dot(grad_out.row(b, h, i), out.row(b, h, i), g.d, lane);
    if (lane == 0) delta[r] = s;
  }
}

// grad_q[i] = scale * sum_j dS[i, j] k[j] over the visible keys in ascending j, with
// P[i, j] = exp(s - lse[i]) and dS = P (grad_out[i] . v[j] - delta[i]). A warp per query row.
template <class T>
__global__ void __launch_bounds__(kRefWarps * 32)
    attention_grad_q_reference_kernel(Geometry g, Rows<const T> q, Rows<const T> k, Rows<const T> v,
                                      Rows<const T> grad_out, const acc_t<T>* lse,
                                      const acc_t<T>* delta, Rows<T> grad_q, acc_t<T> scale) {
  using A = acc_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t rows = g.batch * g.heads * g.t_q;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRefWarps + (threadIdx.x >> 5); r < rows;
       r += static_cast<int64_t>(gridDim.x) * kRefWarps) {
    const int64_t i = r % g.t_q, bh = r / g.t_q, b = bh / g.heads, h = bh % g.heads;
    const T* qi = q.row(b, h, i);
    const T* gi = grad_out.row(b, h, i);
    const A lse_i = lse[r], delta_i = delta[r];
    const int64_t n = visible_keys(g, i);
    T* gq = grad_q.row(b, h, i);
    for (int64_t c0 = 0; c0 < g.d; c0 += 32 * kRefChunk) {
      A acc[kRefChunk] = {};
      for (int64_t j = 0; j < n; ++j) {
        const T* kj = k.row(b, h, j);
        const A p = dexp(scale * warp_dot(qi, kj, g.d, lane) - lse_i);
        const A ds = p * (warp_dot(gi, v.row(b, h, j), g.d, lane) - delta_i);
#pragma unroll
        for (int u = 0; u < kRefChunk; ++u) {
          const int64_t d = c0 + lane + 32 * u;
          if (d < g.d) acc[u] += ds * load(kj + d);
        }
      }
#pragma unroll
      for (int u = 0; u < kRefChunk; ++u) {
        const int64_t d = c0 + lane + 32 * u;
        if (d < g.d) gq[d] = from_acc<T>(scale * acc[u]);
      }
    }
  }
}

// grad_v[j] = sum_i P[i, j] grad_out[i], grad_k[j] = scale * sum_i dS[i, j] q[i], over the queries
// that see key j in ascending i. A warp per key row: one writer per element, no atomics.
template <class T>
__global__ void __launch_bounds__(kRefWarps * 32)
    attention_grad_kv_reference_kernel(Geometry g, Rows<const T> q, Rows<const T> k,
                                       Rows<const T> v, Rows<const T> grad_out, const acc_t<T>* lse,
                                       const acc_t<T>* delta, Rows<T> grad_k, Rows<T> grad_v,
                                       acc_t<T> scale) {
  using A = acc_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t rows = g.batch * g.heads * g.t_k;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRefWarps + (threadIdx.x >> 5); r < rows;
       r += static_cast<int64_t>(gridDim.x) * kRefWarps) {
    const int64_t j = r % g.t_k, bh = r / g.t_k, b = bh / g.heads, h = bh % g.heads;
    const T* kj = k.row(b, h, j);
    const T* vj = v.row(b, h, j);
    const A* lse_bh = lse + bh * g.t_q;
    const A* delta_bh = delta + bh * g.t_q;
    T* gk = grad_k.row(b, h, j);
    T* gv = grad_v.row(b, h, j);
    for (int64_t c0 = 0; c0 < g.d; c0 += 32 * kRefChunk) {
      A dk[kRefChunk] = {}, dv[kRefChunk] = {};
      for (int64_t i = first_query(g, j); i < g.t_q; ++i) {
        const T* qi = q.row(b, h, i);
        const T* gi = grad_out.row(b, h, i);
        const A p = dexp(scale * warp_dot(qi, kj, g.d, lane) - lse_bh[i]);
        const A ds = p * (warp_dot(gi, vj, g.d, lane) - delta_bh[i]);
#pragma unroll
        for (int u = 0; u < kRefChunk; ++u) {
          const int64_t d = c0 + lane + 32 * u;
          if (d < g.d) {
            dv[u] += p * load(gi + d);
            dk[u] += ds * load(qi + d);
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kRefChunk; ++u) {
        const int64_t d = c0 + lane + 32 * u;
        if (d < g.d) {
          gk[d] = from_acc<T>(scale * dk[u]);
          gv[d] = from_acc<T>(dv[u]);
        }
      }
    }
  }
}

// ---------------------------------------------------------------- tiled kernels (D 64, 128)
// A block: kTileWarps warps, each owning kWarpRows rows of the block's kTileRows-row tile (query
// rows for the forward and grad_q, key rows for grad_k / grad_v). The other operand streams through
// shared memory kTileCols rows at a time, row `lane` of a streamed tile belonging to lane `lane`.
// Everything in shared memory is f32. Rows a lane reads whole (its streamed row) are padded by
// kPad floats, so the 16-byte reads of 8 lanes (a quarter warp) start 4 banks apart and never
// conflict; rows read by all lanes at once (broadcast) or along the channels need no padding.

constexpr int kTileWarps = 4;
constexpr int kWarpRows = 8;
constexpr int kTileRows = kTileWarps * kWarpRows;  // 32
constexpr int kTileCols = 32;                      // a lane per streamed row
constexpr int kPad = 4;
constexpr int kTileThreads = kTileWarps * 32;

// Rows [t0, t0 + kRows) of one head's plane (row stride st) into dst (row stride ld floats) as f32;
// rows at or past t_end are zeros, so that 0-weighted terms stay 0 (never 0 * garbage = NaN).
// Neighbouring threads read neighbouring channels of a row (coalesced).
template <int kRows, int D, class T>
__device__ __forceinline__ void stage_rows(float* dst, int ld, const T* plane, int64_t st,
                                           int64_t t0, int64_t t_end) {
  for (int e = threadIdx.x; e < kRows * D; e += kTileThreads) {
    const int r = e / D, c = e % D;
    const int64_t t = t0 + r;
    dst[r * ld + c] = t < t_end ? static_cast<float>(load(plane + t * st + c)) : 0.0f;
  }
}

__device__ __forceinline__ float dot4(float4 a, float4 b, float acc) {
  return acc + a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
}
__device__ __forceinline__ const float4* as_float4(const float* p) {
  return reinterpret_cast<const float4*>(p);
}

// Shared memory of each tiled kernel, in floats (see each kernel for the layout).
template <int D>
constexpr int forward_tiled_floats() {
  return kTileRows * D + kTileCols * (D + kPad) + kTileCols * D +
         kTileWarps * kWarpRows * kTileCols;
}
template <int D>
constexpr int grad_q_tiled_floats() {
  return 2 * kTileRows * D + 2 * kTileCols * (D + kPad) + kTileWarps * kWarpRows * kTileCols;
}
template <int D>
constexpr int grad_kv_tiled_floats() {
  return 2 * kTileRows * D + 2 * kTileCols * (D + kPad) + 2 * kTileCols +
         2 * kTileWarps * kWarpRows * kTileCols;
}

// Query tiles are taken heaviest first: tile index u covers head bh = u % (B H) and query tile
// n_tiles - 1 - u / (B H), so under a causal mask the blocks that see the most keys start first.
//
// q: (B, H, Tq, D), k, v: (B, H, Tk, D) -> out: (B, H, Tq, D), lse: (B, H, Tq).
// Shared: Qs (32, D) | Ks (32, D + 4) | Vs (32, D) | P (4 warps, 8 rows, 32 keys).
// Per key tile: lane j scores key j0 + j against the warp's 8 query rows (Q read by broadcast),
// the online softmax updates m, l and rescales the accumulator, P goes to shared memory, and lane c
// adds P V for channels c, c + 32, ... of its warp's rows.
template <class T, int D>
__global__ void __launch_bounds__(kTileThreads)
    attention_forward_tiled_kernel(Geometry g, Rows<const T> q, Rows<const T> k, Rows<const T> v,
                                   Rows<T> out, float* lse, float scale) {
  constexpr int kC = D / 32;  // channels per lane
  extern __shared__ float4 shared_f4[];
  float* Qs = reinterpret_cast<float*>(shared_f4);
  float* Ks = Qs + kTileRows * D;
  float* Vs = Ks + kTileCols * (D + kPad);
  float* Ps = Vs + kTileCols * D;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float* Pw = Ps + warp * kWarpRows * kTileCols;  // P[r][j] of this warp's rows
  const int64_t heads = g.batch * g.heads, q_tiles = tiles_for(g.t_q, kTileRows);
  for (int64_t u = blockIdx.x; u < heads * q_tiles; u += gridDim.x) {
    const int64_t bh = u % heads, b = bh / g.heads, h = bh % g.heads;
    const int64_t i0 = (q_tiles - 1 - u / heads) * kTileRows;
    __syncthreads();  // the previous tile's reads of Qs are done
    stage_rows<kTileRows, D>(Qs, D, q.plane(b, h), q.st, i0, g.t_q);
    float m[kWarpRows], l[kWarpRows], acc[kWarpRows][kC];
#pragma unroll
    for (int r = 0; r < kWarpRows; ++r) {
      m[r] = -INFINITY;
      l[r] = 0.0f;
#pragma unroll
      for (int c = 0; c < kC; ++c) acc[r][c] = 0.0f;
    }
    // Keys some real row of the tile sees; rows past Tq (the last tile's padding) add none.
    const int64_t key_end = visible_keys(g, min(g.t_q, i0 + kTileRows) - 1);
    for (int64_t j0 = 0; j0 < key_end; j0 += kTileCols) {
      __syncthreads();  // Ks, Vs and P of the previous key tile are no longer read
      stage_rows<kTileCols, D>(Ks, D + kPad, k.plane(b, h), k.st, j0, g.t_k);
      stage_rows<kTileCols, D>(Vs, D, v.plane(b, h), v.st, j0, g.t_k);
      __syncthreads();
      float s[kWarpRows];
#pragma unroll
      for (int r = 0; r < kWarpRows; ++r) s[r] = 0.0f;
      const float4* kj = as_float4(Ks + lane * (D + kPad));
#pragma unroll 4
      for (int d4 = 0; d4 < D / 4; ++d4) {
        const float4 kv = kj[d4];
#pragma unroll
        for (int r = 0; r < kWarpRows; ++r)
          s[r] = dot4(as_float4(Qs + (warp * kWarpRows + r) * D)[d4], kv, s[r]);
      }
      const int64_t j = j0 + lane;
#pragma unroll
      for (int r = 0; r < kWarpRows; ++r) {
        const int64_t i = i0 + warp * kWarpRows + r;
        // Padding rows (i >= Tq) are scored as if real (key 0 is visible to them too), so their
        // m stays finite; they are never stored.
        const bool seen = j < g.t_k && (!g.causal || j <= i + g.offset);
        const float sr = seen ? s[r] * scale : -INFINITY;
        // Key 0 is in the first tile and visible to every row, so m_new is finite from the first
        // tile on, and exp(-inf - m_new) = 0 for masked keys and for alpha on the first tile.
        const float m_new = fmaxf(m[r], warp_max(sr));
        const float alpha = expf(m[r] - m_new);
        const float p = expf(sr - m_new);
        l[r] = l[r] * alpha + warp_sum(p);
        m[r] = m_new;
#pragma unroll
        for (int c = 0; c < kC; ++c) acc[r][c] *= alpha;
        Pw[r * kTileCols + lane] = p;
      }
      __syncwarp();  // P of the warp's rows written before any lane reads it
#pragma unroll 4
      for (int jj = 0; jj < kTileCols; ++jj) {
        float vv[kC];
#pragma unroll
        for (int c = 0; c < kC; ++c) vv[c] = Vs[jj * D + lane + 32 * c];
#pragma unroll
        for (int r = 0; r < kWarpRows; ++r) {
          const float p = Pw[r * kTileCols + jj];
#pragma unroll
          for (int c = 0; c < kC; ++c) acc[r][c] += p * vv[c];
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kWarpRows; ++r) {
      const int64_t i = i0 + warp * kWarpRows + r;
      if (i >= g.t_q) continue;
      T* oi = out.row(b, h, i);
#pragma unroll
      for (int c = 0; c < kC; ++c) oi[lane + 32 * c] = from_acc<T>(acc[r][c] / l[r]);
      if (lane == 0) lse[bh * g.t_q + i] = m[r] + logf(l[r]);
    }
  }
}

// grad_q, with the block's 32 query rows fixed and the key tiles streamed (those the rows see).
// Shared: Qs (32, D) | dOs (32, D) | Ks (32, D + 4) | Vs (32, D + 4) | dS (4 warps, 8 rows, 32).
// Lane j computes s = q_r . k_j and dp = grad_out_r . v_j for the warp's 8 rows, dS = P (dp -
// delta) goes to shared memory, and lane c adds dS K for its channels: grad_q sums over ascending
// keys.
template <class T, int D>
__global__ void __launch_bounds__(kTileThreads)
    attention_grad_q_tiled_kernel(Geometry g, Rows<const T> q, Rows<const T> k, Rows<const T> v,
                                  Rows<const T> grad_out, const float* lse, const float* delta,
                                  Rows<T> grad_q, float scale) {
  constexpr int kC = D / 32;
  extern __shared__ float4 shared_f4[];
  float* Qs = reinterpret_cast<float*>(shared_f4);
  float* Gs = Qs + kTileRows * D;
  float* Ks = Gs + kTileRows * D;
  float* Vs = Ks + kTileCols * (D + kPad);
  float* dSs = Vs + kTileCols * (D + kPad);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float* dSw = dSs + warp * kWarpRows * kTileCols;
  const int64_t heads = g.batch * g.heads, q_tiles = tiles_for(g.t_q, kTileRows);
  for (int64_t u = blockIdx.x; u < heads * q_tiles; u += gridDim.x) {
    const int64_t bh = u % heads, b = bh / g.heads, h = bh % g.heads;
    const int64_t i0 = (q_tiles - 1 - u / heads) * kTileRows;
    __syncthreads();
    stage_rows<kTileRows, D>(Qs, D, q.plane(b, h), q.st, i0, g.t_q);
    stage_rows<kTileRows, D>(Gs, D, grad_out.plane(b, h), grad_out.st, i0, g.t_q);
    float lse_r[kWarpRows], delta_r[kWarpRows], acc[kWarpRows][kC];
#pragma unroll
    for (int r = 0; r < kWarpRows; ++r) {
      const int64_t i = i0 + warp * kWarpRows + r;
      lse_r[r] = i < g.t_q ? lse[bh * g.t_q + i] : 0.0f;
      delta_r[r] = i < g.t_q ? delta[bh * g.t_q + i] : 0.0f;
#pragma unroll
      for (int c = 0; c < kC; ++c) acc[r][c] = 0.0f;
    }
    const int64_t key_end = visible_keys(g, min(g.t_q, i0 + kTileRows) - 1);
    for (int64_t j0 = 0; j0 < key_end; j0 += kTileCols) {
      __syncthreads();
      stage_rows<kTileCols, D>(Ks, D + kPad, k.plane(b, h), k.st, j0, g.t_k);
      stage_rows<kTileCols, D>(Vs, D + kPad, v.plane(b, h), v.st, j0, g.t_k);
      __syncthreads();
      float s[kWarpRows], dp[kWarpRows];
#pragma unroll
      for (int r = 0; r < kWarpRows; ++r) s[r] = dp[r] = 0.0f;
      const float4* kj = as_float4(Ks + lane * (D + kPad));
      const float4* vj = as_float4(Vs + lane * (D + kPad));
#pragma unroll 4
      for (int d4 = 0; d4 < D / 4; ++d4) {
        const float4 kv = kj[d4], vv = vj[d4];
#pragma unroll
        for (int r = 0; r < kWarpRows; ++r) {
          const int row = (warp * kWarpRows + r) * D;
          s[r] = dot4(as_float4(Qs + row)[d4], kv, s[r]);
          dp[r] = dot4(as_float4(Gs + row)[d4], vv, dp[r]);
        }
      }
      const int64_t j = j0 + lane;
#pragma unroll
      for (int r = 0; r < kWarpRows; ++r) {
        const int64_t i = i0 + warp * kWarpRows + r;
        const float p = visible(g, i, j) ? expf(s[r] * scale - lse_r[r]) : 0.0f;
        dSw[r * kTileCols + lane] = p * (dp[r] - delta_r[r]);
      }
      __syncwarp();
#pragma unroll 4
      for (int jj = 0; jj < kTileCols; ++jj) {
        float kk[kC];
#pragma unroll
        for (int c = 0; c < kC; ++c) kk[c] = Ks[jj * (D + kPad) + lane + 32 * c];
#pragma unroll
        for (int r = 0; r < kWarpRows; ++r) {
          const float ds = dSw[r * kTileCols + jj];
#pragma unroll
          for (int c = 0; c < kC; ++c) acc[r][c] += ds * kk[c];
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kWarpRows; ++r) {
      const int64_t i = i0 + warp * kWarpRows + r;
      if (i >= g.t_q) continue;
      T* gq = grad_q.row(b, h, i);
#pragma unroll
      for (int c = 0; c < kC; ++c) gq[lane + 32 * c] = from_acc<T>(scale * acc[r][c]);
    }
  }
}

// grad_k and grad_v, with the block's 32 key rows fixed and the query tiles that see them
// streamed in ascending order (the smallest key tiles, which see the most queries, first).
// Shared: Ks (32, D) | Vs (32, D) | Qs (32, D + 4) | dOs (32, D + 4) | lse, delta (32 each) |
// P, dS (4 warps, 8 keys, 32 queries each). Lane i scores query i0 + i against the warp's 8 keys,
// P and dS go to shared memory, and lane c adds P^T grad_out and dS^T Q for its channels.
template <class T, int D>
__global__ void __launch_bounds__(kTileThreads)
    attention_grad_kv_tiled_kernel(Geometry g, Rows<const T> q, Rows<const T> k, Rows<const T> v,
                                   Rows<const T> grad_out, const float* lse, const float* delta,
                                   Rows<T> grad_k, Rows<T> grad_v, float scale) {
  constexpr int kC = D / 32;
  extern __shared__ float4 shared_f4[];
  float* Ks = reinterpret_cast<float*>(shared_f4);
  float* Vs = Ks + kTileRows * D;
  float* Qs = Vs + kTileRows * D;
  float* Gs = Qs + kTileCols * (D + kPad);
  float* lse_s = Gs + kTileCols * (D + kPad);
  float* delta_s = lse_s + kTileCols;
  float* Ps = delta_s + kTileCols;
  float* dSs = Ps + kTileWarps * kWarpRows * kTileCols;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float* Pw = Ps + warp * kWarpRows * kTileCols;
  float* dSw = dSs + warp * kWarpRows * kTileCols;
  const int64_t heads = g.batch * g.heads, k_tiles = tiles_for(g.t_k, kTileRows);
  for (int64_t u = blockIdx.x; u < heads * k_tiles; u += gridDim.x) {
    const int64_t bh = u % heads, b = bh / g.heads, h = bh % g.heads;
    const int64_t j0 = (u / heads) * kTileRows;
    __syncthreads();
    stage_rows<kTileRows, D>(Ks, D, k.plane(b, h), k.st, j0, g.t_k);
    stage_rows<kTileRows, D>(Vs, D, v.plane(b, h), v.st, j0, g.t_k);
    float dk[kWarpRows][kC], dv[kWarpRows][kC];
#pragma unroll
    for (int r = 0; r < kWarpRows; ++r)
#pragma unroll
      for (int c = 0; c < kC; ++c) dk[r][c] = dv[r][c] = 0.0f;
    // The first query seeing the tile's first key starts the scan (whole tiles, in order).
    const int64_t i_begin = first_query(g, j0) / kTileCols * kTileCols;
    for (int64_t i0 = i_begin; i0 < g.t_q; i0 += kTileCols) {
      __syncthreads();
      stage_rows<kTileCols, D>(Qs, D + kPad, q.plane(b, h), q.st, i0, g.t_q);
      stage_rows<kTileCols, D>(Gs, D + kPad, grad_out.plane(b, h), grad_out.st, i0, g.t_q);
      if (threadIdx.x < kTileCols) {
        const int64_t i = i0 + threadIdx.x;
        lse_s[threadIdx.x] = i < g.t_q ? lse[bh * g.t_q + i] : 0.0f;
        delta_s[threadIdx.x] = i < g.t_q ? delta[bh * g.t_q + i] : 0.0f;
      }
      __syncthreads();
      float s[kWarpRows], dp[kWarpRows];
#pragma unroll
      for (int r = 0; r < kWarpRows; ++r) s[r] = dp[r] = 0.0f;
      const float4* qi = as_float4(Qs + lane * (D + kPad));
      const float4* gi = as_float4(Gs + lane * (D + kPad));
#pragma unroll 4
      for (int d4 = 0; d4 < D / 4; ++d4) {
        const float4 qv = qi[d4], gv = gi[d4];
#pragma unroll
        for (int r = 0; r < kWarpRows; ++r) {
          const int row = (warp * kWarpRows + r) * D;
          s[r] = dot4(qv, as_float4(Ks + row)[d4], s[r]);
          dp[r] = dot4(gv, as_float4(Vs + row)[d4], dp[r]);
        }
      }
      const int64_t i = i0 + lane;
#pragma unroll
      for (int r = 0; r < kWarpRows; ++r) {
        const int64_t j = j0 + warp * kWarpRows + r;
        const float p = visible(g, i, j) ? expf(s[r] * scale - lse_s[lane]) : 0.0f;
        Pw[r * kTileCols + lane] = p;
        dSw[r * kTileCols + lane] = p * (dp[r] - delta_s[lane]);
      }
      __syncwarp();
#pragma unroll 4
      for (int ii = 0; ii < kTileCols; ++ii) {
        float qq[kC], gg[kC];
#pragma unroll
        for (int c = 0; c < kC; ++c) {
          qq[c] = Qs[ii * (D + kPad) + lane + 32 * c];
          gg[c] = Gs[ii * (D + kPad) + lane + 32 * c];
        }
#pragma unroll
        for (int r = 0; r < kWarpRows; ++r) {
          const float p = Pw[r * kTileCols + ii], ds = dSw[r * kTileCols + ii];
#pragma unroll
          for (int c = 0; c < kC; ++c) {
            dv[r][c] += p * gg[c];
            dk[r][c] += ds * qq[c];
          }
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kWarpRows; ++r) {
      const int64_t j = j0 + warp * kWarpRows + r;
      if (j >= g.t_k) continue;
      T* gk = grad_k.row(b, h, j);
      T* gv = grad_v.row(b, h, j);
#pragma unroll
      for (int c = 0; c < kC; ++c) {
        gk[lane + 32 * c] = from_acc<T>(scale * dk[r][c]);
        gv[lane + 32 * c] = from_acc<T>(dv[r][c]);
      }
    }
  }
}

// ---------------------------------------------------------------- host side

// The CPU kernel's checks and messages (kernels/cpu/attention.cpp), so both backends refuse alike.

// The tiled kernels apply to f32 and bf16 with D 64 or 128, unless the reference is forced.
template <class T>
bool use_tiled(int64_t head_dim) {
  return !std::is_same_v<T, double> && (head_dim == 64 || head_dim == 128) &&
         kernels::attention_kernel_choice() == kernels::AttentionKernelChoice::tiled;
}

// A kernel whose dynamic shared memory exceeds the default 48 KiB must opt in, once per kernel.
template <class Kernel>
void allow_shared_bytes(Kernel kernel, int bytes) {
  if (bytes > 48 * 1024)
    GRADUS_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

int reference_grid(int64_t rows) { return grid_for(ceil_div(rows, kRefWarps)); }

template <class T, int D>
void forward_tiled(const Geometry& g, Rows<const T> q, Rows<const T> k, Rows<const T> v,
                   Rows<T> out, float* lse, float scale) {
  constexpr int bytes = forward_tiled_floats<D>() * sizeof(float);
  static const bool allowed =
      (allow_shared_bytes(attention_forward_tiled_kernel<T, D>, bytes), true);
  (void)allowed;
  const int64_t tiles = g.batch * g.heads * tiles_for(g.t_q, kTileRows);
  attention_forward_tiled_kernel<T, D>
      <<<grid_for(tiles), kTileThreads, bytes, stream()>>>(g, q, k, v, out, lse, scale);
  GRADUS_CUDA_CHECK_LAUNCH("attention_forward_tiled");
}

template <class T>
void attention_forward(const AttentionShape& s, AttentionOperand q_, AttentionOperand k_,
                       AttentionOperand v_, AttentionOutput out_, void* lse_) {
  using A = acc_t<T>;
  kernels::check_attention_shape(s, "attention_forward");
  const Geometry g = geometry_of(s);
  if (g.batch * g.heads * g.t_q == 0) return;
  const kernels::AttentionKernelChoice choice = kernels::attention_kernel_choice();
  if constexpr (std::is_same_v<T, bf16>) {
    if (choice == kernels::AttentionKernelChoice::flash && flash_attention_applies(g.d))
      return attention_forward_flash(s, q_, k_, v_, out_, lse_);
  }
  if (choice == kernels::AttentionKernelChoice::blocked ||
      choice == kernels::AttentionKernelChoice::flash)
    return attention_forward_blocked<T>(s, q_, k_, v_, out_, lse_);
  const auto q = rows_of<T>(q_), k = rows_of<T>(k_), v = rows_of<T>(v_);
  const auto out = rows_of<T>(out_);
  A* lse = static_cast<A*>(lse_);
  if constexpr (!std::is_same_v<T, double>) {
    if (use_tiled<T>(g.d)) {
      if (g.d == 64)
        forward_tiled<T, 64>(g, q, k, v, out, lse, static_cast<float>(s.scale));
      else
        forward_tiled<T, 128>(g, q, k, v, out, lse, static_cast<float>(s.scale));
      return;
    }
  }
  attention_forward_reference_kernel<T>
      <<<reference_grid(g.batch * g.heads * g.t_q), kRefWarps * 32, 0, stream()>>>(
          g, q, k, v, out, lse, static_cast<A>(s.scale));
  GRADUS_CUDA_CHECK_LAUNCH("attention_forward_reference");
}

template <class T, int D>
void backward_tiled(const Geometry& g, Rows<const T> q, Rows<const T> k, Rows<const T> v,
                    Rows<const T> grad_out, const float* lse, const float* delta, Rows<T> grad_q,
                    Rows<T> grad_k, Rows<T> grad_v, float scale) {
  constexpr int q_bytes = grad_q_tiled_floats<D>() * sizeof(float);
  constexpr int kv_bytes = grad_kv_tiled_floats<D>() * sizeof(float);
  static const bool allowed =
      (allow_shared_bytes(attention_grad_q_tiled_kernel<T, D>, q_bytes),
       allow_shared_bytes(attention_grad_kv_tiled_kernel<T, D>, kv_bytes), true);
  (void)allowed;
  const int64_t heads = g.batch * g.heads;
  if (g.t_q > 0) {
    attention_grad_q_tiled_kernel<T, D>
        <<<grid_for(heads * tiles_for(g.t_q, kTileRows)), kTileThreads, q_bytes, stream()>>>(
            g, q, k, v, grad_out, lse, delta, grad_q, scale);
    GRADUS_CUDA_CHECK_LAUNCH("attention_grad_q_tiled");
  }
  // With Tq = 0 grad_k and grad_v are still written (zeros): no query sees any key.
  attention_grad_kv_tiled_kernel<T, D>
      <<<grid_for(heads * tiles_for(g.t_k, kTileRows)), kTileThreads, kv_bytes, stream()>>>(
          g, q, k, v, grad_out, lse, delta, grad_k, grad_v, scale);
  GRADUS_CUDA_CHECK_LAUNCH("attention_grad_kv_tiled");
}

template <class T>
void attention_backward(const AttentionShape& s, AttentionOperand q_, AttentionOperand k_,
                        AttentionOperand v_, AttentionOperand out_, AttentionOperand grad_out_,
                        const void* lse_, void* delta_, AttentionOutput grad_q_,
                        AttentionOutput grad_k_, AttentionOutput grad_v_) {
  using A = acc_t<T>;
  kernels::check_attention_shape(s, "attention_backward");
  const Geometry g = geometry_of(s);
  const int64_t heads = g.batch * g.heads;
  if (heads == 0) return;
  const kernels::AttentionKernelChoice choice = kernels::attention_kernel_choice();
  if constexpr (std::is_same_v<T, bf16>) {
    if (choice == kernels::AttentionKernelChoice::flash && flash_attention_applies(g.d))
      return attention_backward_flash(s, q_, k_, v_, out_, grad_out_, lse_, delta_, grad_q_,
                                      grad_k_, grad_v_);
  }
  if (choice == kernels::AttentionKernelChoice::blocked ||
      choice == kernels::AttentionKernelChoice::flash)
    return attention_backward_blocked<T>(s, q_, k_, v_, out_, grad_out_, lse_, delta_, grad_q_,
                                         grad_k_, grad_v_);
  const auto q = rows_of<T>(q_), k = rows_of<T>(k_), v = rows_of<T>(v_), out = rows_of<T>(out_);
  const auto grad_out = rows_of<T>(grad_out_);
  const auto grad_q = rows_of<T>(grad_q_), grad_k = rows_of<T>(grad_k_),
             grad_v = rows_of<T>(grad_v_);
  const A* lse = static_cast<const A*>(lse_);
  A* delta = static_cast<A*>(delta_);
  if (g.t_q > 0) {
    attention_delta_kernel<T>
        <<<reference_grid(heads * g.t_q), kRefWarps * 32, 0, stream()>>>(g, out, grad_out, delta);
    GRADUS_CUDA_CHECK_LAUNCH("attention_delta");
  }
  if constexpr (!std::is_same_v<T, double>) {
    if (use_tiled<T>(g.d)) {
      const float scale = static_cast<float>(s.scale);
      if (g.d == 64)
        backward_tiled<T, 64>(g, q, k, v, grad_out, lse, delta, grad_q, grad_k, grad_v, scale);
      else
        backward_tiled<T, 128>(g, q, k, v, grad_out, lse, delta, grad_q, grad_k, grad_v, scale);
      return;
    }
  }
  const A scale = static_cast<A>(s.scale);
  if (g.t_q > 0) {
    attention_grad_q_reference_kernel<T>
        <<<reference_grid(heads * g.t_q), kRefWarps * 32, 0, stream()>>>(g, q, k, v, grad_out, lse,
                                                                         delta, grad_q, scale);
    GRADUS_CUDA_CHECK_LAUNCH("attention_grad_q_reference");
  }
  // With Tq = 0 grad_k and grad_v are still written (zeros): no query sees any key.
  attention_grad_kv_reference_kernel<T>
      <<<reference_grid(heads * g.t_k), kRefWarps * 32, 0, stream()>>>(
          g, q, k, v, grad_out, lse, delta, grad_k, grad_v, scale);
  GRADUS_CUDA_CHECK_LAUNCH("attention_grad_kv_reference");
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL(kernels::kAttentionForward, attention_forward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kAttentionBackward, attention_backward);

}  // namespace gradus::cuda
