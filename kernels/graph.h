// Graph kernels for graph-aware attention and graph adapters (models/graph,
// docs/graph_attention.md): neighbourhood extrema over a dense soft adjacency (PNA's max and min
// aggregators), masks used to threshold an adjacency, and sparse (CSR) adjacency products whose
// cost follows the kept edges.
//
// Conventions: an adjacency row is a receiver, a column a sender: adj[i, j] > 0 means "j sends to
// i". Every array is contiguous; the op layer (autodiff/ops/graph.cpp) makes it so.
#pragma once

#include <cstdint>

namespace gradus::kernels {

// ---- neighbourhood extrema (dense adjacency, streamed) ----
// adj: (batch, L, S), x: (batch, S, d) -> out, arg: (batch, L, d):
//   out[b, i, c] = max (is_min: min) over {j : adj[b, i, j] > 0} of x[b, j, c]
//   arg[b, i, c] = the j reached (the first among ties), or -1 when row i has no neighbour, where
//   out is 0 (an isolated node aggregates nothing, as torch_scatter's max does).
// The kernel streams over j: it never forms the (batch, L, S, d) tensor of candidates.
using NeighbourExtremumFn = void (*)(const void* adj, const void* x, void* out, int64_t* arg,
                                     int64_t batch, int64_t L, int64_t S, int64_t d, bool is_min);
// grad_out, arg: (batch, L, d) -> grad_x: (batch, S, d), fully written:
//   grad_x[b, j, c] = sum over i with arg[b, i, c] == j of grad_out[b, i, c] (i ascending).
using NeighbourExtremumBackwardFn = void (*)(const void* grad_out, const int64_t* arg, void* grad_x,
                                             int64_t batch, int64_t L, int64_t S, int64_t d);

// ---- masks (no gradient) ----
// x, out: (n,): out = x > threshold ? 1 : 0 (NaN gives 0).
using GreaterMaskFn = void (*)(const void* x, void* out, int64_t n, double threshold);
// x, out: (rows, n): out = 1 at the k largest entries of each row (ties: the lower index first;
// NaN ranks below every number), 0 elsewhere. 1 <= k <= n.
using TopkMaskFn = void (*)(const void* x, void* out, int64_t rows, int64_t n, int64_t k);

// ---- CSR adjacency from a dense one ----
// adj: (batch, L, S). An edge j -> i of sequence b is kept when adj[b, i, j] > threshold and, with
// `causal`, j <= i; with lengths (batch,) non-null, only when i < lengths[b] and j < lengths[b]
// (padding). Rows are the batch * L receivers, columns the batch * S senders (global indices
// b * S + j), so the batch is one block-diagonal graph.
// Pass 1: counts: (batch * L,) kept edges per row.
using CsrCountFn = void (*)(const void* adj, const int64_t* lengths, int64_t* counts, int64_t batch,
                            int64_t L, int64_t S, double threshold, bool causal);
// Pass 2, given row_ptr: (batch * L + 1,) (the exclusive prefix sum of counts): col, source:
// (nnz,) the global sender and the flat index b * L * S + i * S + j of the edge's entry in adj;
// edges of a row in ascending j.
using CsrFillFn = void (*)(const void* adj, const int64_t* lengths, const int64_t* row_ptr,
                           int64_t* col, int64_t* source, int64_t batch, int64_t L, int64_t S,
                           double threshold, bool causal);

// ---- CSR products ----
// row_ptr: (rows + 1,), col: (nnz,) in [0, cols), values: (nnz,), x: (cols, d) -> out: (rows, d):
//   out[i] = sum over edges e of row i (in order) of values[e] * x[col[e]].
using CsrMatmulFn = void (*)(const int64_t* row_ptr, const int64_t* col, const void* values,
                             const void* x, void* out, int64_t rows, int64_t d);
// The transposed structure, for the gradient of x: col_ptr: (cols + 1,), edge: (nnz,) the edges
// sorted by column, stable (ascending row within a column), edge_row: (nnz,) their rows.
using CsrTransposeFn = void (*)(const int64_t* row_ptr, const int64_t* col, int64_t* col_ptr,
                                int64_t* edge, int64_t* edge_row, int64_t rows, int64_t cols,
                                int64_t nnz);
// grad_x[j] = sum over edges e into column j (ascending row) of values[e] * grad_out[row(e)].
// grad_out: (rows, d), grad_x: (cols, d), fully written.
using CsrMatmulBackwardXFn = void (*)(const int64_t* col_ptr, const int64_t* edge,
                                      const int64_t* edge_row, const void* values,
                                      const void* grad_out, void* grad_x, int64_t cols, int64_t d);
// grad_values[e] = dot(grad_out[row(e)], x[col[e]]). grad_out: (rows, d), x: (cols, d).
using CsrMatmulBackwardValuesFn = void (*)(const int64_t* row_ptr, const int64_t* col,
                                           const void* grad_out, const void* x, void* grad_values,
                                           int64_t rows, int64_t d);

inline constexpr const char* kNeighbourExtremumForward = "neighbour_extremum_forward";
inline constexpr const char* kNeighbourExtremumBackward = "neighbour_extremum_backward";
inline constexpr const char* kGreaterMask = "greater_mask";
inline constexpr const char* kTopkMask = "topk_mask";
inline constexpr const char* kCsrCount = "csr_count";
inline constexpr const char* kCsrFill = "csr_fill";
inline constexpr const char* kCsrMatmul = "csr_matmul_forward";
inline constexpr const char* kCsrTranspose = "csr_transpose";
inline constexpr const char* kCsrMatmulBackwardX = "csr_matmul_backward_x";
inline constexpr const char* kCsrMatmulBackwardValues = "csr_matmul_backward_values";

}  // namespace gradus::kernels
