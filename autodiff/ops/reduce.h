// Differentiable reductions along axes. `axes` may be negative; an empty list reduces every axis.
// keepdim keeps reduced axes with size 1.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace gradus {

// x: (...) -> (...) without the reduced axes
Tensor sum(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
// Gradient flows to the arg-max (first index among ties; NaN wins as in PyTorch).
Tensor max(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
Tensor min(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
// Variance with `correction` (1: unbiased, as torch.var's default; 0: population).
Tensor var(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false,
           int64_t correction = 1);
// log(sum(exp(x))) computed stably (max subtracted first).
Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);

// Sums x: (...) down to `shape` (which x's shape broadcasts from): the reverse of broadcasting.
// This is the one place broadcast gradients are reduced.
Tensor sum_to(const Tensor& x, const Shape& shape);

namespace detail {
// Normalised, sorted, de-duplicated axes (all axes when `axes` is empty).
std::vector<int64_t> reduction_axes(const Tensor& x, const std::vector<int64_t>& axes,
                                    const char* op);
// The output shape of a reduction over `axes` (sorted), with or without the size-1 axes.
Shape reduced_shape(const Shape& shape, const std::vector<int64_t>& axes, bool keepdim);
// How the kernels see x for a reduction over sorted `axes`: (outer, reduce, inner). Adjacent axes
// need no data movement (perm empty); otherwise x is permuted to (kept..., reduced...) and inner
// = 1. Either way the (outer, inner) result is the keepdim output in row-major order.
struct ReduceLayout {
  std::vector<int64_t> perm;  // empty: no permutation
  int64_t outer = 1, reduce = 1, inner = 1;
};
ReduceLayout reduce_layout(const Shape& shape, const std::vector<int64_t>& axes);
// x arranged for the kernels: contiguous, permuted when layout.perm is set.
Tensor reduce_source(const Tensor& x, const ReduceLayout& layout);
// Runs the reduce kernel: result has keepdim=true shape. No tape record. An f32 / f64 sum over
// axes that are not adjacent runs once per run of adjacent axes (innermost first) instead of
// permuting x into a copy.
Tensor raw_reduce(int op, const Tensor& x, const std::vector<int64_t>& axes);
}  // namespace detail

}  // namespace gradus
