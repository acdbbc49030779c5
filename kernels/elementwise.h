// Elementwise kernels: unary (with scalar parameters), binary with broadcasting, and ternary where.
//
// Conventions shared by every backend:
// - Inputs are views already expanded to the output's shape (stride 0 on broadcast axes) and may be
//   non-contiguous; the output is contiguous and freshly allocated (or aliases a contiguous input of
//   the same shape, which the kernels allow).
// - Backward kernels write the gradient for each input in the output's (broadcast) shape; the autodiff
//   engine reduces it back to the input's shape. A gradient tensor passed undefined is not wanted.
#pragma once

#include "core/tensor.h"

namespace gradus::kernels {

// ---- binary: out = op(a, b) ----
enum class BinaryOp : int { add, sub, mul, div, maximum, minimum, pow };
const char* binary_op_name(BinaryOp op);

// a, b, out: (...) = out's shape
using BinaryFn = void (*)(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out);
// grad_a = d op / d a * grad_out, grad_b = d op / d b * grad_out; all (...) = out's shape.
// maximum/minimum split the gradient equally between a and b at ties (as PyTorch does).
using BinaryBackwardFn = void (*)(BinaryOp op, const Tensor& a, const Tensor& b,
                                  const Tensor& grad_out, const Tensor& grad_a,
                                  const Tensor& grad_b);
inline constexpr const char* kBinary = "binary";
inline constexpr const char* kBinaryBackward = "binary_backward";

// ---- unary: out = op(x; params) ----
enum class UnaryOp : int {
  neg, exp, log, sqrt, rsqrt, abs, tanh, sigmoid, relu,
  gelu_tanh,   // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  gelu_exact,  // 0.5 x (1 + erf(x / sqrt(2)))
  silu,        // x sigmoid(x)
  softplus,    // (1/beta) log(1 + exp(beta x)); linear above threshold (p0 = beta, p1 = threshold)
  clamp,       // min(max(x, p0), p1); gradient 1 inside [p0, p1], 0 outside
  pow_scalar,  // x^p0
  affine,      // p0 * x + p1  (scalar add / mul / sub / rsub)
  square,      // x^2
  reciprocal,  // 1 / x
  leaky_relu,  // x > 0 ? x : p0 x
};
const char* unary_op_name(UnaryOp op);
struct UnaryParams {
  double p0 = 0.0;
  double p1 = 0.0;
};
// x, out: (...) same shape
using UnaryFn = void (*)(UnaryOp op, UnaryParams params, const Tensor& x, const Tensor& out);
// grad_x = d op / d x * grad_out; x is the input, out the forward output (rules use whichever is
// cheaper); all (...) same shape.
using UnaryBackwardFn = void (*)(UnaryOp op, UnaryParams params, const Tensor& x, const Tensor& out,
                                 const Tensor& grad_out, const Tensor& grad_x);
inline constexpr const char* kUnary = "unary";
inline constexpr const char* kUnaryBackward = "unary_backward";

// ---- where: out = cond != 0 ? a : b ----
// cond, a, b, out: (...) = out's shape; cond has the dtype of a and b (1 / 0 masks) or i64.
using WhereFn = void (*)(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out);
inline constexpr const char* kWhere = "where";

}  // namespace gradus::kernels
