// rms_norm and layer_norm: one fused forward kernel that saves the per-row statistics, and one
// fused backward kernel that computes grad_x and the (deterministically reduced) weight / bias
// gradients.
#include "autodiff/ops/norm.h"

#include <cmath>

#include "autodiff/autocast.h"
#include "autodiff/ops/common.h"
#include "autodiff/ops/elementwise.h"
#include "core/env_switch.h"
#include "core/float_width.h"
#include "kernels/norm.h"

namespace gradus {

namespace {

// Product of every axis but the last: the number of normalised rows.
int64_t leading_rows(const Shape& shape) {
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < shape.size(); ++d) rows *= shape[d];
  return rows;
}

const void* data_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }
void* mutable_data_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }
Tensor contiguous_or_undefined(const Tensor& t) { return t.defined() ? raw_contiguous(t) : t; }

// Under mixed precision a norm's output is read by products in the compute dtype: the kernel
// writes that copy in its own pass (offered to the guard after the op), so no product casts it.
// Undefined outside autocast, or where the compute dtype is not the next narrower one.
// y: (..., C) -> the same shape in the compute dtype.
Tensor narrow_copy_for_products(const Tensor& y) {
  const std::optional<DType> narrow = detail::autocast_narrow_copy_dtype(y.dtype());
  return narrow ? Tensor::empty(y.shape(), *narrow, y.device()) : Tensor();
}

// Checks x: (..., C) and the optional per-channel parameter p: (C).
void check_norm_args(const char* op, const Tensor& x, const Tensor& p, const char* what,
                     double eps) {
  detail::expect_defined(op, x, "x");
  detail::expect_float_compatible(op, {&x});
  GRADUS_CHECK(x.dim() >= 1, op,
               "x must have at least one axis (normalised over the last), found {}", x.describe());
  GRADUS_CHECK(std::isfinite(eps) && eps >= 0, op, "eps must be finite and >= 0, found {}", eps);
  if (!p.defined()) return;
  detail::expect_float_compatible(op, {&x, &p});
  const int64_t c = x.shape().back();
  GRADUS_CHECK(p.dim() == 1 && p.shape()[0] == c, op,
               "{} must have shape {} to match the last axis of x {}, found {}", what,
               shape_str({c}), x.describe(), p.describe());
}

// ---------------------------------------------------------------- rms_norm
// inputs: x, weight; saved: x (contiguous), weight (contiguous or undefined), rstd: (rows).
void rms_norm_backward_rule(const Record& r, const std::vector<Tensor>& go,
                            std::vector<Tensor>& gi) {
  const Tensor& x = r.saved[0];
  const Tensor& w = r.saved[1];
  const Tensor& rstd = r.saved[2];
  Tensor gy = raw_contiguous(go[0]);
  Tensor gx, gw;
  if (r.input_requires_grad(0)) gx = detail::empty_like(x);
  if (r.input_requires_grad(1)) gw = detail::empty_like(w);
  static const kernels::KernelRef<kernels::RmsNormBackwardFn> kernel(kernels::kRmsNormBackward);
  kernel(x.device(), x.dtype())(x.raw_data(), data_or_null(w), rstd.raw_data(), gy.raw_data(),
                                mutable_data_or_null(gx), mutable_data_or_null(gw),
                                leading_rows(x.shape()), x.shape().back());
  gi[0] = gx;
  gi[1] = gw;
}

const OpDef& kRmsNorm = register_op({.name = "rms_norm",
                                     .family = "norm",
                                     .backward = rms_norm_backward_rule,
                                     .forward_kernels = {kernels::kRmsNormForward},
                                     .backward_kernels = {kernels::kRmsNormBackward},
                                     .gradcheck = "Gradcheck.rms_norm"});

// ---------------------------------------------------------------- layer_norm
// inputs: x, weight, bias; saved: x (contiguous), weight (contiguous or undefined), mean, rstd.
void layer_norm_backward_rule(const Record& r, const std::vector<Tensor>& go,
                              std::vector<Tensor>& gi) {
  const Tensor& x = r.saved[0];
  const Tensor& w = r.saved[1];
  const Tensor& mean = r.saved[2];
  const Tensor& rstd = r.saved[3];
  Tensor gy = raw_contiguous(go[0]);
  const int64_t cols = x.shape().back();
  Tensor gx, gw, gb;
  if (r.input_requires_grad(0)) gx = detail::empty_like(x);
  if (r.input_requires_grad(1)) gw = detail::empty_like(w);
  if (r.input_requires_grad(2)) gb = detail::empty_like({cols}, x);
  static const kernels::KernelRef<kernels::LayerNormBackwardFn> kernel(kernels::kLayerNormBackward);
  kernel(x.device(), x.dtype())(x.raw_data(), data_or_null(w), mean.raw_data(), rstd.raw_data(),
                                gy.raw_data(), mutable_data_or_null(gx), mutable_data_or_null(gw),
                                mutable_data_or_null(gb), leading_rows(x.shape()), cols);
  gi[0] = gx;
  gi[1] = gw;
  gi[2] = gb;
}

const OpDef& kLayerNorm = register_op({.name = "layer_norm",
                                       .family = "norm",
                                       .backward = layer_norm_backward_rule,
                                       .forward_kernels = {kernels::kLayerNormForward},
                                       .backward_kernels = {kernels::kLayerNormBackward},
                                       .gradcheck = "Gradcheck.layer_norm"});

// ---------------------------------------------------------------- add_rms_norm
// inputs: x, delta, weight; outputs: sum, y; saved: sum, weight (contiguous or undefined), rstd.
void add_rms_norm_backward_rule(const Record& r, const std::vector<Tensor>& go,
                                std::vector<Tensor>& gi) {
  const Tensor& sum = r.saved[0];
  const Tensor& w = r.saved[1];
  const Tensor& rstd = r.saved[2];
  const DType delta_dtype = r.input_dtypes[1];
  const Tensor gsum = go[0].defined() ? raw_contiguous(go[0]) : Tensor();
  if (!go[1].defined()) {  // only sum was used: its gradient passes to x and delta
    gi[0] = detail::in_dtype(gsum, r.input_dtypes[0]);
    gi[1] = detail::in_dtype(gsum, delta_dtype);
    return;
  }
  const Tensor gy = raw_contiguous(go[1]);
  const bool want_x = r.input_requires_grad(0), want_delta = r.input_requires_grad(1);
  const bool same_dtype = delta_dtype == sum.dtype();
  // With one dtype the two gradients are equal: one buffer serves both.
  Tensor gx = want_x || (want_delta && same_dtype) ? detail::empty_like(sum) : Tensor();
  Tensor gdelta =
      want_delta && !same_dtype ? Tensor::empty(sum.shape(), delta_dtype, sum.device()) : Tensor();
  Tensor gw = r.input_requires_grad(2) ? detail::empty_like(w) : Tensor();
  static const kernels::KernelRef<kernels::AddRmsNormBackwardFn> kernel(
      kernels::kAddRmsNormBackward);
  kernel(sum.device(), sum.dtype())(
      sum.raw_data(), data_or_null(w), rstd.raw_data(), gy.raw_data(), data_or_null(gsum),
      mutable_data_or_null(gx), mutable_data_or_null(gdelta), delta_dtype, mutable_data_or_null(gw),
      leading_rows(sum.shape()), sum.shape().back());
  if (want_x) gi[0] = gx;
  if (want_delta) gi[1] = same_dtype ? gx : gdelta;
  gi[2] = gw;
}

const OpDef& kAddRmsNorm = register_op({.name = "add_rms_norm",
                                        .family = "norm",
                                        .backward = add_rms_norm_backward_rule,
                                        .forward_kernels = {kernels::kAddRmsNormForward},
                                        .backward_kernels = {kernels::kAddRmsNormBackward},
                                        .gradcheck = "Gradcheck.add_rms_norm"});

EnvSwitch& fused_norm_switch() {
  static EnvSwitch on("GRADUS_FUSED_NORM");
  return on;
}

}  // namespace

void set_fused_norm(bool on) { fused_norm_switch().set(on); }
bool fused_norm_enabled() { return fused_norm_switch().on(); }

SumAndNorm add_rms_norm(const Tensor& x, const Tensor& delta, const Tensor& weight_in, double eps) {
  const char* op = "add_rms_norm";
  detail::expect_defined(op, x, "x");
  detail::expect_defined(op, delta, "delta");
  const std::optional<AutocastState> autocast = autocast_state();
  const Tensor weight = detail::autocast_wide(weight_in);
  // The kernel adds delta of x's dtype, or of the next narrower one under autocast, to x kept in
  // autocast's wide dtype (what rms_norm reads the sum in): anything else is the composite's.
  const bool dtypes_fit = is_floating(x.dtype()) &&
                          (delta.dtype() == x.dtype() ||
                           (autocast.has_value() && is_next_narrower(delta.dtype(), x.dtype()))) &&
                          (!autocast.has_value() || x.dtype() == autocast->wide) &&
                          (!weight.defined() || weight.dtype() == x.dtype());
  if (!fused_norm_enabled() || !dtypes_fit || x.shape() != delta.shape() || x.dim() < 1 ||
      x.device() != delta.device() ||
      !kernels::supports(kernels::kAddRmsNormForward, x.device().type, x.dtype())) {
    Tensor sum = x + delta;
    return {sum, rms_norm(sum, weight_in, eps)};
  }
  check_norm_args(op, x, weight, "weight", eps);
  const Tensor xc = raw_contiguous(x), dc = raw_contiguous(delta);
  const Tensor w = contiguous_or_undefined(weight);
  const int64_t rows = leading_rows(x.shape());
  Tensor sum = detail::empty_like(x), y = detail::empty_like(x);
  Tensor rstd = detail::empty_like({rows}, x);
  const Tensor y_narrow = narrow_copy_for_products(y);
  static const kernels::KernelRef<kernels::AddRmsNormForwardFn> kernel(kernels::kAddRmsNormForward);
  kernel(x.device(), x.dtype())(xc.raw_data(), dc.raw_data(), dc.dtype(), data_or_null(w),
                                sum.raw_data(), y.raw_data(), rstd.raw_data(), rows,
                                x.shape().back(), eps, mutable_data_or_null(y_narrow),
                                y_narrow.defined() ? y_narrow.dtype() : y.dtype());
  finish_op(kAddRmsNorm, {x, delta, weight}, {sum, y}, {sum, w, rstd}, Attrs{.floats = {eps}});
  if (y_narrow.defined()) detail::autocast_offer_cast(y, y_narrow);
  return {sum, y};
}

Tensor rms_norm(const Tensor& x_in, const Tensor& weight_in, double eps) {
  // Under autocast the statistics and the output are in the wide dtype.
  const Tensor x = detail::autocast_wide(x_in), weight = detail::autocast_wide(weight_in);
  check_norm_args("rms_norm", x, weight, "weight", eps);
  Tensor xc = raw_contiguous(x);
  Tensor w = contiguous_or_undefined(weight);
  const int64_t rows = leading_rows(x.shape());
  Tensor y = detail::empty_like(x);
  Tensor rstd = detail::empty_like({rows}, x);
  const Tensor y_narrow = narrow_copy_for_products(y);
  static const kernels::KernelRef<kernels::RmsNormForwardFn> kernel(kernels::kRmsNormForward);
  kernel(x.device(), x.dtype())(xc.raw_data(), data_or_null(w), y.raw_data(), rstd.raw_data(), rows,
                                x.shape().back(), eps, mutable_data_or_null(y_narrow),
                                y_narrow.defined() ? y_narrow.dtype() : y.dtype());
  finish_op(kRmsNorm, {x, weight}, {y}, {xc, w, rstd}, Attrs{.floats = {eps}});
  if (y_narrow.defined()) detail::autocast_offer_cast(y, y_narrow);
  return y;
}

Tensor layer_norm(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in, double eps) {
  const Tensor x = detail::autocast_wide(x_in), weight = detail::autocast_wide(weight_in),
               bias = detail::autocast_wide(bias_in);
  check_norm_args("layer_norm", x, weight, "weight", eps);
  check_norm_args("layer_norm", x, bias, "bias", eps);
  Tensor xc = raw_contiguous(x);
  Tensor w = contiguous_or_undefined(weight);
  Tensor b = contiguous_or_undefined(bias);
  const int64_t rows = leading_rows(x.shape());
  Tensor y = detail::empty_like(x);
  Tensor mean = detail::empty_like({rows}, x);
  Tensor rstd = detail::empty_like({rows}, x);
  static const kernels::KernelRef<kernels::LayerNormForwardFn> kernel(kernels::kLayerNormForward);
  kernel(x.device(), x.dtype())(xc.raw_data(), data_or_null(w), data_or_null(b), y.raw_data(),
                                mean.raw_data(), rstd.raw_data(), rows, x.shape().back(), eps);
  finish_op(kLayerNorm, {x, weight, bias}, {y}, {xc, w, mean, rstd}, Attrs{.floats = {eps}});
  return y;
}

}  // namespace gradus
