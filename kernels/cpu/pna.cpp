// CPU streaming PNA aggregation (see kernels/pna.h for the contract).
//
// Per (b, h), the queries go in blocks of kBlockRows rows, as in kernels/cpu/attention.cpp: the
// block's scores against the keys it can see (causal: up to its last row, so the upper triangle's
// products are skipped) are one gemm into a per-thread (rows, nk) scratch, which the adjacency
// (relu or softmax) and the threshold turn into a' in place. The sum and the square moments are
// then gemms against V and V^2 written straight into the moments' rows, the degree a row sum, and
// the extrema a per-row scan over the neighbours (compare + select over the D channels, which
// vectorises), or, for a row whose neighbourhood is all its visible keys (every row under
// sharp_softplus and sigmoid), the head's prefix extrema: O(T D) instead of O(T^2 D). The f32 maps
// use vexp / vlog1p so that they vectorise too (with std::log1p, sharp_softplus cost several times
// the gemms). Only the moments, the arg indices and the softmax's per-row log-sum-exp are kept.
// The backward rebuilds each block's a and a' from q, k (and lse), forms dA' with two gemms and
// maps it back to dS in place, and runs the products for grad_q, grad_k and grad_v as gemms; the
// extrema's gradients scatter through the saved arg indices at the end.
//
// Threads: the forward splits (b, h, block) triples across the OpenMP threads, the backward (b, h)
// pairs (a head's grad_k and grad_v sum over its query blocks in block order, on one thread). BLAS
// runs inside the parallel region, where it sees omp_in_parallel() and stays single-threaded. Each
// output element is computed by one thread in an order fixed by the shapes, so the results do not
// depend on the thread count.
#include "kernels/pna.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/blas.h"
#include "kernels/cpu/softmax_row.h"
#include "kernels/cpu/vec_log1p.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/registry.h"

namespace gradus::kernels::cpu {
namespace {

// Rows of queries per block: the (kBlockRows, T) scratch of a block stays in L2 for T up to a few
// thousand, and a 64-row gemm is large enough for BLAS to run near its peak.
constexpr int64_t kBlockRows = 64;
// beta (a - tau) above which sharp_softplus is linear (torch.nn.functional.softplus's threshold).
constexpr double kSoftplusLinear = 20.0;

template <class T>
T sigmoid_of(T x) {
  return T(1) / (T(1) + vexp(-x));
}

// Sizes and options as kernels::check_pna_shape, every size and row stride that reaches BLAS
// within its int, and the optional outputs present where the options ask for them. The pointers
// are only checked when there is work (empty tensors may have no storage).
void check_call(const PnaShape& s, const char* name, const AttentionOperand& q,
                const AttentionOperand& k, const AttentionOperand& v, const void* arg_max,
                const void* arg_min, const void* lse) {
  check_pna_shape(s, name);
  const int64_t limit = std::numeric_limits<int>::max();
  GRADUS_CHECK(s.t <= limit && s.width() <= limit, name, "T {} or width {} exceeds BLAS's int", s.t,
               s.width());
  GRADUS_CHECK(q.stride_t <= limit && k.stride_t <= limit && v.stride_t <= limit, name,
               "row strides (q {}, k {}, v {}) exceed BLAS's int", q.stride_t, k.stride_t,
               v.stride_t);
  if (s.batch * s.heads * s.t == 0) return;
  GRADUS_CHECK(q.data != nullptr && k.data != nullptr && v.data != nullptr, name,
               "q, k and v must have data for {} rows, found null", s.batch * s.heads * s.t);
  GRADUS_CHECK(!s.with_max || arg_max != nullptr, name, "with_max needs arg_max, found null");
  GRADUS_CHECK(!s.with_min || arg_min != nullptr, name, "with_min needs arg_min, found null");
  GRADUS_CHECK(s.adjacency != PnaAdjacency::softmax || lse != nullptr, name,
               "the softmax adjacency needs lse, found null");
}

// a'[0:n] = threshold(a[0:n]) (may alias). The mode is switched once per row so that each loop
// is a plain elementwise map.
template <class T>
void threshold_row(const PnaShape& s, const T* a, T* out, int64_t n) {
  const T tau = static_cast<T>(s.tau), beta = static_cast<T>(s.beta);
  const T linear = static_cast<T>(kSoftplusLinear);
  switch (s.threshold) {
    case PnaThreshold::none:
      if (out != a) std::copy(a, a + n, out);
      return;
    case PnaThreshold::relu:
      for (int64_t j = 0; j < n; ++j) out[j] = a[j] > tau ? a[j] - tau : T(0);
      return;
    case PnaThreshold::sharp_softplus:
      for (int64_t j = 0; j < n; ++j) {
        // Both sides computed, then a select: a branch around the call stops the vectoriser.
        const T x = a[j] - tau, bx = beta * x;
        const T soft = vlog1p(vexp(bx)) / beta;
        out[j] = bx > linear ? x : soft;
      }
      return;
    case PnaThreshold::sigmoid:
      for (int64_t j = 0; j < n; ++j) out[j] = sigmoid_of(beta * (a[j] - tau));
      return;
    case PnaThreshold::binary:
      for (int64_t j = 0; j < n; ++j) out[j] = a[j] > tau ? T(1) : T(0);
      return;
  }
}

// g[0:n] *= threshold'(a[0:n]), with ap = threshold(a).
template <class T>
void threshold_grad_row(const PnaShape& s, const T* a, const T* ap, T* g, int64_t n) {
  const T tau = static_cast<T>(s.tau), beta = static_cast<T>(s.beta);
  const T linear = static_cast<T>(kSoftplusLinear);
  switch (s.threshold) {
    case PnaThreshold::none: return;
    case PnaThreshold::relu:
      for (int64_t j = 0; j < n; ++j) g[j] = a[j] > tau ? g[j] : T(0);
      return;
    case PnaThreshold::sharp_softplus:
      for (int64_t j = 0; j < n; ++j) {
        const T bx = beta * (a[j] - tau);
        const T soft = g[j] * sigmoid_of(bx);
        g[j] = bx > linear ? g[j] : soft;
      }
      return;
    case PnaThreshold::sigmoid:
      for (int64_t j = 0; j < n; ++j) g[j] *= beta * ap[j] * (T(1) - ap[j]);
      return;
    case PnaThreshold::binary: std::fill(g, g + n, T(0)); return;
  }
}

// Rows [r0, r1) of one head, scores s (rows, nk) in p on entry: a' on exit (zero for j > i).
// lse (the head's, (T)) gets the rows' log-sum-exp for the softmax adjacency.
template <class T>
void adjacency_block(const PnaShape& s, int64_t r0, int64_t r1, int64_t nk, T* p, T* lse) {
  for (int64_t i = r0; i < r1; ++i) {
    T* row = p + (i - r0) * nk;
    const int64_t n = i + 1;  // visible keys
    if (s.adjacency == PnaAdjacency::softmax) {
      lse[i] = softmax_row_in_place(row, n);
    } else {
      for (int64_t j = 0; j < n; ++j) row[j] = row[j] > T(0) ? row[j] : T(0);
    }
    threshold_row(s, row, row, n);
    std::fill(row + n, row + nk, T(0));
  }
}

// The extrema of v_j over {j < n : a'_j > 0} (at least one) and their first indices, into
// best_max / idx_max and best_min / idx_min: (D) each. ap: (n), vh: (n, D) with row stride ld.
template <class T>
void scan_neighbours(const PnaShape& s, const T* ap, const T* vh, int64_t ld, int64_t n,
                     T* best_max, int32_t* idx_max, T* best_min, int32_t* idx_min) {
  const int64_t D = s.head_dim;
  int64_t j = 0;
  while (j < n && !(ap[j] > T(0))) ++j;
  // The first neighbour initialises, so that infinite values compare like any other.
  const T* v0 = vh + j * ld;
  for (int64_t c = 0; c < D; ++c) {
    best_max[c] = best_min[c] = v0[c];
    idx_max[c] = idx_min[c] = static_cast<int32_t>(j);
  }
  for (++j; j < n; ++j) {
    if (!(ap[j] > T(0))) continue;
    const T* vj = vh + j * ld;
    const int32_t jj = static_cast<int32_t>(j);
    if (s.with_max && s.with_min) {  // one pass over v_j for both
      for (int64_t c = 0; c < D; ++c) {
        const bool more = vj[c] > best_max[c], less = vj[c] < best_min[c];
        best_max[c] = more ? vj[c] : best_max[c];
        idx_max[c] = more ? jj : idx_max[c];
        best_min[c] = less ? vj[c] : best_min[c];
        idx_min[c] = less ? jj : idx_min[c];
      }
    } else if (s.with_max) {
      for (int64_t c = 0; c < D; ++c) {
        const bool more = vj[c] > best_max[c];
        best_max[c] = more ? vj[c] : best_max[c];
        idx_max[c] = more ? jj : idx_max[c];
      }
    } else {
      for (int64_t c = 0; c < D; ++c) {
        const bool less = vj[c] < best_min[c];
        best_min[c] = less ? vj[c] : best_min[c];
        idx_min[c] = less ? jj : idx_min[c];
      }
    }
  }
}

// Per-thread scratch of the extrema: the running best and index of one row's scan, (D) each, and
// the prefix extrema of the head last worked on (row j: the extrema of v over rows [0, j] and their
// first index), rows [0, prefix_rows). The prefix row i is the answer for every row i whose
// neighbourhood is all its visible keys, which sharp_softplus and sigmoid make the common case:
// the O(T D) prefix replaces the O(T^2 D) scan there.
template <class T>
struct ExtremaScratch {
  std::vector<T> best_max, best_min, prefix_max, prefix_min;
  std::vector<int32_t> idx_max, idx_min, prefix_max_idx, prefix_min_idx;
  int64_t prefix_head = -1, prefix_rows = 0;

  ExtremaScratch(int64_t len, int64_t D)
      : best_max(D),
        best_min(D),
        prefix_max(len * D),
        prefix_min(len * D),
        idx_max(D),
        idx_min(D),
        prefix_max_idx(len * D),
        prefix_min_idx(len * D) {}

  // Extends the prefix of head bh (values vh: (T, D), row stride ld) to rows [0, rows).
  void extend_prefix(int64_t bh, const T* vh, int64_t ld, int64_t D, int64_t rows) {
    if (prefix_head != bh) prefix_head = bh, prefix_rows = 0;
    for (int64_t j = prefix_rows; j < rows; ++j) {
      const T* vj = vh + j * ld;
      T *pmax = prefix_max.data() + j * D, *pmin = prefix_min.data() + j * D;
      int32_t *imax = prefix_max_idx.data() + j * D, *imin = prefix_min_idx.data() + j * D;
      if (j == 0) {
        std::copy(vj, vj + D, pmax), std::copy(vj, vj + D, pmin);
        std::fill(imax, imax + D, 0), std::fill(imin, imin + D, 0);
        continue;
      }
      const int32_t jj = static_cast<int32_t>(j);
      for (int64_t c = 0; c < D; ++c) {  // as scan_neighbours: strict compares keep the first
        const bool more = vj[c] > pmax[c - D], less = vj[c] < pmin[c - D];
        pmax[c] = more ? vj[c] : pmax[c - D];
        imax[c] = more ? jj : imax[c - D];
        pmin[c] = less ? vj[c] : pmin[c - D];
        imin[c] = less ? jj : imin[c - D];
      }
    }
    prefix_rows = std::max(prefix_rows, rows);
  }
};

// Row i of one head: per channel, the max (and / or min) of v_j over {j <= i : a'_ij > 0} and the
// first j attaining it; 0 and -1 without neighbours. ap: (i + 1), vh: (T, D) with row stride ld;
// the scratch's prefix covers row i. The outputs of an extremum not asked for are not touched.
template <class T>
void extrema_row(const PnaShape& s, const T* ap, const T* vh, int64_t ld, int64_t i, T* max_out,
                 int32_t* max_arg, T* min_out, int32_t* min_arg, ExtremaScratch<T>& x) {
  const int64_t D = s.head_dim, n = i + 1;
  int64_t outside = 0;  // visible keys that are not neighbours
  for (int64_t j = 0; j < n; ++j) outside += ap[j] > T(0) ? 0 : 1;
  const T *best_max = x.best_max.data(), *best_min = x.best_min.data();
  const int32_t *idx_max = x.idx_max.data(), *idx_min = x.idx_min.data();
  if (outside == 0) {
    best_max = x.prefix_max.data() + i * D, best_min = x.prefix_min.data() + i * D;
    idx_max = x.prefix_max_idx.data() + i * D, idx_min = x.prefix_min_idx.data() + i * D;
  } else if (outside == n) {
    for (int64_t c = 0; c < D; ++c) {
      if (s.with_max) max_out[c] = T(0), max_arg[c] = -1;
      if (s.with_min) min_out[c] = T(0), min_arg[c] = -1;
    }
    return;
  } else {
    scan_neighbours(s, ap, vh, ld, n, x.best_max.data(), x.idx_max.data(), x.best_min.data(),
                    x.idx_min.data());
  }
  if (s.with_max)
    std::copy(best_max, best_max + D, max_out), std::copy(idx_max, idx_max + D, max_arg);
  if (s.with_min)
    std::copy(best_min, best_min + D, min_out), std::copy(idx_min, idx_min + D, min_arg);
}

// v2 rows [from, to) = v^2 rows: (to - from, D) contiguous in v2 (row j at v2 + j * D).
template <class T>
void square_rows(const T* vh, int64_t ld, int64_t D, int64_t from, int64_t to, T* v2) {
  for (int64_t j = from; j < to; ++j)
    for (int64_t c = 0; c < D; ++c) v2[j * D + c] = vh[j * ld + c] * vh[j * ld + c];
}

// ---- forward ----

// q, k, v: (B, H, T, D) -> moments: (B, H, T, W); arg_max, arg_min: (B, H, T, D) or null;
// lse: (B, H, T) for the softmax adjacency.
template <class T>
void pna_forward(const PnaShape& s, AttentionOperand q, AttentionOperand k, AttentionOperand v,
                 void* moments_, int32_t* arg_max, int32_t* arg_min, void* lse_) {
  check_call(s, kPnaForward, q, k, v, arg_max, arg_min, lse_);
  GRADUS_CHECK(s.batch * s.heads * s.t == 0 || moments_ != nullptr, kPnaForward,
               "moments must not be null");
  const int64_t len = s.t, D = s.head_dim, W = s.width();
  const int64_t blocks = (len + kBlockRows - 1) / kBlockRows;
  const int64_t tasks = s.batch * s.heads * blocks;
  if (tasks == 0) return;
  T* moments = static_cast<T*>(moments_);
  T* lse_all = static_cast<T*>(lse_);
  const bool parallel = tasks > 1 && len * len * D * s.batch * s.heads > (1 << 16);
#pragma omp parallel if (parallel)
  {
    std::vector<T> p(static_cast<size_t>(std::min(kBlockRows, len) * len));
    // v^2 of the head this thread last worked on, rows [0, v2_rows): a static schedule hands a
    // thread consecutive blocks of a head, so each row is squared about once per thread.
    std::vector<T> v2(s.with_square ? static_cast<size_t>(len * D) : 0);
    int64_t v2_head = -1, v2_rows = 0;
    ExtremaScratch<T> extrema(s.with_max || s.with_min ? len : 0, D);
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t bh = task / blocks, blk = task % blocks;
      const int64_t b = bh / s.heads, h = bh % s.heads;
      const int64_t r0 = blk * kBlockRows, r1 = std::min(len, r0 + kBlockRows);
      const int64_t rows = r1 - r0, nk = r1;  // the last row sees keys [0, r1)
      const T* kh = head_data<T>(k, b, h);
      const T* vh = head_data<T>(v, b, h);
      T* out = moments + (bh * len + r0) * W;  // (rows, W)
      // p = scale * q_block k^T: (rows, nk), then a' in place
      blas_gemm(false, true, rows, nk, D, static_cast<T>(s.scale),
                head_data<T>(q, b, h) + r0 * q.stride_t, q.stride_t, kh, k.stride_t, T(0), p.data(),
                nk);
      adjacency_block(s, r0, r1, nk, p.data(), lse_all == nullptr ? nullptr : lse_all + bh * len);
      // sum = a' v: (rows, D)
      blas_gemm(false, false, rows, D, nk, T(1), p.data(), nk, vh, v.stride_t, T(0), out, W);
      if (s.with_square) {  // sq = a' v^2: (rows, D)
        if (v2_head != bh) v2_head = bh, v2_rows = 0;
        if (v2_rows < nk) square_rows(vh, v.stride_t, D, v2_rows, nk, v2.data()), v2_rows = nk;
        blas_gemm(false, false, rows, D, nk, T(1), p.data(), nk, v2.data(), D, T(0),
                  out + s.square_offset(), W);
      }
      if (s.with_max || s.with_min) extrema.extend_prefix(bh, vh, v.stride_t, D, r1);
      for (int64_t i = r0; i < r1; ++i) {
        const T* ap = p.data() + (i - r0) * nk;
        T* row = out + (i - r0) * W;
        T deg = 0;
        for (int64_t j = 0; j <= i; ++j) deg += ap[j];
        row[s.degree_offset()] = deg;
        if (s.with_max || s.with_min) {
          const int64_t arg_row = (bh * len + i) * D;
          extrema_row(s, ap, vh, v.stride_t, i, row + s.max_offset(),
                      s.with_max ? arg_max + arg_row : nullptr, row + s.min_offset(),
                      s.with_min ? arg_min + arg_row : nullptr, extrema);
        }
      }
    }
  }
}

// ---- backward ----

// The saved q, k, v: (B, H, T, D), lse: (B, H, T) (softmax), arg_max, arg_min: (B, H, T, D) (when
// asked for) and grad: (B, H, T, W) -> grad_q, grad_k, grad_v: (B, H, T, D), each written whole.
template <class T>
void pna_backward(const PnaShape& s, AttentionOperand q, AttentionOperand k, AttentionOperand v,
                  const void* lse_, const int32_t* arg_max, const int32_t* arg_min,
                  const void* grad_, AttentionOutput grad_q, AttentionOutput grad_k,
                  AttentionOutput grad_v) {
  check_call(s, kPnaBackward, q, k, v, arg_max, arg_min, lse_);
  const int64_t limit = std::numeric_limits<int>::max();
  GRADUS_CHECK(grad_q.stride_t <= limit && grad_k.stride_t <= limit && grad_v.stride_t <= limit,
               kPnaBackward, "gradient row strides ({}, {}, {}) exceed BLAS's int", grad_q.stride_t,
               grad_k.stride_t, grad_v.stride_t);
  const int64_t heads = s.batch * s.heads, len = s.t, D = s.head_dim, W = s.width();
  if (heads == 0 || len == 0) return;
  GRADUS_CHECK(grad_ != nullptr && grad_q.data != nullptr && grad_k.data != nullptr &&
                   grad_v.data != nullptr,
               kPnaBackward, "grad, grad_q, grad_k and grad_v must not be null");
  const T* lse_all = static_cast<const T*>(lse_);
  const T* grad_all = static_cast<const T*>(grad_);
  const T scale = static_cast<T>(s.scale);
  const bool parallel = heads > 1 && len * len * D > (1 << 14);
#pragma omp parallel if (parallel)
  {
    const size_t block = static_cast<size_t>(std::min(kBlockRows, len) * len);
    std::vector<T> a(block), ap(block), da(block);
    std::vector<T> v2(s.with_square ? static_cast<size_t>(len * D) : 0);
    std::vector<T> v_sq_grad(s.with_square ? static_cast<size_t>(len * D) : 0);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < heads; ++bh) {
      const int64_t b = bh / s.heads, h = bh % s.heads;
      const T *qh = head_data<T>(q, b, h), *kh = head_data<T>(k, b, h), *vh = head_data<T>(v, b, h);
      T *gq = head_data<T>(grad_q, b, h), *gk = head_data<T>(grad_k, b, h),
        *gv = head_data<T>(grad_v, b, h);
      const T* lse = lse_all == nullptr ? nullptr : lse_all + bh * len;
      const T* gh = grad_all + bh * len * W;  // (T, W)
      for (int64_t j = 0; j < len; ++j) {
        std::fill(gk + j * grad_k.stride_t, gk + j * grad_k.stride_t + D, T(0));
        std::fill(gv + j * grad_v.stride_t, gv + j * grad_v.stride_t + D, T(0));
      }
      if (s.with_square) square_rows(vh, v.stride_t, D, 0, len, v2.data());
      for (int64_t r0 = 0; r0 < len; r0 += kBlockRows) {
        const int64_t r1 = std::min(len, r0 + kBlockRows), rows = r1 - r0, nk = r1;
        const T* qb = qh + r0 * q.stride_t;
        const T* gb = gh + r0 * W;  // (rows, W)
        // a = adjacency(scale * q_block k^T), a' = threshold(a): (rows, nk), zero for j > i
        blas_gemm(false, true, rows, nk, D, scale, qb, q.stride_t, kh, k.stride_t, T(0), a.data(),
                  nk);
        for (int64_t i = r0; i < r1; ++i) {
          T* row = a.data() + (i - r0) * nk;
          const int64_t n = i + 1;
          if (s.adjacency == PnaAdjacency::softmax)
            for (int64_t j = 0; j < n; ++j) row[j] = vexp(row[j] - lse[i]);
          else
            for (int64_t j = 0; j < n; ++j) row[j] = row[j] > T(0) ? row[j] : T(0);
          std::fill(row + n, row + nk, T(0));
          T* aprow = ap.data() + (i - r0) * nk;
          threshold_row(s, row, aprow, n);
          std::fill(aprow + n, aprow + nk, T(0));
        }
        // dA' = g_sum v^T + g_sq (v^2)^T + g_deg: (rows, nk)
        blas_gemm(false, true, rows, nk, D, T(1), gb, W, vh, v.stride_t, T(0), da.data(), nk);
        if (s.with_square)
          blas_gemm(false, true, rows, nk, D, T(1), gb + s.square_offset(), W, v2.data(), D, T(1),
                    da.data(), nk);
        // dS in place: dA = dA' threshold'(a), then through the adjacency; zero for j > i
        for (int64_t i = r0; i < r1; ++i) {
          const T* arow = a.data() + (i - r0) * nk;
          T* row = da.data() + (i - r0) * nk;
          const int64_t n = i + 1;
          const T g_deg = gb[(i - r0) * W + s.degree_offset()];
          for (int64_t j = 0; j < n; ++j) row[j] += g_deg;
          threshold_grad_row(s, arow, ap.data() + (i - r0) * nk, row, n);
          if (s.adjacency == PnaAdjacency::softmax) {
            T dot = 0;
            for (int64_t j = 0; j < n; ++j) dot += arow[j] * row[j];
            for (int64_t j = 0; j < n; ++j) row[j] = arow[j] * (row[j] - dot);
          } else {
            for (int64_t j = 0; j < n; ++j) row[j] = arow[j] > T(0) ? row[j] : T(0);
          }
          std::fill(row + n, row + nk, T(0));
        }
        // grad_q_block = scale dS k: (rows, D); grad_k[0:nk] += scale dS^T q_block: (nk, D)
        blas_gemm(false, false, rows, D, nk, scale, da.data(), nk, kh, k.stride_t, T(0),
                  gq + r0 * grad_q.stride_t, grad_q.stride_t);
        blas_gemm(true, false, nk, D, rows, scale, da.data(), nk, qb, q.stride_t, T(1), gk,
                  grad_k.stride_t);
        // grad_v[0:nk] += a'^T g_sum + 2 v * (a'^T g_sq): (nk, D)
        blas_gemm(true, false, nk, D, rows, T(1), ap.data(), nk, gb, W, T(1), gv, grad_v.stride_t);
        if (s.with_square) {
          blas_gemm(true, false, nk, D, rows, T(1), ap.data(), nk, gb + s.square_offset(), W, T(0),
                    v_sq_grad.data(), D);
          for (int64_t j = 0; j < nk; ++j)
            for (int64_t c = 0; c < D; ++c)
              gv[j * grad_v.stride_t + c] += T(2) * vh[j * v.stride_t + c] * v_sq_grad[j * D + c];
        }
      }
      // The extrema route their gradient to the value that attained them, rows in order (an index
      // outside the head, which a well-formed forward never saves, is skipped rather than written).
      for (int side = 0; side < 2; ++side) {
        const bool present = side == 0 ? s.with_max : s.with_min;
        if (!present) continue;
        const int32_t* args = (side == 0 ? arg_max : arg_min) + bh * len * D;
        const int64_t offset = side == 0 ? s.max_offset() : s.min_offset();
        for (int64_t i = 0; i < len; ++i)
          for (int64_t c = 0; c < D; ++c) {
            const int32_t j = args[i * D + c];
            if (j >= 0 && j < len) gv[j * grad_v.stride_t + c] += gh[i * W + offset + c];
          }
      }
    }
  }
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kPnaForward, pna_forward);
GRADUS_REGISTER_CPU_KERNEL(kPnaBackward, pna_backward);

}  // namespace gradus::kernels::cpu
