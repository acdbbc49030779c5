// CPU graph kernels (see kernels/graph.h). Every output row is owned by one thread and its sums run
// in a fixed order, so the bits do not depend on the thread count.
#include "kernels/graph.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels/registry.h"

namespace gradus::kernels::cpu {
namespace {

constexpr int64_t kParallel = 1 << 14;  // work (elements) below which one thread does everything

// ---- neighbourhood extrema ----

// One receiver row: a: (S,) its adjacency row, x: (S, d), out, arg: (d,). best and idx are
// scratch of d entries. The inner loop over channels is a compare and two selects, which GCC
// vectorises; a row's scan costs S compares plus d per neighbour, and nothing of size S * d is
// stored.
template <class T, bool kMin>
void extremum_row(const T* a, const T* x, T* out, int64_t* arg, int64_t S, int64_t d, T* best,
                  int32_t* idx) {
  int64_t j = 0;
  while (j < S && !(a[j] > T(0))) ++j;
  if (j == S) {  // no neighbour
    for (int64_t c = 0; c < d; ++c) out[c] = T(0), arg[c] = -1;
    return;
  }
  // The first neighbour initialises, so that infinite features compare like any other value.
  for (int64_t c = 0; c < d; ++c) best[c] = x[j * d + c], idx[c] = static_cast<int32_t>(j);
  for (++j; j < S; ++j) {
    if (!(a[j] > T(0))) continue;
    const T* xj = x + j * d;
    const int32_t jj = static_cast<int32_t>(j);
    for (int64_t c = 0; c < d; ++c) {
      const bool take = kMin ? xj[c] < best[c] : xj[c] > best[c];
      best[c] = take ? xj[c] : best[c];
      idx[c] = take ? jj : idx[c];
    }
  }
  for (int64_t c = 0; c < d; ++c) out[c] = best[c], arg[c] = idx[c];
}

template <class T, bool kMin>
void extremum_impl(const T* adj, const T* x, T* out, int64_t* arg, int64_t batch, int64_t L,
                   int64_t S, int64_t d) {
  const int64_t rows = batch * L;
#pragma omp parallel if (rows * S * d > kParallel && rows > 1)
  {
    std::vector<T> best(static_cast<size_t>(d));
    std::vector<int32_t> idx(static_cast<size_t>(d));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t b = r / L;
      extremum_row<T, kMin>(adj + r * S, x + b * S * d, out + r * d, arg + r * d, S, d, best.data(),
                            idx.data());
    }
  }
}

template <class T>
void neighbour_extremum_forward(const void* adj, const void* x, void* out, int64_t* arg,
                                int64_t batch, int64_t L, int64_t S, int64_t d, bool is_min) {
  // Indices are tracked in 32 bits (they vectorise with f32 lanes).
  GRADUS_CHECK(S < (int64_t{1} << 31), "neighbour_extremum", "{} senders exceed 2^31", S);
  const T* a = static_cast<const T*>(adj);
  const T* xs = static_cast<const T*>(x);
  T* o = static_cast<T*>(out);
  if (is_min)
    extremum_impl<T, true>(a, xs, o, arg, batch, L, S, d);
  else
    extremum_impl<T, false>(a, xs, o, arg, batch, L, S, d);
}

template <class T>
void neighbour_extremum_backward(const void* grad_out, const int64_t* arg, void* grad_x,
                                 int64_t batch, int64_t L, int64_t S, int64_t d) {
  const T* g = static_cast<const T*>(grad_out);
  T* gx = static_cast<T*>(grad_x);
  // One sequence per iteration: its receivers scatter into its own senders, i ascending.
#pragma omp parallel for if (batch * L * d > kParallel && batch > 1) schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    T* gxb = gx + b * S * d;
    std::fill(gxb, gxb + S * d, T(0));
    for (int64_t i = 0; i < L; ++i) {
      const int64_t* a = arg + (b * L + i) * d;
      const T* gi = g + (b * L + i) * d;
      for (int64_t c = 0; c < d; ++c)
        if (a[c] >= 0) gxb[a[c] * d + c] += gi[c];
    }
  }
}

// ---- masks ----

template <class T>
void greater_mask(const void* x_, void* out_, int64_t n, double threshold) {
  const T* x = static_cast<const T*>(x_);
  T* out = static_cast<T*>(out_);
  const T t = static_cast<T>(threshold);
#pragma omp parallel for if (n > (kParallel << 4)) schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] > t ? T(1) : T(0);
}

template <class T>
void topk_mask(const void* x_, void* out_, int64_t rows, int64_t n, int64_t k) {
  const T* x = static_cast<const T*>(x_);
  T* out = static_cast<T*>(out_);
#pragma omp parallel if (rows * n > kParallel && rows > 1)
  {
    std::vector<int64_t> order(static_cast<size_t>(n));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * n;
      T* o = out + r * n;
      std::iota(order.begin(), order.end(), int64_t{0});
      // A strict total order: larger first, NaN last, the lower index first among equals.
      auto before = [xr](int64_t p, int64_t q) {
        const bool pn = std::isnan(xr[p]), qn = std::isnan(xr[q]);
        if (pn != qn) return qn;
        if (!pn && xr[p] != xr[q]) return xr[p] > xr[q];
        return p < q;
      };
      std::nth_element(order.begin(), order.begin() + (k - 1), order.end(), before);
      std::fill(o, o + n, T(0));
      for (int64_t m = 0; m < k; ++m) o[order[m]] = T(1);
    }
  }
}

// ---- CSR from dense ----

inline bool keep_position(int64_t i, int64_t j, int64_t len, bool causal) {
  return i < len && j < len && (!causal || j <= i);
}

// Calls on_row(r, b, kept) for every receiver row r = b * L + i of adj: (batch, L, S), rows in
// parallel; kept(j) tells whether the edge j -> i stays. Count and fill visit the same edges in the
// same order through it, so the fill writes exactly the layout the counts give.
template <class T, class OnRow>
void for_each_receiver(const void* adj_, const int64_t* lengths, int64_t batch, int64_t L,
                       int64_t S, double threshold, bool causal, OnRow on_row) {
  const T* adj = static_cast<const T*>(adj_);
  const T t = static_cast<T>(threshold);
  const int64_t rows = batch * L;
#pragma omp parallel for if (rows * S > kParallel) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t b = r / L, i = r % L;
    const int64_t len = lengths ? lengths[b] : std::max(L, S);
    const T* a = adj + r * S;
    on_row(r, b, [&](int64_t j) { return keep_position(i, j, len, causal) && a[j] > t; });
  }
}

template <class T>
void csr_count(const void* adj, const int64_t* lengths, int64_t* counts, int64_t batch, int64_t L,
               int64_t S, double threshold, bool causal) {
  for_each_receiver<T>(adj, lengths, batch, L, S, threshold, causal,
                       [&](int64_t r, int64_t, const auto& kept) {
                         int64_t n = 0;
                         for (int64_t j = 0; j < S; ++j) n += kept(j) ? 1 : 0;
                         counts[r] = n;
                       });
}

template <class T>
void csr_fill(const void* adj, const int64_t* lengths, const int64_t* row_ptr, int64_t* col,
              int64_t* source, int64_t batch, int64_t L, int64_t S, double threshold, bool causal) {
  for_each_receiver<T>(adj, lengths, batch, L, S, threshold, causal,
                       [&](int64_t r, int64_t b, const auto& kept) {
                         int64_t e = row_ptr[r];
                         for (int64_t j = 0; j < S; ++j)
                           if (kept(j)) {
                             col[e] = b * S + j;
                             source[e] = r * S + j;
                             ++e;
                           }
                       });
}

// ---- CSR products ----

// Runs row(i) for i in [0, n) of a compressed structure ptr: (n + 1,), in parallel when the
// ptr[n] * d multiply-adds are worth the threads.
template <class Row>
void for_each_compressed_row(const int64_t* ptr, int64_t n, int64_t d, Row row) {
  const int64_t work = (n > 0 ? ptr[n] : 0) * d;
#pragma omp parallel for if (work > kParallel && n > 1) schedule(static)
  for (int64_t i = 0; i < n; ++i) row(i);
}

// The row loop of the product and of its x gradient, which is the same product over the
// transposed structure: out: (n, d), out[i] = sum over slots s in [ptr[i], ptr[i + 1]), ascending,
// of weight(s) * src[src_row(s)], with src: (*, d).
template <class T, class Weight, class SrcRow>
void gather_weighted_rows(const int64_t* ptr, int64_t n, int64_t d, const T* src, T* out,
                          Weight weight, SrcRow src_row) {
  for_each_compressed_row(ptr, n, d, [&](int64_t i) {
    T* o = out + i * d;
    std::fill(o, o + d, T(0));
    for (int64_t s = ptr[i]; s < ptr[i + 1]; ++s) {
      const T w = weight(s);
      const T* xs = src + src_row(s) * d;
      for (int64_t c = 0; c < d; ++c) o[c] += w * xs[c];
    }
  });
}

template <class T>
void csr_matmul_forward(const int64_t* row_ptr, const int64_t* col, const void* values_,
                        const void* x, void* out, int64_t rows, int64_t d) {
  const T* values = static_cast<const T*>(values_);
  gather_weighted_rows(
      row_ptr, rows, d, static_cast<const T*>(x), static_cast<T*>(out),
      [values](int64_t e) { return values[e]; }, [col](int64_t e) { return col[e]; });
}

// Counting sort of the edges by column; within a column the rows stay ascending.
template <class T>
void csr_transpose(const int64_t* row_ptr, const int64_t* col, int64_t* col_ptr, int64_t* edge,
                   int64_t* edge_row, int64_t rows, int64_t cols, int64_t nnz) {
  std::fill(col_ptr, col_ptr + cols + 1, int64_t{0});
  for (int64_t e = 0; e < nnz; ++e) ++col_ptr[col[e] + 1];
  for (int64_t j = 0; j < cols; ++j) col_ptr[j + 1] += col_ptr[j];
  std::vector<int64_t> next(col_ptr, col_ptr + cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t e = row_ptr[i]; e < row_ptr[i + 1]; ++e) {
      const int64_t slot = next[col[e]]++;
      edge[slot] = e;
      edge_row[slot] = i;
    }
}

template <class T>
void csr_matmul_backward_x(const int64_t* col_ptr, const int64_t* edge, const int64_t* edge_row,
                           const void* values_, const void* grad_out, void* grad_x, int64_t cols,
                           int64_t d) {
  const T* values = static_cast<const T*>(values_);
  gather_weighted_rows(
      col_ptr, cols, d, static_cast<const T*>(grad_out), static_cast<T*>(grad_x),
      [values, edge](int64_t s) { return values[edge[s]]; },
      [edge_row](int64_t s) { return edge_row[s]; });
}

template <class T>
void csr_matmul_backward_values(const int64_t* row_ptr, const int64_t* col, const void* grad_out_,
                                const void* x_, void* grad_values_, int64_t rows, int64_t d) {
  const T* g = static_cast<const T*>(grad_out_);
  const T* x = static_cast<const T*>(x_);
  T* gv = static_cast<T*>(grad_values_);
  for_each_compressed_row(row_ptr, rows, d, [&](int64_t i) {
    const T* gi = g + i * d;
    for (int64_t e = row_ptr[i]; e < row_ptr[i + 1]; ++e) {
      const T* xj = x + col[e] * d;
      T acc = 0;
      for (int64_t c = 0; c < d; ++c) acc += gi[c] * xj[c];
      gv[e] = acc;
    }
  });
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kNeighbourExtremumForward, neighbour_extremum_forward);
GRADUS_REGISTER_CPU_KERNEL(kNeighbourExtremumBackward, neighbour_extremum_backward);
GRADUS_REGISTER_CPU_KERNEL(kGreaterMask, greater_mask);
GRADUS_REGISTER_CPU_KERNEL(kTopkMask, topk_mask);
GRADUS_REGISTER_CPU_KERNEL(kCsrCount, csr_count);
GRADUS_REGISTER_CPU_KERNEL(kCsrFill, csr_fill);
GRADUS_REGISTER_CPU_KERNEL(kCsrMatmul, csr_matmul_forward);
GRADUS_REGISTER_CPU_KERNEL(kCsrTranspose, csr_transpose);
GRADUS_REGISTER_CPU_KERNEL(kCsrMatmulBackwardX, csr_matmul_backward_x);
GRADUS_REGISTER_CPU_KERNEL(kCsrMatmulBackwardValues, csr_matmul_backward_values);

}  // namespace gradus::kernels::cpu
