// softmax and log_softmax: forward and backward are each one fused kernel over the input viewed as
// (outer, n, inner) with the softmax axis in the middle. Only the output y is saved.
#include "autodiff/ops/softmax.h"

#include "autodiff/autocast.h"
#include "autodiff/ops/common.h"
#include "kernels/softmax.h"

namespace gradus {

namespace {

void softmax_backward_rule(const Record& r, const std::vector<Tensor>& go,
                           std::vector<Tensor>& gi) {
  // saved: [y]; attrs.ints: [is_log, axis]
  const bool is_log = r.attrs.ints[0] != 0;
  const Tensor& y = r.saved[0];
  const detail::AxisLayout l = detail::axis_layout(y.shape(), r.attrs.ints[1]);
  Tensor g = raw_contiguous(go[0]);
  Tensor gx = detail::empty_like(y);
  using kernels::SoftmaxBackwardFn;
  static const kernels::KernelRef<SoftmaxBackwardFn> k_soft(kernels::kSoftmaxBackward);
  static const kernels::KernelRef<SoftmaxBackwardFn> k_log(kernels::kLogSoftmaxBackward);
  (is_log ? k_log : k_soft)(y.device(), y.dtype())(y.raw_data(), g.raw_data(), gx.raw_data(),
                                                   l.outer, l.n, l.inner);
  gi[0] = gx;
}

const OpDef& kSoftmax = register_op({.name = "softmax",
                                     .family = "softmax",
                                     .backward = softmax_backward_rule,
                                     .forward_kernels = {kernels::kSoftmaxForward},
                                     .backward_kernels = {kernels::kSoftmaxBackward},
                                     .gradcheck = "Gradcheck.softmax"});
const OpDef& kLogSoftmax = register_op({.name = "log_softmax",
                                        .family = "softmax",
                                        .backward = softmax_backward_rule,
                                        .forward_kernels = {kernels::kLogSoftmaxForward},
                                        .backward_kernels = {kernels::kLogSoftmaxBackward},
                                        .gradcheck = "Gradcheck.log_softmax"});

Tensor softmax_impl(bool is_log, const Tensor& x, int64_t axis_in) {
  const char* name = is_log ? "log_softmax" : "softmax";
  detail::expect_float_compatible(name, {&x});
  const int64_t axis = normalize_axis(axis_in, x.dim(), name);
  const detail::AxisLayout l = detail::axis_layout(x.shape(), axis);
  Tensor xc = raw_contiguous(x);
  Tensor y = detail::empty_like(x);
  static const kernels::KernelRef<kernels::SoftmaxFn> k_soft(kernels::kSoftmaxForward);
  static const kernels::KernelRef<kernels::SoftmaxFn> k_log(kernels::kLogSoftmaxForward);
  (is_log ? k_log : k_soft)(x.device(), x.dtype())(xc.raw_data(), y.raw_data(), l.outer, l.n,
                                                   l.inner);
  finish_op(is_log ? kLogSoftmax : kSoftmax, {x}, {y}, {y}, Attrs{.ints = {is_log ? 1 : 0, axis}});
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t axis) {
  return softmax_impl(false, detail::autocast_wide(x), axis);
}
Tensor log_softmax(const Tensor& x, int64_t axis) {
  return softmax_impl(true, detail::autocast_wide(x), axis);
}

}  // namespace gradus
