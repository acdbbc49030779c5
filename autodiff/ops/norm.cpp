// rms_norm and layer_norm: one fused forward kernel that saves the per-row statistics, and one
// fused backward kernel that computes grad_x and the (deterministically reduced) weight / bias
// gradients.
#include "autodiff/ops/norm.h"

#include <cmath>

#include "autodiff/autocast.h"
#include "autodiff/ops/common.h"
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

}  // namespace

Tensor rms_norm(const Tensor& x_in, const Tensor& weight_in, double eps) {
  // Under autocast the statistics and the output are in the wide dtype.
  const Tensor x = detail::autocast_wide(x_in), weight = detail::autocast_wide(weight_in);
  check_norm_args("rms_norm", x, weight, "weight", eps);
  Tensor xc = raw_contiguous(x);
  Tensor w = contiguous_or_undefined(weight);
  const int64_t rows = leading_rows(x.shape());
  Tensor y = detail::empty_like(x);
  Tensor rstd = detail::empty_like({rows}, x);
  static const kernels::KernelRef<kernels::RmsNormForwardFn> kernel(kernels::kRmsNormForward);
  kernel(x.device(), x.dtype())(xc.raw_data(), data_or_null(w), y.raw_data(), rstd.raw_data(), rows,
                                x.shape().back(), eps);
  finish_op(kRmsNorm, {x, weight}, {y}, {xc, w, rstd}, Attrs{.floats = {eps}});
  return y;
}

Tensor layer_norm(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in,
                  double eps) {
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
