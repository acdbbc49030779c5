// CPU fused attention (see kernels/attention.h for the contract).
//
// Per (b, h), the queries go in blocks of kBlockRows rows: the block's scores against the keys it
// can see (causal: only up to its last row's diagonal, which skips the upper triangle's products)
// are one gemm into a per-thread (kBlockRows, Tk) scratch, softmaxed in place, and multiplied by V
// with a second gemm; only the per-row log-sum-exp is kept. The backward rebuilds each block's P
// from it and runs the four products of the flash-attention backward as gemms.
//
// Threads: the forward splits (b, h, block) triples across the OpenMP threads, the backward (b, h)
// pairs (a head's grad_k and grad_v sum over its query blocks in block order, on one thread). BLAS
// runs inside the parallel region, where it sees omp_in_parallel() and stays single-threaded (as in
// kernels/cpu/gemm.cpp). Each output element is computed by one thread in an order fixed by the
// shapes, so the results do not depend on the thread count.
#include "kernels/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/blas.h"
#include "kernels/cpu/softmax_row.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/registry.h"

namespace gradus::kernels::cpu {
namespace {

// Rows of queries per block: the (kBlockRows, Tk) scores of a block stay in L2 for Tk up to a few
// thousand, and a 64-row gemm is large enough for BLAS to run near its peak.
constexpr int64_t kBlockRows = 64;

// The keys query row i (0-based within the head) may see: [0, visible_keys(i)).
int64_t visible_keys(const AttentionShape& s, int64_t i) {
  return s.causal ? std::min(s.t_k, i + (s.t_k - s.t_q) + 1) : s.t_k;
}

// Sizes as kernels::check_attention_shape, and Tk and D within BLAS's int.
void check_shape(const AttentionShape& s, const char* name) {
  check_attention_shape(s, name);
  const int64_t limit = std::numeric_limits<int>::max();
  GRADUS_CHECK(s.t_k <= limit && s.head_dim <= limit, name, "Tk {} or D {} exceeds BLAS's int",
               s.t_k, s.head_dim);
}

// ---- forward ----

// Rows [r0, r1) of one head: scores (rows, nk) in `p`, turned into probabilities in place; lse
// gets the rows' log-sum-exp.
template <class T>
void softmax_block(const AttentionShape& s, int64_t r0, int64_t r1, int64_t nk, T* p, T* lse) {
  for (int64_t i = r0; i < r1; ++i) {
    T* row = p + (i - r0) * nk;
    const int64_t n = visible_keys(s, i);  // <= nk; the rest of the row is masked
    lse[i] = softmax_row_in_place(row, n);
    std::fill(row + n, row + nk, T(0));
  }
}

template <class T>
void attention_forward(const AttentionShape& s, AttentionOperand q, AttentionOperand k,
                       AttentionOperand v, AttentionOutput out, void* lse_) {
  check_shape(s, kAttentionForward);
  const int64_t blocks = (s.t_q + kBlockRows - 1) / kBlockRows;
  const int64_t tasks = s.batch * s.heads * blocks;
  if (tasks == 0) return;
  const int64_t D = s.head_dim;
  T* lse_all = static_cast<T*>(lse_);
  const bool parallel = tasks > 1 && s.t_q * s.t_k * D * s.batch * s.heads > (1 << 16);
#pragma omp parallel if (parallel)
  {
    std::vector<T> p(static_cast<size_t>(std::min(kBlockRows, s.t_q) * s.t_k));
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t bh = task / blocks, blk = task % blocks;
      const int64_t b = bh / s.heads, h = bh % s.heads;
      const int64_t r0 = blk * kBlockRows, r1 = std::min(s.t_q, r0 + kBlockRows);
      const int64_t rows = r1 - r0, nk = visible_keys(s, r1 - 1);
      const T* qh = head_data<T>(q, b, h) + r0 * q.stride_t;
      // p = scale * q_block k^T: (rows, nk)
      blas_gemm(false, true, rows, nk, D, static_cast<T>(s.scale), qh, q.stride_t,
                head_data<T>(k, b, h), k.stride_t, T(0), p.data(), nk);
      softmax_block(s, r0, r1, nk, p.data(), lse_all + bh * s.t_q);
      // out_block = p v: (rows, D)
      blas_gemm(false, false, rows, D, nk, T(1), p.data(), nk, head_data<T>(v, b, h), v.stride_t,
                T(0), head_data<T>(out, b, h) + r0 * out.stride_t, out.stride_t);
    }
  }
}

// ---- backward ----

template <class T>
void attention_backward(const AttentionShape& s, AttentionOperand q, AttentionOperand k,
                        AttentionOperand v, AttentionOperand out, AttentionOperand grad_out,
                        const void* lse_, void* delta_, AttentionOutput grad_q,
                        AttentionOutput grad_k, AttentionOutput grad_v) {
  check_shape(s, kAttentionBackward);
  const int64_t heads = s.batch * s.heads;
  if (heads == 0) return;
  const int64_t D = s.head_dim;
  const T* lse_all = static_cast<const T*>(lse_);
  T* delta_all = static_cast<T*>(delta_);
  const bool parallel = heads > 1 && s.t_q * s.t_k * D > (1 << 14);
#pragma omp parallel if (parallel)
  {
    const size_t scratch =
        static_cast<size_t>(std::min(kBlockRows, std::max<int64_t>(s.t_q, 1)) * s.t_k);
    std::vector<T> p(scratch), dp(scratch);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < heads; ++bh) {
      const int64_t b = bh / s.heads, h = bh % s.heads;
      const T* lse = lse_all + bh * s.t_q;
      T* delta = delta_all + bh * s.t_q;
      const T *qh = head_data<T>(q, b, h), *kh = head_data<T>(k, b, h), *vh = head_data<T>(v, b, h);
      const T *oh = head_data<T>(out, b, h), *goh = head_data<T>(grad_out, b, h);
      T *gq = head_data<T>(grad_q, b, h), *gk = head_data<T>(grad_k, b, h),
        *gv = head_data<T>(grad_v, b, h);
      // Keys no query sees (none with Tk >= Tq causal, but a zero-row head) keep zero gradients.
      for (int64_t j = 0; j < s.t_k; ++j) {
        std::fill(gk + j * grad_k.stride_t, gk + j * grad_k.stride_t + D, T(0));
        std::fill(gv + j * grad_v.stride_t, gv + j * grad_v.stride_t + D, T(0));
      }
      for (int64_t i = 0; i < s.t_q; ++i) {  // delta_i = <grad_out_i, out_i>
        T acc = 0;
        for (int64_t d = 0; d < D; ++d)
          acc += goh[i * grad_out.stride_t + d] * oh[i * out.stride_t + d];
        delta[i] = acc;
      }
      for (int64_t r0 = 0; r0 < s.t_q; r0 += kBlockRows) {
        const int64_t r1 = std::min(s.t_q, r0 + kBlockRows), rows = r1 - r0;
        const int64_t nk = visible_keys(s, r1 - 1);
        const T* qb = qh + r0 * q.stride_t;
        const T* gob = goh + r0 * grad_out.stride_t;
        // p = exp(scale * q_block k^T - lse), zero beyond each row's visible keys: (rows, nk)
        blas_gemm(false, true, rows, nk, D, static_cast<T>(s.scale), qb, q.stride_t, kh, k.stride_t,
                  T(0), p.data(), nk);
        for (int64_t i = r0; i < r1; ++i) {
          T* row = p.data() + (i - r0) * nk;
          const int64_t n = visible_keys(s, i);
          for (int64_t j = 0; j < n; ++j) row[j] = vexp(row[j] - lse[i]);
          std::fill(row + n, row + nk, T(0));
        }
        // grad_v[0:nk] += p^T grad_out_block: (nk, D)
        blas_gemm(true, false, nk, D, rows, T(1), p.data(), nk, gob, grad_out.stride_t, T(1), gv,
                  grad_v.stride_t);
        // dp = grad_out_block v^T: (rows, nk); then ds = scale * p * (dp - delta), in dp
        blas_gemm(false, true, rows, nk, D, T(1), gob, grad_out.stride_t, vh, v.stride_t, T(0),
                  dp.data(), nk);
        for (int64_t i = r0; i < r1; ++i) {
          const T* prow = p.data() + (i - r0) * nk;
          T* row = dp.data() + (i - r0) * nk;
          const T di = delta[i], scale = static_cast<T>(s.scale);
          for (int64_t j = 0; j < nk; ++j) row[j] = scale * prow[j] * (row[j] - di);
        }
        // grad_q_block = ds k: (rows, D); grad_k[0:nk] += ds^T q_block: (nk, D)
        blas_gemm(false, false, rows, D, nk, T(1), dp.data(), nk, kh, k.stride_t, T(0),
                  gq + r0 * grad_q.stride_t, grad_q.stride_t);
        blas_gemm(true, false, nk, D, rows, T(1), dp.data(), nk, qb, q.stride_t, T(1), gk,
                  grad_k.stride_t);
      }
    }
  }
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kAttentionForward, attention_forward);
GRADUS_REGISTER_CPU_KERNEL(kAttentionBackward, attention_backward);

}  // namespace gradus::kernels::cpu
