// Joining, splitting and indexing ops. Axes may be negative (counted from the end). Index tensors
// are i64 and never differentiable; an index outside [0, size) is an error naming the index value,
// its position in the index tensor and the size of the indexed axis (negative indices are not
// wrapped).
#pragma once

#include <vector>

#include "core/tensor.h"

namespace gradus {

// xs[k]: (..., n_k, ...) equal except along `axis` -> (..., sum n_k, ...). Any dtype (i64 too,
// which records nothing); all on one device. The gradient of xs[k] is its slice of the output
// gradient.
Tensor concat(const std::vector<Tensor>& xs, int64_t axis);

// x: (..., n, ...) -> pieces (..., sizes[k], ...) along `axis`, with sum(sizes) == n. The pieces
// are views of x. One multi-output record: pieces that receive no gradient contribute zeros.
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t axis);

// xs[k]: (...) all the same shape -> (..., len(xs), ...) with the new axis at `axis` (in
// [-(rank+1), rank]).
Tensor stack(const std::vector<Tensor>& xs, int64_t axis);

// x: (..., n, ...), index: i64 (K,) -> (..., K, ...): out[..., k, ...] = x[..., index[k], ...].
// The backward scatter-adds: repeated indices accumulate, in a fixed order (deterministic).
Tensor index_select(const Tensor& x, int64_t axis, const Tensor& index);

// torch.gather: x: (d0, ..., n, ..., dr), index: i64 of the same rank with index.size(d) <=
// x.size(d) for every d != axis -> out of index's shape, out[p] = x[p with p[axis] replaced by
// index[p]]. The backward scatter-adds into x's shape (repeated indices accumulate; deterministic).
Tensor gather(const Tensor& x, int64_t axis, const Tensor& index);

}  // namespace gradus
