// View ops. Each records one op whose backward undoes the view on the gradient.
#include "autodiff/ops/view.h"

#include <algorithm>

#include "autodiff/ops/common.h"
#include "autodiff/ops/reduce.h"
#include "kernels/copy.h"

namespace gradus {

namespace {

// reshape / view / flatten / squeeze / unsqueeze: the gradient is reshaped back.
void reshape_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  gi[0] = reshape(go[0], r.input_shapes[0]);
}
// transpose / permute: attrs.ints is the permutation applied; apply its inverse.
void permute_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  const auto& p = r.attrs.ints;
  std::vector<int64_t> inverse(p.size());
  for (size_t i = 0; i < p.size(); ++i) inverse[p[i]] = static_cast<int64_t>(i);
  gi[0] = raw_permute(go[0], inverse);
}
// slice: scatter the gradient into zeros of the input's shape. attrs: axis, start, end, step.
void slice_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  const auto& a = r.attrs.ints;
  Tensor g = Tensor::zeros(r.input_shapes[0], go[0].dtype(), go[0].device());
  raw_copy_(raw_slice(g, a[0], a[1], a[2], a[3]), go[0]);
  gi[0] = g;
}
// expand: the engine's sum_to reduces the broadcast gradient.
void identity_backward(const Record&, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  gi[0] = go[0];
}
void to_dtype_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  gi[0] = raw_to_dtype(go[0], r.input_dtypes[0]);
}

// to_device: attrs.ints = {source device type, source device index}; the gradient goes back there.
void to_device_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  const Device source{static_cast<DeviceType>(r.attrs.ints[0]), static_cast<int>(r.attrs.ints[1])};
  gi[0] = raw_to_device(go[0], source);
}

OpDef view_def(const char* name, BackwardFn fn, std::vector<std::string> kernels = {}) {
  return OpDef{.name = name,
               .family = "view",
               .backward = fn,
               .forward_kernels = {kernels::kStridedCopy},
               .backward_kernels = std::move(kernels),
               .gradcheck = std::string("Gradcheck.") + name};
}
const OpDef& kReshape = register_op(view_def("reshape", reshape_backward, {kernels::kStridedCopy}));
const OpDef& kPermute = register_op(view_def("permute", permute_backward, {kernels::kStridedCopy}));
const OpDef& kSlice = register_op(view_def("slice", slice_backward, {kernels::kStridedCopy}));
const OpDef& kExpand = register_op(view_def("expand", identity_backward, {kernels::kStridedCopy, "reduce"}));
const OpDef& kContiguous = register_op(view_def("contiguous", identity_backward, {kernels::kStridedCopy}));
const OpDef& kToDtype = register_op(view_def("to_dtype", to_dtype_backward, {kernels::kStridedCopy}));
const OpDef& kToDevice = register_op(view_def("to_device", to_device_backward, {kernels::kStridedCopy}));

Tensor record_view(const OpDef& def, const Tensor& x, Tensor out, Attrs attrs = {}) {
  finish_op(def, {x}, {out}, {}, std::move(attrs));
  return out;
}

}  // namespace

Tensor reshape(const Tensor& x, const Shape& shape) {
  detail::expect_defined("reshape", x, "input");
  Tensor out = raw_try_reshape_view(x, shape);
  if (!out.defined()) out = raw_try_reshape_view(raw_clone(x), shape);
  return record_view(kReshape, x, out);
}

Tensor view(const Tensor& x, const Shape& shape) {
  detail::expect_defined("view", x, "input");
  Tensor out = raw_try_reshape_view(x, shape);
  GRADUS_CHECK(out.defined(), "view",
               "{} cannot be viewed as {} without a copy; use reshape() or contiguous() first",
               x.describe(), shape_str(shape));
  return record_view(kReshape, x, out);
}

Tensor flatten(const Tensor& x, int64_t start_axis, int64_t end_axis) {
  if (x.dim() == 0) return reshape(x, {1});
  int64_t s = normalize_axis(start_axis, x.dim(), "flatten");
  int64_t e = normalize_axis(end_axis, x.dim(), "flatten");
  GRADUS_CHECK(s <= e, "flatten", "start axis {} is after end axis {} for {}", s, e, x.describe());
  Shape shape(x.shape().begin(), x.shape().begin() + s);
  int64_t n = 1;
  for (int64_t d = s; d <= e; ++d) n *= x.shape()[d];
  shape.push_back(n);
  shape.insert(shape.end(), x.shape().begin() + e + 1, x.shape().end());
  return reshape(x, shape);
}

Tensor transpose(const Tensor& x, int64_t a, int64_t b) {
  detail::expect_defined("transpose", x, "input");
  if (x.dim() == 0) return x;  // a scalar is its own transpose (as in PyTorch)
  a = normalize_axis(a, x.dim(), "transpose");
  b = normalize_axis(b, x.dim(), "transpose");
  std::vector<int64_t> perm(static_cast<size_t>(x.dim()));
  for (int64_t i = 0; i < x.dim(); ++i) perm[i] = i;
  std::swap(perm[a], perm[b]);
  return record_view(kPermute, x, raw_permute(x, perm), Attrs{.ints = perm});
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  detail::expect_defined("permute", x, "input");
  Tensor out = raw_permute(x, dims);
  std::vector<int64_t> perm;
  for (int64_t d : dims) perm.push_back(normalize_axis(d, x.dim(), "permute"));
  return record_view(kPermute, x, out, Attrs{.ints = perm});
}

Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end, int64_t step) {
  detail::expect_defined("slice", x, "input");
  axis = normalize_axis(axis, x.dim(), "slice");
  Tensor out = raw_slice(x, axis, start, end, step);
  // Record the resolved bounds so the backward sees the same elements.
  int64_t n = x.shape()[axis];
  int64_t s = start < 0 ? start + n : start;
  s = std::clamp<int64_t>(s, 0, n);
  return record_view(kSlice, x, out, Attrs{.ints = {axis, s, s + (out.shape()[axis] - 1) * step + 1, step}});
}

Tensor expand(const Tensor& x, const Shape& shape) {
  detail::expect_defined("expand", x, "input");
  return record_view(kExpand, x, raw_expand(x, shape));
}

Tensor unsqueeze(const Tensor& x, int64_t axis) {
  detail::expect_defined("unsqueeze", x, "input");
  return record_view(kReshape, x, raw_unsqueeze(x, axis));
}

Tensor squeeze(const Tensor& x, int64_t axis) {
  detail::expect_defined("squeeze", x, "input");
  return record_view(kReshape, x, raw_squeeze(x, axis));
}

Tensor contiguous(const Tensor& x) {
  detail::expect_defined("contiguous", x, "input");
  if (x.is_contiguous()) return x;
  return record_view(kContiguous, x, raw_clone(x));
}

Tensor detach(const Tensor& x) {
  detail::expect_defined("detach", x, "input");
  return raw_view(x, x.shape(), x.strides(), x.offset());
}

Tensor to_dtype(const Tensor& x, DType dtype) {
  detail::expect_defined("to_dtype", x, "input");
  if (x.dtype() == dtype) return x;
  return record_view(kToDtype, x, raw_to_dtype(x, dtype));
}

Tensor to_device(const Tensor& x, Device device) {
  detail::expect_defined("to_device", x, "input");
  if (x.device() == device) return x;
  return record_view(kToDevice, x, raw_to_device(x, device),
                     Attrs{.ints = {static_cast<int64_t>(x.device().type), x.device().index}});
}

}  // namespace gradus
