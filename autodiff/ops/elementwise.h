// Differentiable elementwise ops with NumPy broadcasting. Each takes tensors of one floating dtype on
// one device; a double argument is a scalar in the tensor's dtype.
#pragma once

#include "core/tensor.h"

namespace gradus {

// ---- binary (x: (...), y: (...) broadcast together -> (...)) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);  // ties split the gradient equally
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double s);
Tensor operator-(const Tensor& a, double s);
Tensor operator*(const Tensor& a, double s);
Tensor operator/(const Tensor& a, double s);
Tensor operator+(double s, const Tensor& a);
Tensor operator-(double s, const Tensor& a);
Tensor operator*(double s, const Tensor& a);
Tensor operator/(double s, const Tensor& a);
Tensor operator-(const Tensor& a);

// ---- unary (x: (...) -> (...)) ----
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);       // gradient sign(x), 0 at 0
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);      // gradient 0 at 0
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
Tensor gelu(const Tensor& x, bool tanh_approximation = false);
Tensor silu(const Tensor& x);
Tensor softplus(const Tensor& x, double beta = 1.0, double threshold = 20.0);
Tensor clamp(const Tensor& x, double lo, double hi);
Tensor pow(const Tensor& x, double exponent);
Tensor square(const Tensor& x);
Tensor reciprocal(const Tensor& x);
Tensor affine(const Tensor& x, double scale, double shift);  // scale * x + shift

// ---- selection ----
// out = cond != 0 ? a : b, all three broadcast together; gradients flow to a and b, not cond.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// out = mask != 0 ? value : x (mask broadcast to x's shape); gradient flows to x where mask == 0.
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

}  // namespace gradus
