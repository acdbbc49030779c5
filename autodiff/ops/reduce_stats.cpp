// var and logsumexp along axes, each one fused kernel ("reduce_var", "reduce_logsumexp"); the
// backward rules are short compositions of elementwise ops on the saved input and statistics.
#include <algorithm>

#include "autodiff/ops/common.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "kernels/elementwise.h"
#include "kernels/reduce.h"

namespace gradus {

namespace {

// The upstream gradient of a reduction in its keepdim shape, so it broadcasts against x.
Tensor keepdim_grad(const Record& r, const Tensor& g, const std::vector<int64_t>& axes) {
  return raw_try_reshape_view(raw_contiguous(g),
                              detail::reduced_shape(r.input_shapes[0], axes, true));
}

// ---- var ----

void var_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  // saved: [x, mean (keepdim)]; attrs.ints: [axes...]; attrs.floats: [divisor]
  // d var / d x_i = 2 (x_i - mean) / divisor (the mean's own dependence on x_i sums to zero).
  const std::vector<int64_t> axes(r.attrs.ints.begin(), r.attrs.ints.end());
  Tensor g = keepdim_grad(r, go[0], axes);
  gi[0] = (r.saved[0] - r.saved[1]) * (g * (2.0 / r.attrs.floats[0]));
}

const OpDef& kVar = register_op({.name = "var",
                                 .family = "reduce_stats",
                                 .backward = var_backward,
                                 .forward_kernels = {kernels::kReduceVar},
                                 .backward_kernels = {kernels::kBinary, kernels::kUnary},
                                 .gradcheck = "Gradcheck.var"});

// ---- logsumexp ----

void logsumexp_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  // saved: [x, out (keepdim)]; attrs.ints: [axes...]. d lse / d x_i = exp(x_i - lse) = softmax.
  const std::vector<int64_t> axes(r.attrs.ints.begin(), r.attrs.ints.end());
  Tensor g = keepdim_grad(r, go[0], axes);
  gi[0] = exp(r.saved[0] - r.saved[1]) * g;
}

const OpDef& kLogSumExp = register_op({.name = "logsumexp",
                                       .family = "reduce_stats",
                                       .backward = logsumexp_backward,
                                       .forward_kernels = {kernels::kReduceLogSumExp},
                                       .backward_kernels = {kernels::kBinary, kernels::kUnary},
                                       .gradcheck = "Gradcheck.logsumexp"});

}  // namespace

// x: (...) -> (...) without the reduced axes. Two passes per output (mean, then squared
// deviations), divided by max(N - correction, 0) where N is the number of reduced elements.
Tensor var(const Tensor& x, const std::vector<int64_t>& axes_in, bool keepdim, int64_t correction) {
  detail::expect_float_compatible("var", {&x});
  GRADUS_CHECK(correction >= 0, "var", "correction must be >= 0, found {} (for {})", correction,
               x.describe());
  const std::vector<int64_t> axes = detail::reduction_axes(x, axes_in, "var");
  const detail::ReduceLayout l = detail::reduce_layout(x.shape(), axes);
  const Tensor src = detail::reduce_source(x, l);
  const double divisor = static_cast<double>(std::max<int64_t>(l.reduce - correction, 0));
  const Shape keep_shape = detail::reduced_shape(x.shape(), axes, true);
  Tensor mean_keep = detail::empty_like(keep_shape, x);
  Tensor out = detail::empty_like(keep_shape, x);
  static const kernels::KernelRef<kernels::VarFn> kernel(kernels::kReduceVar);
  kernel(x.device(), x.dtype())(src.raw_data(), mean_keep.raw_data(), out.raw_data(), l.outer,
                                l.reduce, l.inner, divisor);
  if (!keepdim) out = raw_try_reshape_view(out, detail::reduced_shape(x.shape(), axes, false));
  finish_op(kVar, {x}, {out}, {x, mean_keep}, Attrs{.ints = axes, .floats = {divisor}});
  return out;
}

// x: (...) -> (...) without the reduced axes; log(sum(exp(x))) with the maximum subtracted first.
// An empty reduction gives -inf (the log of an empty sum).
Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& axes_in, bool keepdim) {
  detail::expect_float_compatible("logsumexp", {&x});
  const std::vector<int64_t> axes = detail::reduction_axes(x, axes_in, "logsumexp");
  const detail::ReduceLayout l = detail::reduce_layout(x.shape(), axes);
  const Tensor src = detail::reduce_source(x, l);
  const Shape keep_shape = detail::reduced_shape(x.shape(), axes, true);
  Tensor out_keep = detail::empty_like(keep_shape, x);
  static const kernels::KernelRef<kernels::LogSumExpFn> kernel(kernels::kReduceLogSumExp);
  kernel(x.device(), x.dtype())(src.raw_data(), out_keep.raw_data(), l.outer, l.reduce, l.inner);
  Tensor out = keepdim
                   ? out_keep
                   : raw_try_reshape_view(out_keep, detail::reduced_shape(x.shape(), axes, false));
  finish_op(kLogSumExp, {x}, {out}, {x, out_keep}, Attrs{.ints = axes});
  return out;
}

}  // namespace gradus
