// softmax and log_softmax: forward and backward are each one fused kernel over the input viewed as
// (outer, n, inner) with the softmax axis in the middle. Only the output y is saved.
#include "autodiff/ops/softmax.h"

#include "autodiff/ops/common.h"
#include "kernels/softmax.h"

namespace gradus {

namespace {

// x: (d0, ..., d_{k-1}) viewed as (outer, n, inner) around axis a: outer = d0 * ... * d_{a-1},
// n = d_a, inner = d_{a+1} * ... * d_{k-1}. A rank-0 tensor is a single row of one element.
struct RowLayout {
  int64_t outer = 1, n = 1, inner = 1;
};

RowLayout row_layout(const Shape& shape, int64_t axis) {
  RowLayout l;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    if (d < axis)
      l.outer *= shape[d];
    else if (d == axis)
      l.n = shape[d];
    else
      l.inner *= shape[d];
  }
  return l;
}

void softmax_backward_rule(const Record& r, const std::vector<Tensor>& go,
                           std::vector<Tensor>& gi) {
  // saved: [y]; attrs.ints: [is_log, axis]
  const bool is_log = r.attrs.ints[0] != 0;
  const Tensor& y = r.saved[0];
  const RowLayout l = row_layout(y.shape(), r.attrs.ints[1]);
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
  const RowLayout l = row_layout(x.shape(), axis);
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

Tensor softmax(const Tensor& x, int64_t axis) { return softmax_impl(false, x, axis); }
Tensor log_softmax(const Tensor& x, int64_t axis) { return softmax_impl(true, x, axis); }

}  // namespace gradus
