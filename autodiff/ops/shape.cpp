// concat, split and stack (strided copies into or out of slices: no kernel of their own), and
// index_select and gather (the "index_select" / "gather" kernels, whose backward kernels
// scatter-add deterministically).
#include "autodiff/ops/shape.h"

#include <algorithm>
#include <string>

#include "autodiff/autocast.h"
#include "autodiff/ops/common.h"
#include "kernels/copy.h"
#include "kernels/shape.h"

namespace gradus {

namespace {

// Element `pos` (row-major) of a contiguous i64 tensor on any device, read on the CPU.
int64_t read_index(const Tensor& index, int64_t pos) {
  Tensor one = raw_view(index, {1}, {1}, index.offset() + pos);
  Tensor host = Tensor::empty({1}, DType::i64, kCPU);
  raw_copy_(host, one);
  return host.data<int64_t>()[0];
}

// "(1, 0, 2)": the multi-index of flat position `pos` in `shape`.
std::string unravel(int64_t pos, const Shape& shape) {
  Shape idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = shape[d] > 0 ? pos % shape[d] : 0;
    pos = shape[d] > 0 ? pos / shape[d] : 0;
  }
  return shape_str(idx);
}

void expect_index(const char* op, const Tensor& index, const Tensor& x) {
  detail::expect_defined(op, index, "index");
  detail::expect_dtype(op, index, DType::i64, "index");
  GRADUS_CHECK(index.device() == x.device(), op, "index {} is not on the device of the input {}",
               index.describe(), x.describe());
}

// Same dtype and device as xs[0], for the joining ops (any dtype, i64 included).
void expect_joinable(const char* op, const std::vector<Tensor>& xs) {
  GRADUS_CHECK(!xs.empty(), op, "expected at least one tensor but the list is empty");
  for (size_t k = 0; k < xs.size(); ++k) {
    GRADUS_CHECK(xs[k].defined(), op, "tensor {} is an undefined tensor", k);
    GRADUS_CHECK(xs[k].dtype() == xs[0].dtype(), op,
                 "dtypes differ: tensor 0 is {} but tensor {} is {} (convert one with to_dtype)",
                 xs[0].describe(), k, xs[k].describe());
    GRADUS_CHECK(xs[k].device() == xs[0].device(), op,
                 "devices differ: tensor 0 is {} but tensor {} is {}", xs[0].describe(), k,
                 xs[k].describe());
  }
}

// Integer tensors never take gradients, and the NaN check of finish_op is for floats only.
void finish_if_floating(const OpDef& def, const std::vector<Tensor>& inputs,
                        const std::vector<Tensor>& outputs, std::vector<Tensor> saved = {},
                        Attrs attrs = {}) {
  if (!is_floating(outputs.front().dtype())) return;
  finish_op(def, inputs, outputs, std::move(saved), std::move(attrs));
}

// ---------------------------------------------------------------- backward rules

// concat: attrs.ints = [axis, n_0, n_1, ...]; input k's gradient is its slice of the output's.
void concat_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  const int64_t axis = r.attrs.ints[0];
  int64_t start = 0;
  for (size_t k = 0; k < r.inputs.size(); ++k) {
    const int64_t n = r.attrs.ints[k + 1];
    if (r.input_requires_grad(k)) gi[k] = raw_slice(go[0], axis, start, start + n);
    start += n;
  }
}

// split: attrs.ints = [axis, sizes...]; pieces without a gradient stay zero.
void split_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  const int64_t axis = r.attrs.ints[0];
  const Tensor* any = nullptr;
  for (const Tensor& g : go)
    if (g.defined()) any = &g;
  Tensor gx = Tensor::zeros(r.input_shapes[0], r.input_dtypes[0], any->device());
  int64_t start = 0;
  for (size_t k = 0; k < go.size(); ++k) {
    const int64_t n = r.attrs.ints[k + 1];
    if (go[k].defined()) raw_copy_(raw_slice(gx, axis, start, start + n), go[k]);
    start += n;
  }
  gi[0] = gx;
}

// stack: attrs.ints = [axis]; input k's gradient is slice k of the new axis.
void stack_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  const int64_t axis = r.attrs.ints[0];
  for (size_t k = 0; k < r.inputs.size(); ++k) {
    const int64_t kk = static_cast<int64_t>(k);
    if (r.input_requires_grad(k)) gi[k] = raw_squeeze(raw_slice(go[0], axis, kk, kk + 1), axis);
  }
}

// index_select: saved = [index (contiguous)], attrs.ints = [axis].
void index_select_backward(const Record& r, const std::vector<Tensor>& go,
                           std::vector<Tensor>& gi) {
  const int64_t axis = r.attrs.ints[0];
  const Tensor& index = r.saved[0];
  Tensor g = raw_contiguous(go[0]);
  Tensor gx = detail::empty_like(r.input_shapes[0], g);
  detail::AxisLayout l = detail::axis_layout(r.input_shapes[0], axis);
  static const kernels::KernelRef<kernels::IndexSelectBackwardFn> k(kernels::kIndexSelectBackward);
  k(g.device(), g.dtype())(g.raw_data(), index.data<int64_t>(), gx.raw_data(), l.outer, l.n,
                           index.numel(), l.inner);
  gi[0] = gx;
}

// gather: saved = [index (contiguous)], attrs.ints = [axis]. The kernel scatters into x restricted
// to index's extent on the other axes; the rest of x gets zeros.
void gather_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  const int64_t axis = r.attrs.ints[0];
  const Tensor& index = r.saved[0];
  const Shape& x_shape = r.input_shapes[0];
  Shape sub_shape = index.shape();
  sub_shape[axis] = x_shape[axis];
  Tensor g = raw_contiguous(go[0]);
  Tensor gsub = detail::empty_like(sub_shape, g);
  detail::AxisLayout l = detail::axis_layout(sub_shape, axis);
  static const kernels::KernelRef<kernels::GatherBackwardFn> k(kernels::kGatherBackward);
  k(g.device(), g.dtype())(g.raw_data(), index.data<int64_t>(), gsub.raw_data(), l.outer, l.n,
                           index.shape()[axis], l.inner);
  if (sub_shape == x_shape) {
    gi[0] = gsub;
    return;
  }
  Tensor gx = Tensor::zeros(x_shape, g.dtype(), g.device());
  Tensor dst = gx;
  for (int64_t d = 0; d < static_cast<int64_t>(x_shape.size()); ++d)
    if (d != axis) dst = raw_slice(dst, d, 0, sub_shape[d]);
  raw_copy_(dst, gsub);
  gi[0] = gx;
}

// Every shape op moves data with strided copies (see kernels/copy.h).
std::vector<std::string> with_copy(std::vector<std::string> names) {
  names.push_back(kernels::kStridedCopy);
  return names;
}

OpDef shape_def(const char* name, BackwardFn fn, std::vector<std::string> fwd = {},
                std::vector<std::string> bwd = {}) {
  return OpDef{.name = name,
               .family = "shape",
               .backward = fn,
               .forward_kernels = with_copy(std::move(fwd)),
               .backward_kernels = with_copy(std::move(bwd)),
               .gradcheck = std::string("Gradcheck.") + name};
}
const OpDef& kConcat = register_op(shape_def("concat", concat_backward));
const OpDef& kSplit = register_op(shape_def("split", split_backward));
const OpDef& kStack = register_op(shape_def("stack", stack_backward));
const OpDef& kIndexSelectDef =
    register_op(shape_def("index_select", index_select_backward, {kernels::kIndexSelect},
                          {kernels::kIndexSelectBackward}));
const OpDef& kGatherDef = register_op(
    shape_def("gather", gather_backward, {kernels::kGather}, {kernels::kGatherBackward}));

}  // namespace

Tensor concat(const std::vector<Tensor>& xs_in, int64_t axis) {
  const std::vector<Tensor> xs = detail::autocast_promote_all(xs_in);  // under autocast only
  expect_joinable("concat", xs);
  const Tensor& first = xs[0];
  GRADUS_CHECK(first.dim() > 0, "concat", "cannot concatenate rank-0 tensors ({}); use stack",
               first.describe());
  axis = normalize_axis(axis, first.dim(), "concat");
  Shape out_shape = first.shape();
  out_shape[axis] = 0;
  for (size_t k = 0; k < xs.size(); ++k) {
    bool match = xs[k].dim() == first.dim();
    for (int64_t d = 0; match && d < first.dim(); ++d)
      match = d == axis || xs[k].shape()[d] == first.shape()[d];
    GRADUS_CHECK(match, "concat",
                 "tensor {} is {} but tensor 0 is {}: shapes must match except along axis {}", k,
                 xs[k].describe(), first.describe(), axis);
    out_shape[axis] += xs[k].shape()[axis];
  }
  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  Attrs attrs{.ints = {axis}};
  int64_t start = 0;
  for (const Tensor& x : xs) {
    const int64_t n = x.shape()[axis];
    raw_copy_(raw_slice(out, axis, start, start + n), x);
    attrs.ints.push_back(n);
    start += n;
  }
  finish_if_floating(kConcat, xs, {out}, {}, std::move(attrs));
  return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t axis) {
  detail::expect_defined("split", x, "input");
  GRADUS_CHECK(x.dim() > 0, "split", "cannot split a rank-0 tensor ({})", x.describe());
  GRADUS_CHECK(!sizes.empty(), "split", "expected at least one piece size for {}", x.describe());
  axis = normalize_axis(axis, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    GRADUS_CHECK(s >= 0, "split", "piece sizes must be non-negative, found {} in {}", s,
                 shape_str(sizes));
    total += s;
  }
  GRADUS_CHECK(total == x.shape()[axis], "split",
               "piece sizes {} add up to {} but axis {} of {} has size {}", shape_str(sizes), total,
               axis, x.describe(), x.shape()[axis]);
  std::vector<Tensor> pieces;
  Attrs attrs{.ints = {axis}};
  int64_t start = 0;
  for (int64_t s : sizes) {
    pieces.push_back(raw_slice(x, axis, start, start + s));
    attrs.ints.push_back(s);
    start += s;
  }
  finish_if_floating(kSplit, {x}, pieces, {}, std::move(attrs));
  return pieces;
}

Tensor stack(const std::vector<Tensor>& xs_in, int64_t axis) {
  const std::vector<Tensor> xs = detail::autocast_promote_all(xs_in);  // under autocast only
  expect_joinable("stack", xs);
  const Tensor& first = xs[0];
  for (size_t k = 0; k < xs.size(); ++k)
    GRADUS_CHECK(xs[k].shape() == first.shape(), "stack",
                 "tensor {} is {} but tensor 0 is {}: all shapes must be equal", k,
                 xs[k].describe(), first.describe());
  axis = normalize_axis(axis, first.dim() + 1, "stack");
  Shape out_shape = first.shape();
  out_shape.insert(out_shape.begin() + axis, static_cast<int64_t>(xs.size()));
  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  for (size_t k = 0; k < xs.size(); ++k) {
    const int64_t kk = static_cast<int64_t>(k);
    raw_copy_(raw_squeeze(raw_slice(out, axis, kk, kk + 1), axis), xs[k]);
  }
  finish_if_floating(kStack, xs, {out}, {}, Attrs{.ints = {axis}});
  return out;
}

Tensor index_select(const Tensor& x, int64_t axis, const Tensor& index) {
  detail::expect_float_compatible("index_select", {&x});
  expect_index("index_select", index, x);
  GRADUS_CHECK(index.dim() == 1, "index_select", "expected a rank-1 index (K,) but found {}",
               index.describe());
  GRADUS_CHECK(x.dim() > 0, "index_select", "cannot index a rank-0 tensor ({})", x.describe());
  axis = normalize_axis(axis, x.dim(), "index_select");
  Tensor xc = raw_contiguous(x);
  Tensor ic = raw_contiguous(index);
  Shape out_shape = x.shape();
  out_shape[axis] = ic.numel();
  Tensor out = detail::empty_like(out_shape, x);
  detail::AxisLayout l = detail::axis_layout(x.shape(), axis);
  static const kernels::KernelRef<kernels::IndexSelectFn> k(kernels::kIndexSelect);
  int64_t bad = k(x.device(), x.dtype())(xc.raw_data(), ic.data<int64_t>(), out.raw_data(), l.outer,
                                         l.n, ic.numel(), l.inner);
  GRADUS_CHECK(bad < 0, "index_select",
               "index {} at position {} is out of range for axis {} of size {} (input {})",
               read_index(ic, bad), bad, axis, l.n, x.describe());
  finish_op(kIndexSelectDef, {x}, {out}, {ic}, Attrs{.ints = {axis}});
  return out;
}

Tensor gather(const Tensor& x, int64_t axis, const Tensor& index) {
  detail::expect_float_compatible("gather", {&x});
  expect_index("gather", index, x);
  GRADUS_CHECK(x.dim() > 0, "gather", "cannot gather from a rank-0 tensor ({})", x.describe());
  GRADUS_CHECK(index.dim() == x.dim(), "gather", "index {} must have the rank of the input {}",
               index.describe(), x.describe());
  axis = normalize_axis(axis, x.dim(), "gather");
  Tensor xs = x;  // x restricted to index's extent on every other axis
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d == axis) continue;
    GRADUS_CHECK(index.shape()[d] <= x.shape()[d], "gather",
                 "index {} is larger than the input {} along axis {} (only axis {} may differ)",
                 index.describe(), x.describe(), d, axis);
    xs = raw_slice(xs, d, 0, index.shape()[d]);
  }
  xs = raw_contiguous(xs);
  Tensor ic = raw_contiguous(index);
  Tensor out = detail::empty_like(index.shape(), x);
  detail::AxisLayout l = detail::axis_layout(xs.shape(), axis);
  static const kernels::KernelRef<kernels::GatherFn> k(kernels::kGather);
  int64_t bad = k(x.device(), x.dtype())(xs.raw_data(), ic.data<int64_t>(), out.raw_data(), l.outer,
                                         l.n, index.shape()[axis], l.inner);
  GRADUS_CHECK(bad < 0, "gather",
               "index {} at position {} is out of range for axis {} of size {} (input {})",
               read_index(ic, bad), unravel(bad, index.shape()), axis, l.n, x.describe());
  finish_op(kGatherDef, {x}, {out}, {ic}, Attrs{.ints = {axis}});
  return out;
}

}  // namespace gradus
