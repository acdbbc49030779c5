// max and min along axes. The forward records, for every output element, the position of the
// extreme along the reduced axes (the first one among ties; the first NaN when there is one, and
// the NaN propagates), and the backward sends the whole gradient to that one position. This is
// PyTorch's rule for max(dim) / min(dim); PyTorch's full reduction x.max() instead splits the
// gradient evenly among ties, which gradus does not do.
#include <algorithm>

#include "autodiff/ops/common.h"
#include "autodiff/ops/reduce.h"
#include "kernels/reduce.h"

namespace gradus {

namespace {

void extreme_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  // saved: [index (keepdim shape, i64)]; attrs.ints: [is_max, axes...]
  const Shape& in_shape = r.input_shapes[0];
  const std::vector<int64_t> axes(r.attrs.ints.begin() + 1, r.attrs.ints.end());
  const detail::ReduceLayout l = detail::reduce_layout(in_shape, axes);
  Tensor g = raw_contiguous(go[0]);
  // The gradient in the kernel's layout: x's shape, or its permutation (kept..., reduced...).
  Shape work_shape = in_shape;
  for (size_t j = 0; j < l.perm.size(); ++j) work_shape[j] = in_shape[l.perm[j]];
  Tensor gx = Tensor::empty(work_shape, g.dtype(), g.device());
  static const kernels::KernelRef<kernels::ArgExtremeBackwardFn> kernel(
      kernels::kReduceArgExtremeBackward);
  kernel(g.device(), g.dtype())(g.raw_data(), r.saved[0].data<int64_t>(), gx.raw_data(), l.outer,
                                l.reduce, l.inner);
  if (!l.perm.empty()) {
    std::vector<int64_t> inverse(l.perm.size());
    for (size_t j = 0; j < l.perm.size(); ++j) inverse[l.perm[j]] = static_cast<int64_t>(j);
    gx = raw_contiguous(raw_permute(gx, inverse));
  }
  gi[0] = gx;
}

const OpDef& kMax = register_op({.name = "max",
                                 .family = "reduce_extrema",
                                 .backward = extreme_backward,
                                 .forward_kernels = {kernels::kReduceArgExtreme},
                                 .backward_kernels = {kernels::kReduceArgExtremeBackward},
                                 .gradcheck = "Gradcheck.max"});
const OpDef& kMin = register_op({.name = "min",
                                 .family = "reduce_extrema",
                                 .backward = extreme_backward,
                                 .forward_kernels = {kernels::kReduceArgExtreme},
                                 .backward_kernels = {kernels::kReduceArgExtremeBackward},
                                 .gradcheck = "Gradcheck.min"});

// x: (...) -> (...) without the reduced axes (size 1 with keepdim).
Tensor extreme(bool is_max, const Tensor& x, const std::vector<int64_t>& axes_in, bool keepdim) {
  const char* name = is_max ? "max" : "min";
  detail::expect_float_compatible(name, {&x});
  const std::vector<int64_t> axes = detail::reduction_axes(x, axes_in, name);
  const detail::ReduceLayout l = detail::reduce_layout(x.shape(), axes);
  GRADUS_CHECK(l.reduce > 0 || l.outer * l.inner == 0, name,
               "cannot reduce {} over axes {}: a reduced axis is empty and max/min has no "
               "identity",
               x.describe(), shape_str(axes));
  Tensor src = detail::reduce_source(x, l);
  const Shape keep_shape = detail::reduced_shape(x.shape(), axes, true);
  Tensor out = Tensor::empty(keep_shape, x.dtype(), x.device());
  Tensor index = Tensor::empty(keep_shape, DType::i64, x.device());
  static const kernels::KernelRef<kernels::ArgExtremeFn> kernel(kernels::kReduceArgExtreme);
  kernel(x.device(), x.dtype())(is_max, src.raw_data(), out.raw_data(), index.data<int64_t>(),
                                l.outer, l.reduce, l.inner);
  if (!keepdim) out = raw_try_reshape_view(out, detail::reduced_shape(x.shape(), axes, false));
  Attrs attrs;
  attrs.ints.push_back(is_max ? 1 : 0);
  attrs.ints.insert(attrs.ints.end(), axes.begin(), axes.end());
  finish_op(is_max ? kMax : kMin, {x}, {out}, {index}, std::move(attrs));
  return out;
}

}  // namespace

Tensor max(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  return extreme(true, x, axes, keepdim);
}
Tensor min(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  return extreme(false, x, axes, keepdim);
}

}  // namespace gradus
