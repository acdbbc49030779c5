// Unary elementwise ops: forward through the "unary" kernel, backward through "unary_backward"
// (which may use the input x or the output y, whichever the derivative is cheaper in).
#include "autodiff/ops/common.h"
#include "autodiff/ops/elementwise.h"
#include "kernels/elementwise.h"

namespace gradus {

using kernels::UnaryOp;
using kernels::UnaryParams;

namespace {

void unary_backward_rule(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  const auto op = static_cast<UnaryOp>(r.attrs.ints[0]);
  const UnaryParams params{r.attrs.floats[0], r.attrs.floats[1]};
  if (op == UnaryOp::neg) {
    gi[0] = neg(go[0]);
    return;
  }
  // What was saved (see saved_for_backward): the kernel reads x and y only where the derivative
  // needs them, so a slot it ignores is filled with a tensor of the right shape.
  const Tensor& x = r.saved.empty() ? go[0] : r.saved[0];
  const Tensor& y = r.saved.size() < 2 ? x : r.saved[1];
  Tensor gx = detail::empty_like(go[0]);
  static const kernels::KernelRef<kernels::UnaryBackwardFn> kernel(kernels::kUnaryBackward);
  kernel(gx.device(), gx.dtype())(op, params, x, y, go[0], gx);
  gi[0] = gx;
}

// The tensors the backward keeps alive, as few as the derivative allows: affine's is the constant
// p0 (nothing); relu's reads x > 0, which is y > 0 (relu(NaN) is 0 on both backends), so its
// output, which the next op usually holds anyway, stands for x. Every other op keeps x and y.
std::vector<Tensor> saved_for_backward(UnaryOp op, const Tensor& x, const Tensor& out) {
  if (op == UnaryOp::affine) return {};
  if (op == UnaryOp::relu) return {out};
  return {x, out};
}

constexpr int kNumUnary = static_cast<int>(UnaryOp::leaky_relu) + 1;

const OpDef& unary_def(UnaryOp op) {
  std::string name = kernels::unary_op_name(op);
  return register_op({.name = name,
                      .family = "elementwise_unary",
                      .backward = unary_backward_rule,
                      .forward_kernels = {kernels::kUnary},
                      .backward_kernels = {kernels::kUnaryBackward},
                      .gradcheck = "Gradcheck." + name});
}

const std::vector<const OpDef*>& unary_defs() {
  static const std::vector<const OpDef*> defs = [] {
    std::vector<const OpDef*> d;
    for (int i = 0; i < kNumUnary; ++i) d.push_back(&unary_def(static_cast<UnaryOp>(i)));
    return d;
  }();
  return defs;
}
// Registers at load time so `gradus ops` lists every unary op before any is called.
const bool kRegistered = !unary_defs().empty();

Tensor unary(UnaryOp op, const Tensor& x, UnaryParams params = {}) {
  const char* name = kernels::unary_op_name(op);
  detail::expect_float_compatible(name, {&x});
  Tensor out = detail::empty_like(x);
  static const kernels::KernelRef<kernels::UnaryFn> kernel(kernels::kUnary);
  kernel(x.device(), x.dtype())(op, params, x, out);
  finish_op(*unary_defs()[static_cast<int>(op)], {x}, {out}, saved_for_backward(op, x, out),
            Attrs{.ints = {static_cast<int64_t>(op)}, .floats = {params.p0, params.p1}});
  return out;
}

}  // namespace

Tensor neg(const Tensor& x) { return unary(UnaryOp::neg, x); }
Tensor exp(const Tensor& x) { return unary(UnaryOp::exp, x); }
Tensor log(const Tensor& x) { return unary(UnaryOp::log, x); }
Tensor sqrt(const Tensor& x) { return unary(UnaryOp::sqrt, x); }
Tensor rsqrt(const Tensor& x) { return unary(UnaryOp::rsqrt, x); }
Tensor abs(const Tensor& x) { return unary(UnaryOp::abs, x); }
Tensor tanh(const Tensor& x) { return unary(UnaryOp::tanh, x); }
Tensor sigmoid(const Tensor& x) { return unary(UnaryOp::sigmoid, x); }
Tensor relu(const Tensor& x) { return unary(UnaryOp::relu, x); }
Tensor leaky_relu(const Tensor& x, double slope) {
  return unary(UnaryOp::leaky_relu, x, {slope, 0});
}
Tensor gelu(const Tensor& x, bool tanh_approximation) {
  return unary(tanh_approximation ? UnaryOp::gelu_tanh : UnaryOp::gelu_exact, x);
}
Tensor silu(const Tensor& x) { return unary(UnaryOp::silu, x); }
Tensor softplus(const Tensor& x, double beta, double threshold) {
  GRADUS_CHECK(beta > 0, "softplus", "beta must be positive, found {}", beta);
  return unary(UnaryOp::softplus, x, {beta, threshold});
}
Tensor clamp(const Tensor& x, double lo, double hi) {
  GRADUS_CHECK(lo <= hi, "clamp", "lower bound {} is above upper bound {}", lo, hi);
  return unary(UnaryOp::clamp, x, {lo, hi});
}
Tensor pow(const Tensor& x, double exponent) {
  return unary(UnaryOp::pow_scalar, x, {exponent, 0});
}
Tensor square(const Tensor& x) { return unary(UnaryOp::square, x); }
Tensor reciprocal(const Tensor& x) { return unary(UnaryOp::reciprocal, x); }
Tensor affine(const Tensor& x, double scale, double shift) {
  return unary(UnaryOp::affine, x, {scale, shift});
}

}  // namespace gradus
