// CPU unary elementwise kernels (see kernels/elementwise.h for the conventions).
#include <cmath>

#include "core/strided_loop.h"
#include "kernels/elementwise.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/registry.h"

namespace gradus::kernels {

const char* unary_op_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::neg: return "neg";
    case UnaryOp::exp: return "exp";
    case UnaryOp::log: return "log";
    case UnaryOp::sqrt: return "sqrt";
    case UnaryOp::rsqrt: return "rsqrt";
    case UnaryOp::abs: return "abs";
    case UnaryOp::tanh: return "tanh";
    case UnaryOp::sigmoid: return "sigmoid";
    case UnaryOp::relu: return "relu";
    case UnaryOp::gelu_tanh: return "gelu_tanh";
    case UnaryOp::gelu_exact: return "gelu";
    case UnaryOp::silu: return "silu";
    case UnaryOp::softplus: return "softplus";
    case UnaryOp::clamp: return "clamp";
    case UnaryOp::pow_scalar: return "pow_scalar";
    case UnaryOp::affine: return "affine";
    case UnaryOp::square: return "square";
    case UnaryOp::reciprocal: return "reciprocal";
    case UnaryOp::leaky_relu: return "leaky_relu";
  }
  return "?";
}

namespace cpu {
namespace {

template <class T> T sigmoid_of(T x) { return T(1) / (T(1) + vexp(-x)); }

constexpr double kSqrt2OverPi = 0.7978845608028654;  // sqrt(2 / pi)
constexpr double kInvSqrt2 = 0.7071067811865476;     // 1 / sqrt(2)
constexpr double kInvSqrt2Pi = 0.3989422804014327;   // 1 / sqrt(2 pi)

template <class T, class F> void unary_loop(const Tensor& x, const Tensor& out, F f) {
  const T* px = static_cast<const T*>(x.raw_data());
  T* po = static_cast<T*>(out.raw_data());
  const int64_t n = out.numel();
  if (x.is_contiguous()) {
#pragma omp parallel for simd if (n > (1 << 15)) schedule(static)
    for (int64_t i = 0; i < n; ++i) po[i] = f(px[i]);
    return;
  }
  strided_loop_2(out.shape(), out.strides(), x.strides(),
                 [&](int64_t o, int64_t i) { po[o] = f(px[i]); });
}

template <class T> void unary(UnaryOp op, UnaryParams p, const Tensor& x, const Tensor& out) {
  const T p0 = static_cast<T>(p.p0), p1 = static_cast<T>(p.p1);
  switch (op) {
    case UnaryOp::neg: return unary_loop<T>(x, out, [](T v) { return -v; });
    case UnaryOp::exp: return unary_loop<T>(x, out, [](T v) { return vexp(v); });
    case UnaryOp::log: return unary_loop<T>(x, out, [](T v) { return std::log(v); });
    case UnaryOp::sqrt: return unary_loop<T>(x, out, [](T v) { return std::sqrt(v); });
    case UnaryOp::rsqrt: return unary_loop<T>(x, out, [](T v) { return T(1) / std::sqrt(v); });
    case UnaryOp::abs: return unary_loop<T>(x, out, [](T v) { return std::abs(v); });
    case UnaryOp::tanh: return unary_loop<T>(x, out, [](T v) { return std::tanh(v); });
    case UnaryOp::sigmoid: return unary_loop<T>(x, out, [](T v) { return sigmoid_of(v); });
    case UnaryOp::relu: return unary_loop<T>(x, out, [](T v) { return v > T(0) ? v : T(0); });
    case UnaryOp::leaky_relu:
      return unary_loop<T>(x, out, [p0](T v) { return v > T(0) ? v : p0 * v; });
    case UnaryOp::gelu_tanh:
      return unary_loop<T>(x, out, [](T v) {
        T inner = T(kSqrt2OverPi) * (v + T(0.044715) * v * v * v);
        return T(0.5) * v * (T(1) + std::tanh(inner));
      });
    case UnaryOp::gelu_exact:
      return unary_loop<T>(x, out,
                           [](T v) { return T(0.5) * v * (T(1) + std::erf(v * T(kInvSqrt2))); });
    case UnaryOp::silu: return unary_loop<T>(x, out, [](T v) { return v * sigmoid_of(v); });
    case UnaryOp::softplus:
      // (1/beta) log1p(exp(beta x)), linear where beta x > threshold (as torch.nn.functional.softplus).
      return unary_loop<T>(x, out, [p0, p1](T v) {
        T bx = p0 * v;
        return bx > p1 ? v : std::log1p(vexp(bx)) / p0;
      });
    case UnaryOp::clamp:
      return unary_loop<T>(x, out, [p0, p1](T v) { return v < p0 ? p0 : (v > p1 ? p1 : v); });
    case UnaryOp::pow_scalar: return unary_loop<T>(x, out, [p0](T v) { return std::pow(v, p0); });
    case UnaryOp::affine: return unary_loop<T>(x, out, [p0, p1](T v) { return p0 * v + p1; });
    case UnaryOp::square: return unary_loop<T>(x, out, [](T v) { return v * v; });
    case UnaryOp::reciprocal: return unary_loop<T>(x, out, [](T v) { return T(1) / v; });
  }
}

// grad_x[i] = f(x[i], out[i], grad_out[i]); grad_x is contiguous, the others may be strided.
template <class T, class F>
void unary_backward_loop(const Tensor& x, const Tensor& out, const Tensor& g, const Tensor& gx, F f) {
  const T* px = static_cast<const T*>(x.raw_data());
  const T* po = static_cast<const T*>(out.raw_data());
  const T* pg = static_cast<const T*>(g.raw_data());
  T* pgx = static_cast<T*>(gx.raw_data());
  const int64_t n = gx.numel();
  if (x.is_contiguous() && out.is_contiguous() && g.is_contiguous()) {
#pragma omp parallel for simd if (n > (1 << 15)) schedule(static)
    for (int64_t i = 0; i < n; ++i) pgx[i] = f(px[i], po[i], pg[i]);
    return;
  }
  strided_loop<4>(gx.shape(), {&gx.strides(), &x.strides(), &out.strides(), &g.strides()},
                  [&](const std::array<int64_t, 4>& o) { pgx[o[0]] = f(px[o[1]], po[o[2]], pg[o[3]]); });
}

template <class T>
void unary_backward(UnaryOp op, UnaryParams p, const Tensor& x, const Tensor& out, const Tensor& g,
                    const Tensor& gx) {
  const T p0 = static_cast<T>(p.p0), p1 = static_cast<T>(p.p1);
  auto run = [&](auto f) { unary_backward_loop<T>(x, out, g, gx, f); };
  switch (op) {
    case UnaryOp::neg: return run([](T, T, T go) { return -go; });
    case UnaryOp::exp: return run([](T, T y, T go) { return go * y; });
    case UnaryOp::log: return run([](T v, T, T go) { return go / v; });
    case UnaryOp::sqrt: return run([](T, T y, T go) { return go / (T(2) * y); });
    case UnaryOp::rsqrt: return run([](T v, T y, T go) { return go * T(-0.5) * y / v; });
    case UnaryOp::abs:
      return run([](T v, T, T go) { return v > T(0) ? go : (v < T(0) ? -go : T(0)); });
    case UnaryOp::tanh: return run([](T, T y, T go) { return go * (T(1) - y * y); });
    case UnaryOp::sigmoid: return run([](T, T y, T go) { return go * y * (T(1) - y); });
    case UnaryOp::relu: return run([](T v, T, T go) { return v > T(0) ? go : T(0); });
    case UnaryOp::leaky_relu: return run([p0](T v, T, T go) { return v > T(0) ? go : p0 * go; });
    case UnaryOp::gelu_tanh:
      return run([](T v, T, T go) {
        T inner = T(kSqrt2OverPi) * (v + T(0.044715) * v * v * v);
        T t = std::tanh(inner);
        T d_inner = T(kSqrt2OverPi) * (T(1) + T(3 * 0.044715) * v * v);
        return go * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * d_inner);
      });
    case UnaryOp::gelu_exact:
      return run([](T v, T, T go) {
        T cdf = T(0.5) * (T(1) + std::erf(v * T(kInvSqrt2)));
        T pdf = T(kInvSqrt2Pi) * vexp(T(-0.5) * v * v);
        return go * (cdf + v * pdf);
      });
    case UnaryOp::silu:
      return run([](T v, T, T go) {
        T s = sigmoid_of(v);
        return go * s * (T(1) + v * (T(1) - s));
      });
    case UnaryOp::softplus:
      return run([p0, p1](T v, T, T go) {
        T bx = p0 * v;
        return bx > p1 ? go : go * sigmoid_of(bx);
      });
    case UnaryOp::clamp:
      return run([p0, p1](T v, T, T go) { return (v >= p0 && v <= p1) ? go : T(0); });
    case UnaryOp::pow_scalar:
      return run([p0](T v, T, T go) { return p0 == T(0) ? T(0) : go * p0 * std::pow(v, p0 - T(1)); });
    case UnaryOp::affine: return run([p0](T, T, T go) { return go * p0; });
    case UnaryOp::square: return run([](T v, T, T go) { return go * T(2) * v; });
    case UnaryOp::reciprocal: return run([](T, T y, T go) { return -go * y * y; });
  }
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kUnary, unary);
GRADUS_REGISTER_CPU_KERNEL(kUnaryBackward, unary_backward);

}  // namespace cpu
}  // namespace gradus::kernels
