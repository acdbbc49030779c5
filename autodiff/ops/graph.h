// Graph ops for graph-aware attention and graph adapters (models/graph, docs/graph_attention.md).
// An adjacency row is a receiver and a column a sender: adj[..., i, j] > 0 means "j sends to i".
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace gradus {

// PNA's max and min aggregators over a soft adjacency: the element-wise extremum of the features of
// the neighbours {j : adj[..., i, j] > 0}, unweighted; 0 for a row without neighbours.
// adj: (..., L, S), x: (..., S, d), batch axes broadcast -> (..., L, d). Differentiable in x (the
// gradient goes to the neighbour that attains the extremum, the first among ties); adj gets no
// gradient (the neighbourhood is piecewise constant in it). The kernel streams over the senders:
// memory is O(L d) per sequence and head, never O(L S d).
Tensor neighbour_max(const Tensor& adj, const Tensor& x);
Tensor neighbour_min(const Tensor& adj, const Tensor& x);

// x > threshold as 1 / 0 in x's dtype (x: (...) -> (...)). No gradient (a step function).
Tensor greater_mask(const Tensor& x, double threshold);

// x: (..., n) -> (..., n): 1 at the k largest entries of every last-axis row (the lower index first
// among ties), 0 elsewhere; 1 <= k <= n. No gradient.
Tensor topk_mask(const Tensor& x, int64_t k);

// A batch of graphs as one block-diagonal sparse adjacency in CSR form: rows are receivers, cols
// senders. row_ptr: (rows + 1,) i64; col: (nnz,) i64 senders; source: (nnz,) i64 the flat index of
// each edge's entry in the dense adjacency it came from (to gather its weight differentiably:
// index_select(reshape(adj, {-1}), 0, source)). Edges of a row are in ascending sender order.
struct CsrGraph {
  Tensor row_ptr, col, source;
  int64_t rows = 0, cols = 0;
  int64_t nnz() const { return col.defined() ? col.numel() : 0; }
};

// Keeps the entries of adj: (B, L, S) above `threshold`; with `causal` only senders j <= i; with
// lengths: (B,) i64 only i, j < lengths[b] (padding dropped). Rows: B * L (row b * L + i), cols:
// B * S (col b * S + j). Not differentiable (a structure); weigh the edges with `source`.
CsrGraph dense_to_csr(const Tensor& adj, double threshold, bool causal,
                      const Tensor& lengths = Tensor());

// out = A x for the sparse A given by graph and values: (nnz,) (values[e] weighs edge e).
// x: (cols, d) -> (rows, d). Differentiable in values and x; forward and both gradients cost
// O(nnz d), not O(rows cols d).
Tensor csr_matmul(const CsrGraph& graph, const Tensor& values, const Tensor& x);

}  // namespace gradus
