// Flash attention forward on the tensor cores (see kernels/cuda/attention_flash.h), bf16 operands
// with f32 accumulation, head size D of 64 or 128.
//
// A block of 4 warps owns 64 query rows of one (b, h); warp w owns rows [16 w, 16 w + 16). For each
// tile of 64 keys the block can see (causal: up to its last row's diagonal):
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

}  // namespace

bool flash_forward_applies(int64_t head_dim) {
  return (head_dim == 64 || head_dim == 128) && properties().major >= 8;
}

void attention_forward_flash(const kernels::AttentionShape& s, kernels::AttentionOperand q,
                             kernels::AttentionOperand k, kernels::AttentionOperand v,
                             kernels::AttentionOutput out, void* lse) {
  GRADUS_CHECK(
      flash_forward_applies(s.head_dim), "attention_forward_flash",
      "needs D 64 or 128 on a GPU of compute capability 8.0 or later, found D {} on sm_{}{}",
      s.head_dim, properties().major, properties().minor);
  if (s.batch * s.heads * s.t_q == 0) return;
  if (s.head_dim == 64)
    launch_flash<64>(s, q, k, v, out, static_cast<float*>(lse));
  else
    launch_flash<128>(s, q, k, v, out, static_cast<float*>(lse));
}

}  // namespace gradus::cuda
