// CPU binary elementwise kernels (see kernels/elementwise.h for the conventions).
#include <algorithm>
#include <cmath>

#include "core/strided_loop.h"
#include "kernels/elementwise.h"
#include "kernels/registry.h"

namespace gradus::kernels {

const char* binary_op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::sub: return "sub";
    case BinaryOp::mul: return "mul";
    case BinaryOp::div: return "div";
    case BinaryOp::maximum: return "maximum";
    case BinaryOp::minimum: return "minimum";
    case BinaryOp::pow: return "pow";
  }
  return "?";
}

namespace cpu {
namespace {

// Applies f(a, b) -> out over the output's shape. Contiguous operands of the output's shape take a flat
// loop the compiler vectorises; everything else goes through the strided loop.
template <class T, class F>
void binary_loop(const Tensor& a, const Tensor& b, const Tensor& out, F f) {
  const T* pa = static_cast<const T*>(a.raw_data());
  const T* pb = static_cast<const T*>(b.raw_data());
  T* po = static_cast<T*>(out.raw_data());
  const int64_t n = out.numel();
  if (a.is_contiguous() && b.is_contiguous()) {
#pragma omp parallel for simd if (n > (1 << 15)) schedule(static)
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
    return;
  }
  if (a.is_contiguous() && b.numel() >= 1 && b.dim() > 0 &&
      std::all_of(b.strides().begin(), b.strides().end(), [](int64_t s) { return s == 0; })) {
    const T s = pb[0];  // b is one broadcast scalar
#pragma omp parallel for simd if (n > (1 << 15)) schedule(static)
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], s);
    return;
  }
  strided_loop<3>(out.shape(), {&out.strides(), &a.strides(), &b.strides()},
                  [&](const std::array<int64_t, 3>& o) { po[o[0]] = f(pa[o[1]], pb[o[2]]); });
}

template <class T> void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  switch (op) {
    case BinaryOp::add: return binary_loop<T>(a, b, out, [](T x, T y) { return x + y; });
    case BinaryOp::sub: return binary_loop<T>(a, b, out, [](T x, T y) { return x - y; });
    case BinaryOp::mul: return binary_loop<T>(a, b, out, [](T x, T y) { return x * y; });
    case BinaryOp::div: return binary_loop<T>(a, b, out, [](T x, T y) { return x / y; });
    // NaN propagates from either side, as in PyTorch.
    case BinaryOp::maximum:
      return binary_loop<T>(a, b, out, [](T x, T y) { return (x != x || x > y) ? x : y; });
    case BinaryOp::minimum:
      return binary_loop<T>(a, b, out, [](T x, T y) { return (x != x || x < y) ? x : y; });
    case BinaryOp::pow: return binary_loop<T>(a, b, out, [](T x, T y) { return std::pow(x, y); });
  }
}

// Visits every element with the offsets of (a, b, grad_out, grad_a, grad_b). Undefined gradient
// outputs are routed to a one-element scratch (stride 0) and their writes discarded.
template <class T, class F>
void binary_backward_loop(const Tensor& a, const Tensor& b, const Tensor& g, const Tensor& ga,
                          const Tensor& gb, F f) {
  T scratch_a = 0, scratch_b = 0;
  const Strides zero(g.dim(), 0);
  const T* pa = static_cast<const T*>(a.raw_data());
  const T* pb = static_cast<const T*>(b.raw_data());
  const T* pg = static_cast<const T*>(g.raw_data());
  T* pga = ga.defined() ? static_cast<T*>(ga.raw_data()) : &scratch_a;
  T* pgb = gb.defined() ? static_cast<T*>(gb.raw_data()) : &scratch_b;
  const Strides& sga = ga.defined() ? ga.strides() : zero;
  const Strides& sgb = gb.defined() ? gb.strides() : zero;
  const bool need_a = ga.defined(), need_b = gb.defined();
  if (need_a && need_b) {
    strided_loop<5>(g.shape(), {&a.strides(), &b.strides(), &g.strides(), &sga, &sgb},
                    [&](const std::array<int64_t, 5>& o) {
                      f(pa[o[0]], pb[o[1]], pg[o[2]], pga[o[3]], pgb[o[4]]);
                    });
  } else {
    // One side only: the discarded side's writes go to a per-element local.
    strided_loop<5>(g.shape(), {&a.strides(), &b.strides(), &g.strides(), &sga, &sgb},
                    [&](const std::array<int64_t, 5>& o) {
                      T da, db;
                      f(pa[o[0]], pb[o[1]], pg[o[2]], da, db);
                      if (need_a) pga[o[3]] = da;
                      if (need_b) pgb[o[4]] = db;
                    });
  }
}

template <class T>
void binary_backward(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& g,
                     const Tensor& ga, const Tensor& gb) {
  switch (op) {
    case BinaryOp::add:
      return binary_backward_loop<T>(a, b, g, ga, gb, [](T, T, T go, T& da, T& db) {
        da = go;
        db = go;
      });
    case BinaryOp::sub:
      return binary_backward_loop<T>(a, b, g, ga, gb, [](T, T, T go, T& da, T& db) {
        da = go;
        db = -go;
      });
    case BinaryOp::mul:
      return binary_backward_loop<T>(a, b, g, ga, gb, [](T x, T y, T go, T& da, T& db) {
        da = go * y;
        db = go * x;
      });
    case BinaryOp::div:
      return binary_backward_loop<T>(a, b, g, ga, gb, [](T x, T y, T go, T& da, T& db) {
        da = go / y;
        db = -go * x / (y * y);
      });
    case BinaryOp::maximum:
      return binary_backward_loop<T>(a, b, g, ga, gb, [](T x, T y, T go, T& da, T& db) {
        T share = x == y ? T(0.5) : (x > y ? T(1) : T(0));
        da = go * share;
        db = go * (T(1) - share);
      });
    case BinaryOp::minimum:
      return binary_backward_loop<T>(a, b, g, ga, gb, [](T x, T y, T go, T& da, T& db) {
        T share = x == y ? T(0.5) : (x < y ? T(1) : T(0));
        da = go * share;
        db = go * (T(1) - share);
      });
    case BinaryOp::pow:
      // d/dx x^y = y x^(y-1); d/dy x^y = x^y log x, taken as 0 at x == 0 for y >= 0 (PyTorch's rule).
      return binary_backward_loop<T>(a, b, g, ga, gb, [](T x, T y, T go, T& da, T& db) {
        da = y == T(0) ? T(0) : go * y * std::pow(x, y - T(1));
        db = (x == T(0) && y >= T(0)) ? T(0) : go * std::pow(x, y) * std::log(x);
      });
  }
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kBinary, binary);
GRADUS_REGISTER_CPU_KERNEL(kBinaryBackward, binary_backward);

}  // namespace cpu
}  // namespace gradus::kernels
