// Flash attention on the tensor cores (see kernels/cuda/attention_flash.h), bf16 operands with f32
// accumulation, head size D of 64 or 128: the forward here, the backward further down.
//
// Forward: a block of 4 warps owns 64 query rows of one (b, h); warp w owns rows [16 w, 16 w + 16).
// For each tile of 64 keys the block can see (causal: up to its last row's diagonal):
//   S_w  = Q_w K_tile^T          wmma 16x16x16, bf16 in, f32 out, into shared memory (16, 64)
//   m, l online softmax          two lanes per row: m_new = max(m, max_j scale S), alpha =
//                                exp(m - m_new), P = exp(scale S - m_new) rounded to bf16,
//                                l = alpha l + sum_j P (the unrounded P, as FlashAttention-2)
//   O_w  = alpha O_w + P_w V     the f32 accumulator lives in shared memory (16, D): a row's
//                                rescale needs the row of each element, which wmma's opaque
//                                fragment layout does not tell, so each product loads it, adds
//                                P V and stores it back
// and at the end out = O / l (rounded once to bf16), lse = m + log l (f32). Masked scores are
// -inf (P = 0); every row sees key 0 in the first tile (a causal mask needs Tk >= Tq), so m is
// finite from then on. Rows and keys past the ends are loaded as zeros and never stored.
//
// Reference path: attention.cu's reference kernels (GRADUS_ATTENTION_KERNEL=reference), which
// CudaParityAttentionKernels compares with this one and the CPU.
//
// Shared memory (bytes): Q, K, V tiles (64, D + 8) bf16 each, S (4, 16, 68) f32, P (4, 16, 72)
// bf16, O (4, 16, D + 4) f32, m, l, alpha (64) f32: 72,448 at D 64, 113,408 at D 128 (opt-in above
// 48 KiB; an H100 allows 227 KiB per block). Row paddings keep every wmma pointer 32-byte aligned
// and stagger the banks. Deterministic: each output element has one writer and a fixed order of
// sums.
#include <mma.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/attention_flash.h"
#include "kernels/cuda/common.cuh"

namespace gradus::cuda {
namespace {

constexpr int kFlashRows = 64;  // query rows per block
constexpr int kFlashKeys = 64;  // keys per tile
constexpr int kFlashWarps = 4;  // 16 query rows each
constexpr int kFlashThreads = kFlashWarps * 32;
constexpr int kWarpRows = kFlashRows / kFlashWarps;  // 16: one wmma tile tall

// Shared-memory layout of a block for head size D (element counts and byte offsets).
template <int D>
struct FlashLayout {
  static constexpr int ld_in = D + 8;          // bf16 Q, K, V rows
  static constexpr int ld_s = kFlashKeys + 4;  // f32 scores
  static constexpr int ld_p = kFlashKeys + 8;  // bf16 probabilities
  static constexpr int ld_o = D + 4;           // f32 output accumulator
  static constexpr int round32(int bytes) { return (bytes + 31) / 32 * 32; }
  static constexpr int q = 0;
  static constexpr int k = q + round32(kFlashRows * ld_in * 2);
  static constexpr int v = k + round32(kFlashKeys * ld_in * 2);
  static constexpr int s = v + round32(kFlashKeys * ld_in * 2);
  static constexpr int p = s + round32(kFlashRows * ld_s * 4);
  static constexpr int o = p + round32(kFlashRows * ld_p * 2);
  static constexpr int stats = o + round32(kFlashRows * ld_o * 4);  // m, l, alpha: (3, 64) f32
  static constexpr int bytes = stats + 3 * kFlashRows * 4;
};

// Rows [t0, t0 + 64) of one head x: (T, D) with row stride `stride_t` into tile: (64, ld) bf16,
// zeros past row T. 16-byte packs when the head's rows allow them, else element by element.
template <int D>
__device__ void load_tile(const bf16* x, int64_t stride_t, int64_t t0, int64_t T, bool packed,
                          bf16* tile, int ld) {
  if (packed) {
    constexpr int kPacks = D / 8;  // 8 bf16 per 16 bytes
    for (int e = threadIdx.x; e < 64 * kPacks; e += kFlashThreads) {
      const int r = e / kPacks, c = (e % kPacks) * 8;
      Pack<bf16> pk;
      if (t0 + r < T)
        pk = *reinterpret_cast<const Pack<bf16>*>(x + (t0 + r) * stride_t + c);
      else
        for (int j = 0; j < 8; ++j) pk.v[j] = __float2bfloat16_rn(0.0f);
      *reinterpret_cast<Pack<bf16>*>(tile + r * ld + c) = pk;
    }
  } else {
    for (int e = threadIdx.x; e < 64 * D; e += kFlashThreads) {
      const int r = e / D, c = e % D;
      tile[r * ld + c] = t0 + r < T ? x[(t0 + r) * stride_t + c] : __float2bfloat16_rn(0.0f);
    }
  }
}

// q: (B, H, Tq, D), k, v: (B, H, Tk, D) through their strides; out: (B, H, Tq, D); lse: (B, H, Tq)
// contiguous f32. A block per (b, h, 64-query tile), the tiles with the most keys first.
template <int D>
__global__ void __launch_bounds__(kFlashThreads)
    attention_forward_flash_kernel(kernels::AttentionShape s, kernels::AttentionOperand q_op,
                                   kernels::AttentionOperand k_op, kernels::AttentionOperand v_op,
                                   kernels::AttentionOutput out_op, float* lse, bool packed) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  using L = FlashLayout<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* q_tile = reinterpret_cast<bf16*>(smem + L::q);
  bf16* k_tile = reinterpret_cast<bf16*>(smem + L::k);
  bf16* v_tile = reinterpret_cast<bf16*>(smem + L::v);
  float* m_row = reinterpret_cast<float*>(smem + L::stats);
  float* l_row = m_row + kFlashRows;
  float* alpha_row = l_row + kFlashRows;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* s_w = reinterpret_cast<float*>(smem + L::s) + warp * kWarpRows * L::ld_s;
  bf16* p_w = reinterpret_cast<bf16*>(smem + L::p) + warp * kWarpRows * L::ld_p;
  float* o_w = reinterpret_cast<float*>(smem + L::o) + warp * kWarpRows * L::ld_o;
  const float scale = static_cast<float>(s.scale);
  const int64_t q_tiles = (s.t_q + kFlashRows - 1) / kFlashRows;
  const int64_t tiles = s.batch * s.heads * q_tiles;
  const int64_t offset = s.t_k - s.t_q;  // causal: key j is visible to query i iff j <= i + offset

  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    // Every (b, h)'s last query tile first: under a causal mask they see the most keys.
    const int64_t bh = tile % (s.batch * s.heads);
    const int64_t q0 = (q_tiles - 1 - tile / (s.batch * s.heads)) * kFlashRows;
    const int64_t b = bh / s.heads, h = bh % s.heads;
    const bf16* q = static_cast<const bf16*>(q_op.data) + b * q_op.stride_b + h * q_op.stride_h;
    const bf16* k = static_cast<const bf16*>(k_op.data) + b * k_op.stride_b + h * k_op.stride_h;
    const bf16* v = static_cast<const bf16*>(v_op.data) + b * v_op.stride_b + h * v_op.stride_h;
    const int64_t last_row = (q0 + kFlashRows < s.t_q ? q0 + kFlashRows : s.t_q) - 1;
    const int64_t keys = s.causal && last_row + offset + 1 < s.t_k ? last_row + offset + 1 : s.t_k;

    __syncthreads();  // the previous tile's readers of q_tile, m, l are done
    load_tile<D>(q, q_op.stride_t, q0, s.t_q, packed, q_tile, L::ld_in);
    for (int e = lane; e < kWarpRows * D; e += 32) o_w[(e / D) * L::ld_o + e % D] = 0.0f;
    if (lane < kWarpRows) {
      m_row[warp * kWarpRows + lane] = -INFINITY;
      l_row[warp * kWarpRows + lane] = 0.0f;
    }

    for (int64_t k0 = 0; k0 < keys; k0 += kFlashKeys) {
      __syncthreads();  // every warp is done with the previous K and V tiles
      load_tile<D>(k, k_op.stride_t, k0, s.t_k, packed, k_tile, L::ld_in);
      load_tile<D>(v, v_op.stride_t, k0, s.t_k, packed, v_tile, L::ld_in);
      __syncthreads();

      // S_w = Q_w K_tile^T: (16, 64); K stored (key, d) row-major is K^T column-major.
      for (int n = 0; n < kFlashKeys / 16; ++n) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int kk = 0; kk < D / 16; ++kk) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> bt;
          wmma::load_matrix_sync(a, q_tile + warp * kWarpRows * L::ld_in + kk * 16, L::ld_in);
          wmma::load_matrix_sync(bt, k_tile + n * 16 * L::ld_in + kk * 16, L::ld_in);
          wmma::mma_sync(acc, a, bt, acc);
        }
        wmma::store_matrix_sync(s_w + n * 16, acc, L::ld_s, wmma::mem_row_major);
      }
      __syncwarp();

      // Online softmax: lanes 2r and 2r + 1 share row r, 32 keys each.
      {
        const int r = lane / 2, half = lane % 2;
        const int64_t i = q0 + warp * kWarpRows + r;
        const float* srow = s_w + r * L::ld_s + half * 32;
        float tile_max = -INFINITY;
        for (int c = 0; c < 32; ++c) {
          const int64_t j = k0 + half * 32 + c;
          const bool visible = j < s.t_k && (!s.causal || j <= i + offset);
          if (visible) tile_max = fmaxf(tile_max, scale * srow[c]);
        }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        const float m_old = m_row[warp * kWarpRows + r];
        const float m_new = fmaxf(m_old, tile_max);
        // m_new is -inf only for a row with no visible key so far (never for a stored row).
        const float base = m_new == -INFINITY ? 0.0f : m_new;
        float sum = 0.0f;
        bf16* prow = p_w + r * L::ld_p + half * 32;
        for (int c = 0; c < 32; ++c) {
          const int64_t j = k0 + half * 32 + c;
          const bool visible = j < s.t_k && (!s.causal || j <= i + offset);
          const float p = visible ? expf(scale * srow[c] - base) : 0.0f;
          sum += p;
          prow[c] = __float2bfloat16_rn(p);
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        const float alpha = expf(m_old - base);  // 0 on the first visible tile (m_old = -inf)
        __syncwarp();                            // both lanes of the row have read m_old
        if (half == 0) {
          m_row[warp * kWarpRows + r] = m_new;
          l_row[warp * kWarpRows + r] = alpha * l_row[warp * kWarpRows + r] + sum;
          alpha_row[warp * kWarpRows + r] = alpha;
        }
      }
      __syncwarp();

      // O_w = alpha O_w + P_w V_tile: (16, 64) x (64, D).
      for (int e = lane; e < kWarpRows * D; e += 32)
        o_w[(e / D) * L::ld_o + e % D] *= alpha_row[warp * kWarpRows + e / D];
      __syncwarp();
      for (int n = 0; n < D / 16; ++n) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::load_matrix_sync(acc, o_w + n * 16, L::ld_o, wmma::mem_row_major);
        for (int kk = 0; kk < kFlashKeys / 16; ++kk) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> bv;
          wmma::load_matrix_sync(a, p_w + kk * 16, L::ld_p);
          wmma::load_matrix_sync(bv, v_tile + kk * 16 * L::ld_in + n * 16, L::ld_in);
          wmma::mma_sync(acc, a, bv, acc);
        }
        wmma::store_matrix_sync(o_w + n * 16, acc, L::ld_o, wmma::mem_row_major);
      }
      __syncwarp();
    }

    // out = O / l, lse = m + log l, for the warp's rows that exist.
    bf16* out = static_cast<bf16*>(out_op.data) + b * out_op.stride_b + h * out_op.stride_h;
    for (int e = lane; e < kWarpRows * D; e += 32) {
      const int r = e / D, c = e % D;
      const int64_t i = q0 + warp * kWarpRows + r;
      if (i < s.t_q)
        out[i * out_op.stride_t + c] =
            __float2bfloat16_rn(o_w[r * L::ld_o + c] / l_row[warp * kWarpRows + r]);
    }
    if (lane < kWarpRows) {
      const int64_t i = q0 + warp * kWarpRows + lane;
      if (i < s.t_q)
        lse[bh * s.t_q + i] = m_row[warp * kWarpRows + lane] + logf(l_row[warp * kWarpRows + lane]);
    }
  }
#endif
}

// ---- backward ----
//
// Two kernels, as the tiled family, so that every gradient element has one writer (no atomics):
//   grad_q:         a block per (b, h, 64-query tile), the key tiles it sees streamed; it also
//                   writes delta = rowsum(grad_out * out) for its rows, which the second kernel
//                   reads. Per key tile, warp w (query rows [16 w, 16 w + 16)):
//                     S = Q_w K^T, dP = dO_w V^T (wmma, f32, shared memory (16, 64) each),
//                     dS = P (dP - delta) with P = exp(scale S - lse), rounded to bf16,
//                     dQ_w += dS K (wmma, f32 accumulator fragments, in registers across tiles).
//   grad_k, grad_v: a block per (b, h, 64-key tile), the query tiles that see it streamed in
//                   ascending order; warp w owns key rows [16 w, 16 w + 16):
//                     S^T = K_w Q^T, dP^T = V_w dO^T, P^T and dS^T as above (bf16),
//                     dV_w += P^T dO, dK_w += dS^T Q (accumulator fragments).
// No rescaling happens in the backward (P comes from the saved lse), so the accumulators stay in
// wmma fragments; S and dP go through shared memory for the elementwise step, whose lanes must know
// each element's row and column. grad_q and grad_k are scaled once at the end; results round once
// to bf16. Causal: the grad_q block stops at its last row's diagonal, the grad_k / grad_v block
// starts at the first query tile that sees its first key.
//
// Shared memory (bytes): four (64, D + 8) bf16 tiles (the block's own two operands, the two it
// streams), S and dP (4, 16, 68) f32, P and dS (4, 16, 72) bf16, lse and delta (64) f32; the final
// f32 staging of the accumulators reuses the streamed tiles. 90.6 KiB at D 64, 123.6 KiB at D 128.
template <int D>
struct FlashBackwardLayout {
  static constexpr int ld_in = D + 8;
  static constexpr int ld_s = kFlashKeys + 4;
  static constexpr int ld_p = kFlashKeys + 8;
  static constexpr int ld_o = D + 4;
  static constexpr int round32(int bytes) { return (bytes + 31) / 32 * 32; }
  static constexpr int tile_bytes = round32(64 * ld_in * 2);
  static constexpr int own_a = 0, own_b = tile_bytes, streamed_a = 2 * tile_bytes,
                       streamed_b = 3 * tile_bytes;
  static constexpr int s = 4 * tile_bytes;
  static constexpr int dp = s + round32(kFlashRows * ld_s * 4);
  static constexpr int p = dp + round32(kFlashRows * ld_s * 4);
  static constexpr int ds = p + round32(kFlashRows * ld_p * 2);
  static constexpr int stats = ds + round32(kFlashRows * ld_p * 2);  // lse, delta: (2, 64) f32
  static constexpr int bytes = stats + 2 * kFlashRows * 4;
  static_assert(2 * tile_bytes >= kFlashRows * ld_o * 4, "the f32 staging fits the streamed tiles");
};

// A backward block's shared memory, as pointers: the two tiles of its own rows (grad_q: Q, dO;
// grad_k / grad_v: K, V), the two it streams, the streamed rows' (or its own) lse and delta, and
// warp `warp`'s S, dP, P, dS and f32 staging.
template <int D>
struct FlashBackwardShared {
  bf16 *own_a, *own_b, *streamed_a, *streamed_b;
  float *lse, *delta;
  float *s_w, *dp_w, *staging;
  bf16 *p_w, *ds_w;
};
template <int D>
__device__ __forceinline__ FlashBackwardShared<D> flash_backward_shared(unsigned char* smem,
                                                                        int warp) {
  using L = FlashBackwardLayout<D>;
  FlashBackwardShared<D> m;
  m.own_a = reinterpret_cast<bf16*>(smem + L::own_a);
  m.own_b = reinterpret_cast<bf16*>(smem + L::own_b);
  m.streamed_a = reinterpret_cast<bf16*>(smem + L::streamed_a);
  m.streamed_b = reinterpret_cast<bf16*>(smem + L::streamed_b);
  m.lse = reinterpret_cast<float*>(smem + L::stats);
  m.delta = m.lse + kFlashRows;
  m.s_w = reinterpret_cast<float*>(smem + L::s) + warp * kWarpRows * L::ld_s;
  m.dp_w = reinterpret_cast<float*>(smem + L::dp) + warp * kWarpRows * L::ld_s;
  m.p_w = reinterpret_cast<bf16*>(smem + L::p) + warp * kWarpRows * L::ld_p;
  m.ds_w = reinterpret_cast<bf16*>(smem + L::ds) + warp * kWarpRows * L::ld_p;
  m.staging = reinterpret_cast<float*>(smem + L::streamed_a) + warp * kWarpRows * L::ld_o;
  return m;
}

// The operand's head (b, h), typed.
template <class Op>
__device__ __forceinline__ auto flash_head(const Op& x, int64_t b, int64_t h) {
  using P = std::conditional_t<std::is_same_v<Op, kernels::AttentionOutput>, bf16*, const bf16*>;
  return static_cast<P>(x.data) + b * x.stride_b + h * x.stride_h;
}

// acc (16, 16) += a (16, 64, row-major, lda) x b, where b is (64, 16) at column n0 of a (64, D)
// row-major tile (ldb): the four k-steps of one output tile.
__device__ __forceinline__ void mma_16x64_by_64x16(
    nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>& acc, const bf16* a,
    int lda, const bf16* b, int ldb) {
  namespace wmma = nvcuda::wmma;
  for (int kk = 0; kk < kFlashKeys / 16; ++kk) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> fb;
    wmma::load_matrix_sync(fa, a + kk * 16, lda);
    wmma::load_matrix_sync(fb, b + kk * 16 * ldb, ldb);
    wmma::mma_sync(acc, fa, fb, acc);
  }
}

// out (16, 64) f32 row-major (ldo) = a (16, D) x b^T, with a and b row-major (ld) tiles whose
// rows are a's rows and b's 64 rows: the score-shaped products Q K^T, dO V^T and their transposes.
template <int D>
__device__ __forceinline__ void mma_rows_by_rows_t(const bf16* a, const bf16* b, int ld, float* out,
                                                   int ldo) {
  namespace wmma = nvcuda::wmma;
  for (int n = 0; n < kFlashKeys / 16; ++n) {
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    for (int kk = 0; kk < D / 16; ++kk) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb;
      wmma::load_matrix_sync(fa, a + kk * 16, ld);
      wmma::load_matrix_sync(fb, b + n * 16 * ld + kk * 16, ld);
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(out + n * 16, acc, ldo, wmma::mem_row_major);
  }
}

// The warp's (16, D) accumulators, times `scale`, into rows [r0, r0 + 16) of one head of `out`
// (rows at or past `rows` are not stored), through the f32 staging (16, D + 4) of this warp.
template <int D>
__device__ void store_accumulators(
    const nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> (&acc)[D / 16],
    float* staging, bf16* out, int64_t stride_t, int64_t r0, int64_t rows, float scale) {
  namespace wmma = nvcuda::wmma;
  constexpr int ld_o = D + 4;
  for (int n = 0; n < D / 16; ++n)
    wmma::store_matrix_sync(staging + n * 16, acc[n], ld_o, wmma::mem_row_major);
  __syncwarp();
  for (int e = threadIdx.x % 32; e < 16 * D; e += 32) {
    const int r = e / D, c = e % D;
    if (r0 + r < rows)
      out[(r0 + r) * stride_t + c] = __float2bfloat16_rn(scale * staging[r * ld_o + c]);
  }
  __syncwarp();
}

// q, out, grad_out: (B, H, Tq, D), k, v: (B, H, Tk, D) through their strides; lse, delta: (B, H,
// Tq) contiguous f32 (delta written here); grad_q: (B, H, Tq, D). A block per (b, h, 64-query
// tile), the tiles with the most keys first.
template <int D>
__global__ void __launch_bounds__(kFlashThreads)
    attention_grad_q_flash_kernel(kernels::AttentionShape s, kernels::AttentionOperand q_op,
                                  kernels::AttentionOperand k_op, kernels::AttentionOperand v_op,
                                  kernels::AttentionOperand out_op,
                                  kernels::AttentionOperand grad_out_op, const float* lse,
                                  float* delta, kernels::AttentionOutput grad_q_op, bool packed) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  using L = FlashBackwardLayout<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const FlashBackwardShared<D> m = flash_backward_shared<D>(smem, warp);
  bf16 *q_tile = m.own_a, *go_tile = m.own_b, *k_tile = m.streamed_a, *v_tile = m.streamed_b;
  float *lse_row = m.lse, *delta_row = m.delta, *s_w = m.s_w, *dp_w = m.dp_w;
  bf16* ds_w = m.ds_w;
  float* staging = m.staging;
  const float scale = static_cast<float>(s.scale);
  const int64_t heads = s.batch * s.heads;
  const int64_t q_tiles = (s.t_q + kFlashRows - 1) / kFlashRows;
  const int64_t offset = s.t_k - s.t_q;

  for (int64_t tile = blockIdx.x; tile < heads * q_tiles; tile += gridDim.x) {
    const int64_t bh = tile % heads, b = bh / s.heads, h = bh % s.heads;
    const int64_t q0 = (q_tiles - 1 - tile / heads) * kFlashRows;
    const int64_t last_row = (q0 + kFlashRows < s.t_q ? q0 + kFlashRows : s.t_q) - 1;
    const int64_t keys = s.causal && last_row + offset + 1 < s.t_k ? last_row + offset + 1 : s.t_k;
    const bf16* out = flash_head(out_op, b, h);
    const bf16* grad_out = flash_head(grad_out_op, b, h);

    __syncthreads();  // the previous tile's readers of the tiles and the staging are done
    load_tile<D>(flash_head(q_op, b, h), q_op.stride_t, q0, s.t_q, packed, q_tile, L::ld_in);
    load_tile<D>(grad_out, grad_out_op.stride_t, q0, s.t_q, packed, go_tile, L::ld_in);
    {  // delta and lse of the warp's rows: lanes 2r and 2r + 1 each sum half of row r's channels
      const int r = lane / 2, half = lane % 2;
      const int64_t i = q0 + warp * kWarpRows + r;
      float d = 0.0f;
      if (i < s.t_q)
        for (int c = half * (D / 2); c < (half + 1) * (D / 2); ++c)
          d += __bfloat162float(grad_out[i * grad_out_op.stride_t + c]) *
               __bfloat162float(out[i * out_op.stride_t + c]);
      d += __shfl_xor_sync(0xffffffffu, d, 1);
      if (half == 0) {
        delta_row[warp * kWarpRows + r] = d;
        lse_row[warp * kWarpRows + r] = i < s.t_q ? lse[bh * s.t_q + i] : 0.0f;
        if (i < s.t_q) delta[bh * s.t_q + i] = d;
      }
    }
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> dq[D / 16];
    for (int n = 0; n < D / 16; ++n) wmma::fill_fragment(dq[n], 0.0f);

    for (int64_t k0 = 0; k0 < keys; k0 += kFlashKeys) {
      __syncthreads();  // every warp is done with the previous K and V tiles
      load_tile<D>(flash_head(k_op, b, h), k_op.stride_t, k0, s.t_k, packed, k_tile, L::ld_in);
      load_tile<D>(flash_head(v_op, b, h), v_op.stride_t, k0, s.t_k, packed, v_tile, L::ld_in);
      __syncthreads();
      mma_rows_by_rows_t<D>(q_tile + warp * kWarpRows * L::ld_in, k_tile, L::ld_in, s_w, L::ld_s);
      mma_rows_by_rows_t<D>(go_tile + warp * kWarpRows * L::ld_in, v_tile, L::ld_in, dp_w, L::ld_s);
      __syncwarp();
      {  // dS = P (dP - delta), P = exp(scale S - lse): lanes 2r and 2r + 1 share row r
        const int r = lane / 2, half = lane % 2;
        const int64_t i = q0 + warp * kWarpRows + r;
        const float row_lse = lse_row[warp * kWarpRows + r];
        const float row_delta = delta_row[warp * kWarpRows + r];
        for (int c = half * 32; c < half * 32 + 32; ++c) {
          const int64_t j = k0 + c;
          const bool visible = i < s.t_q && j < s.t_k && (!s.causal || j <= i + offset);
          const float p = visible ? expf(scale * s_w[r * L::ld_s + c] - row_lse) : 0.0f;
          ds_w[r * L::ld_p + c] = __float2bfloat16_rn(p * (dp_w[r * L::ld_s + c] - row_delta));
        }
      }
      __syncwarp();
      for (int n = 0; n < D / 16; ++n)  // dQ_w += dS K: (16, 64) x (64, 16) per output tile
        mma_16x64_by_64x16(dq[n], ds_w, L::ld_p, k_tile + n * 16, L::ld_in);
    }
    __syncthreads();  // the staging overwrites the K and V tiles
    store_accumulators<D>(dq, staging, flash_head(grad_q_op, b, h), grad_q_op.stride_t,
                          q0 + warp * kWarpRows, s.t_q, scale);
  }
#endif
}

// As above; grad_k, grad_v: (B, H, Tk, D). A block per (b, h, 64-key tile), the first key tiles
// (seen by the most queries under a causal mask) first. delta comes from the grad_q kernel.
template <int D>
__global__ void __launch_bounds__(kFlashThreads)
    attention_grad_kv_flash_kernel(kernels::AttentionShape s, kernels::AttentionOperand q_op,
                                   kernels::AttentionOperand k_op, kernels::AttentionOperand v_op,
                                   kernels::AttentionOperand grad_out_op, const float* lse,
                                   const float* delta, kernels::AttentionOutput grad_k_op,
                                   kernels::AttentionOutput grad_v_op, bool packed) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  using L = FlashBackwardLayout<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const FlashBackwardShared<D> m = flash_backward_shared<D>(smem, warp);
  bf16 *k_tile = m.own_a, *v_tile = m.own_b, *q_tile = m.streamed_a, *go_tile = m.streamed_b;
  float *lse_col = m.lse, *delta_col = m.delta, *s_w = m.s_w, *dp_w = m.dp_w;
  bf16 *p_w = m.p_w, *ds_w = m.ds_w;
  float* staging = m.staging;
  const float scale = static_cast<float>(s.scale);
  const int64_t heads = s.batch * s.heads;
  const int64_t k_tiles = (s.t_k + kFlashKeys - 1) / kFlashKeys;
  const int64_t offset = s.t_k - s.t_q;

  for (int64_t tile = blockIdx.x; tile < heads * k_tiles; tile += gridDim.x) {
    const int64_t bh = tile % heads, b = bh / s.heads, h = bh % s.heads;
    const int64_t k0 = (tile / heads) * kFlashKeys;
    // Causal: query i sees key k0 iff i >= k0 - offset.
    const int64_t first_query = s.causal && k0 > offset ? k0 - offset : 0;
    const bf16* q = flash_head(q_op, b, h);
    const bf16* grad_out = flash_head(grad_out_op, b, h);

    __syncthreads();  // the previous tile's readers of the tiles and the staging are done
    load_tile<D>(flash_head(k_op, b, h), k_op.stride_t, k0, s.t_k, packed, k_tile, L::ld_in);
    load_tile<D>(flash_head(v_op, b, h), v_op.stride_t, k0, s.t_k, packed, v_tile, L::ld_in);
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> dk[D / 16], dv[D / 16];
    for (int n = 0; n < D / 16; ++n) {
      wmma::fill_fragment(dk[n], 0.0f);
      wmma::fill_fragment(dv[n], 0.0f);
    }

    for (int64_t q0 = first_query / kFlashRows * kFlashRows; q0 < s.t_q; q0 += kFlashRows) {
      __syncthreads();  // every warp is done with the previous Q and dO tiles and statistics
      load_tile<D>(q, q_op.stride_t, q0, s.t_q, packed, q_tile, L::ld_in);
      load_tile<D>(grad_out, grad_out_op.stride_t, q0, s.t_q, packed, go_tile, L::ld_in);
      for (int c = threadIdx.x; c < kFlashRows; c += kFlashThreads) {
        const bool exists = q0 + c < s.t_q;
        lse_col[c] = exists ? lse[bh * s.t_q + q0 + c] : 0.0f;
        delta_col[c] = exists ? delta[bh * s.t_q + q0 + c] : 0.0f;
      }
      __syncthreads();
      mma_rows_by_rows_t<D>(k_tile + warp * kWarpRows * L::ld_in, q_tile, L::ld_in, s_w, L::ld_s);
      mma_rows_by_rows_t<D>(v_tile + warp * kWarpRows * L::ld_in, go_tile, L::ld_in, dp_w, L::ld_s);
      __syncwarp();
      {  // P^T and dS^T: lanes 2r and 2r + 1 share key row r, 32 queries each
        const int r = lane / 2, half = lane % 2;
        const int64_t j = k0 + warp * kWarpRows + r;
        for (int c = half * 32; c < half * 32 + 32; ++c) {
          const int64_t i = q0 + c;
          const bool visible = i < s.t_q && j < s.t_k && (!s.causal || j <= i + offset);
          const float p = visible ? expf(scale * s_w[r * L::ld_s + c] - lse_col[c]) : 0.0f;
          p_w[r * L::ld_p + c] = __float2bfloat16_rn(p);
          ds_w[r * L::ld_p + c] = __float2bfloat16_rn(p * (dp_w[r * L::ld_s + c] - delta_col[c]));
        }
      }
      __syncwarp();
      for (int n = 0; n < D / 16; ++n) {  // dV_w += P^T dO, dK_w += dS^T Q
        mma_16x64_by_64x16(dv[n], p_w, L::ld_p, go_tile + n * 16, L::ld_in);
        mma_16x64_by_64x16(dk[n], ds_w, L::ld_p, q_tile + n * 16, L::ld_in);
      }
    }
    __syncthreads();  // the staging overwrites the Q and dO tiles
    const int64_t r0 = k0 + warp * kWarpRows;
    store_accumulators<D>(dk, staging, flash_head(grad_k_op, b, h), grad_k_op.stride_t, r0, s.t_k,
                          scale);
    store_accumulators<D>(dv, staging, flash_head(grad_v_op, b, h), grad_v_op.stride_t, r0, s.t_k,
                          1.0f);
  }
#endif
}

// Whether every row of the operand is 16-byte aligned (its base and its strides).
bool rows_aligned(const kernels::AttentionOperand& x) {
  return aligned16(x.data) && x.stride_b % 8 == 0 && x.stride_h % 8 == 0 && x.stride_t % 8 == 0;
}

template <int D>
void launch_flash(const kernels::AttentionShape& s, kernels::AttentionOperand q,
                  kernels::AttentionOperand k, kernels::AttentionOperand v,
                  kernels::AttentionOutput out, float* lse) {
  constexpr int bytes = FlashLayout<D>::bytes;
  static const bool allowed = [] {  // above 48 KiB a kernel opts in, once
    GRADUS_CUDA_CHECK(cudaFuncSetAttribute(attention_forward_flash_kernel<D>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    return true;
  }();
  (void)allowed;
  const bool packed = rows_aligned(q) && rows_aligned(k) && rows_aligned(v);
  const int64_t tiles = s.batch * s.heads * ceil_div(s.t_q, kFlashRows);
  attention_forward_flash_kernel<D>
      <<<grid_for(tiles), kFlashThreads, bytes, stream()>>>(s, q, k, v, out, lse, packed);
  GRADUS_CUDA_CHECK_LAUNCH("attention_forward_flash");
}

template <int D>
void launch_flash_backward(const kernels::AttentionShape& s, kernels::AttentionOperand q,
                           kernels::AttentionOperand k, kernels::AttentionOperand v,
                           kernels::AttentionOperand out, kernels::AttentionOperand grad_out,
                           const float* lse, float* delta, kernels::AttentionOutput grad_q,
                           kernels::AttentionOutput grad_k, kernels::AttentionOutput grad_v) {
  constexpr int bytes = FlashBackwardLayout<D>::bytes;
  static const bool allowed = [] {
    GRADUS_CUDA_CHECK(cudaFuncSetAttribute(attention_grad_q_flash_kernel<D>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    GRADUS_CUDA_CHECK(cudaFuncSetAttribute(attention_grad_kv_flash_kernel<D>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    return true;
  }();
  (void)allowed;
  const bool packed =
      rows_aligned(q) && rows_aligned(k) && rows_aligned(v) && rows_aligned(grad_out);
  const int64_t heads = s.batch * s.heads;
  if (s.t_q > 0) {  // grad_q, and delta for the second kernel
    attention_grad_q_flash_kernel<D>
        <<<grid_for(heads * ceil_div(s.t_q, kFlashRows)), kFlashThreads, bytes, stream()>>>(
            s, q, k, v, out, grad_out, lse, delta, grad_q, packed);
    GRADUS_CUDA_CHECK_LAUNCH("attention_grad_q_flash");
  }
  // grad_k and grad_v are written whole, zeros where no query sees a key (Tq = 0 included).
  attention_grad_kv_flash_kernel<D>
      <<<grid_for(heads * ceil_div(s.t_k, kFlashKeys)), kFlashThreads, bytes, stream()>>>(
          s, q, k, v, grad_out, lse, delta, grad_k, grad_v, packed);
  GRADUS_CUDA_CHECK_LAUNCH("attention_grad_kv_flash");
}

}  // namespace

bool flash_attention_applies(int64_t head_dim) {
  return (head_dim == 64 || head_dim == 128) && properties().major >= 8;
}

void attention_forward_flash(const kernels::AttentionShape& s, kernels::AttentionOperand q,
                             kernels::AttentionOperand k, kernels::AttentionOperand v,
                             kernels::AttentionOutput out, void* lse) {
  GRADUS_CHECK(
      flash_attention_applies(s.head_dim), "attention_forward_flash",
      "needs D 64 or 128 on a GPU of compute capability 8.0 or later, found D {} on sm_{}{}",
      s.head_dim, properties().major, properties().minor);
  if (s.batch * s.heads * s.t_q == 0) return;
  if (s.head_dim == 64)
    launch_flash<64>(s, q, k, v, out, static_cast<float*>(lse));
  else
    launch_flash<128>(s, q, k, v, out, static_cast<float*>(lse));
}

}  // namespace gradus::cuda

namespace gradus::cuda {

void attention_backward_flash(const kernels::AttentionShape& s, kernels::AttentionOperand q,
                              kernels::AttentionOperand k, kernels::AttentionOperand v,
                              kernels::AttentionOperand out, kernels::AttentionOperand grad_out,
                              const void* lse, void* delta, kernels::AttentionOutput grad_q,
                              kernels::AttentionOutput grad_k, kernels::AttentionOutput grad_v) {
  GRADUS_CHECK(flash_attention_applies(s.head_dim), "attention_backward_flash",
               "needs D 64 or 128 on a GPU of compute capability 8.0 or later, found D {} on "
               "sm_{}{}",
               s.head_dim, properties().major, properties().minor);
  if (s.batch * s.heads == 0) return;
  const auto* l = static_cast<const float*>(lse);
  auto* d = static_cast<float*>(delta);
  if (s.head_dim == 64)
    launch_flash_backward<64>(s, q, k, v, out, grad_out, l, d, grad_q, grad_k, grad_v);
  else
    launch_flash_backward<128>(s, q, k, v, out, grad_out, l, d, grad_q, grad_k, grad_v);
}

}  // namespace gradus::cuda
