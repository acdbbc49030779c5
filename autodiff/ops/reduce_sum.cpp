// sum, mean and sum_to: forward through the "reduce" kernel; the backward broadcasts the gradient
// back over the reduced axes.
#include <algorithm>
#include <numeric>

#include "autodiff/ops/common.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/view.h"
#include "kernels/elementwise.h"
#include "kernels/reduce.h"

namespace gradus {

namespace detail {

std::vector<int64_t> reduction_axes(const Tensor& x, const std::vector<int64_t>& axes,
                                    const char* op) {
  std::vector<int64_t> out;
  if (axes.empty()) {
    out.resize(static_cast<size_t>(x.dim()));
    std::iota(out.begin(), out.end(), 0);
    return out;
  }
  for (int64_t a : axes) out.push_back(normalize_axis(a, x.dim(), op));
  std::sort(out.begin(), out.end());
  GRADUS_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), op,
               "axis repeated in {} for {}", shape_str(axes), x.describe());
  return out;
}

Shape reduced_shape(const Shape& shape, const std::vector<int64_t>& axes, bool keepdim) {
  Shape out;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    bool reduced = std::binary_search(axes.begin(), axes.end(), d);
    if (!reduced)
      out.push_back(shape[d]);
    else if (keepdim)
      out.push_back(1);
  }
  return out;
}

ReduceLayout reduce_layout(const Shape& shape, const std::vector<int64_t>& axes) {
  ReduceLayout l;
  const int64_t nd = static_cast<int64_t>(shape.size());
  const bool adjacent =
      axes.empty() || axes.back() - axes.front() + 1 == static_cast<int64_t>(axes.size());
  if (adjacent) {
    const int64_t first = axes.empty() ? 0 : axes.front(), last = axes.empty() ? -1 : axes.back();
    for (int64_t d = 0; d < nd; ++d) {
      if (d < first)
        l.outer *= shape[d];
      else if (d <= last)
        l.reduce *= shape[d];
      else
        l.inner *= shape[d];
    }
    return l;
  }
  for (int64_t d = 0; d < nd; ++d) {
    if (std::binary_search(axes.begin(), axes.end(), d)) continue;
    l.perm.push_back(d);
    l.outer *= shape[d];
  }
  for (int64_t a : axes) {
    l.perm.push_back(a);
    l.reduce *= shape[a];
  }
  return l;
}

Tensor reduce_source(const Tensor& x, const ReduceLayout& layout) {
  return raw_contiguous(layout.perm.empty() ? x : raw_permute(x, layout.perm));
}

namespace {

// The maximal runs of consecutive axes in sorted `axes`: {0, 2, 3} -> {{0}, {2, 3}}.
std::vector<std::vector<int64_t>> adjacent_runs(const std::vector<int64_t>& axes) {
  std::vector<std::vector<int64_t>> runs;
  for (int64_t a : axes) {
    if (runs.empty() || runs.back().back() + 1 != a) runs.emplace_back();
    runs.back().push_back(a);
  }
  return runs;
}

}  // namespace

Tensor raw_reduce(int op, const Tensor& x, const std::vector<int64_t>& axes) {
  const ReduceLayout l = reduce_layout(x.shape(), axes);
  // A sum over axes that are not adjacent (a broadcast gradient: a bias (H, 1, X) from (B, H, T,
  // X) sums axes 0 and 2) reduces each run of adjacent axes in turn, the innermost first, reading x
  // in place: the permuted layout would cost a copy of the whole of x, written and read again (on
  // an H100, ~0.1 ms for each (B, H, T, D) gradient of gin at the medium shape). The later runs
  // read results smaller by the first run's extent. f32 and f64 only: a bf16 partial sum would be
  // rounded to 8 bits between the runs, so bf16 keeps the one-pass sum over the permuted copy.
  if (!l.perm.empty() && op == static_cast<int>(kernels::ReduceOp::sum) &&
      x.dtype() != DType::bf16) {
    const std::vector<std::vector<int64_t>> runs = adjacent_runs(axes);
    Tensor partial = x;
    for (auto run = runs.rbegin(); run != runs.rend(); ++run)
      partial = raw_reduce(op, partial, *run);  // keepdim: the axes keep their positions
    return partial;
  }
  Tensor out = Tensor::empty(reduced_shape(x.shape(), axes, true), x.dtype(), x.device());
  Tensor src = reduce_source(x, l);
  static const kernels::KernelRef<kernels::ReduceFn> kernel(kernels::kReduce);
  kernel(x.device(), x.dtype())(static_cast<kernels::ReduceOp>(op), src.raw_data(), out.raw_data(),
                                l.outer, l.reduce, l.inner);
  return out;
}

}  // namespace detail

namespace {

void sum_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  // attrs.ints: [is_mean, axes...]; grad_out has the reduced shape (with or without size-1 axes).
  const Shape& in_shape = r.input_shapes[0];
  std::vector<int64_t> axes(r.attrs.ints.begin() + 1, r.attrs.ints.end());
  Shape keep = detail::reduced_shape(in_shape, axes, true);
  Tensor g = raw_try_reshape_view(raw_contiguous(go[0]), keep);
  if (r.attrs.ints[0]) {
    int64_t count = shape_numel(in_shape) / std::max<int64_t>(shape_numel(keep), 1);
    g = g * (1.0 / static_cast<double>(std::max<int64_t>(count, 1)));
  }
  gi[0] = raw_contiguous(raw_expand(g, in_shape));
}

const OpDef& kSum = register_op({.name = "sum",
                                 .family = "reduce_sum",
                                 .backward = sum_backward,
                                 .forward_kernels = {kernels::kReduce},
                                 .backward_kernels = {},
                                 .gradcheck = "Gradcheck.sum"});
const OpDef& kMean = register_op({.name = "mean",
                                  .family = "reduce_sum",
                                  .backward = sum_backward,
                                  .forward_kernels = {kernels::kReduce},
                                  .backward_kernels = {kernels::kUnary},
                                  .gradcheck = "Gradcheck.mean"});

Tensor sum_or_mean(bool is_mean, const Tensor& x, const std::vector<int64_t>& axes_in,
                   bool keepdim) {
  const char* name = is_mean ? "mean" : "sum";
  detail::expect_float_compatible(name, {&x});
  std::vector<int64_t> axes = detail::reduction_axes(x, axes_in, name);
  Tensor out = detail::raw_reduce(
      static_cast<int>(is_mean ? kernels::ReduceOp::mean : kernels::ReduceOp::sum), x, axes);
  if (!keepdim) out = raw_try_reshape_view(out, detail::reduced_shape(x.shape(), axes, false));
  Attrs attrs;
  attrs.ints.push_back(is_mean ? 1 : 0);
  attrs.ints.insert(attrs.ints.end(), axes.begin(), axes.end());
  finish_op(is_mean ? kMean : kSum, {x}, {out}, {}, std::move(attrs));
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  return sum_or_mean(false, x, axes, keepdim);
}
Tensor mean(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  return sum_or_mean(true, x, axes, keepdim);
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  GRADUS_CHECK(broadcast_shapes(shape, x.shape(), "sum_to") == x.shape(), "sum_to",
               "{} is not a broadcast of shape {}", x.describe(), shape_str(shape));
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  std::vector<int64_t> axes;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d < lead || (shape[d - lead] == 1 && x.shape()[d] != 1)) axes.push_back(d);
  Tensor s = sum(x, axes, true);
  return reshape(s, shape);
}

}  // namespace gradus
