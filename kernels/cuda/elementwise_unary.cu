// CUDA unary elementwise kernels (see kernels/elementwise.h for the conventions; the rules mirror
// kernels/cpu/elementwise_unary.cpp). Each op is a template parameter, so its body is folded into the
// kernel; the input may be any strided view (stride 0 on broadcast axes), the output is contiguous.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/strided.cuh"
#include "kernels/elementwise.h"

namespace gradus::cuda {
namespace {

using kernels::UnaryOp;
using kernels::UnaryParams;

// ---- device math in the compute type (float or double; dexp, dlog, dpow are in common.cuh) ----
__device__ __forceinline__ float dlog1p(float v) { return log1pf(v); }
__device__ __forceinline__ double dlog1p(double v) { return log1p(v); }
__device__ __forceinline__ float dsqrt(float v) { return sqrtf(v); }
__device__ __forceinline__ double dsqrt(double v) { return sqrt(v); }
__device__ __forceinline__ float dtanh(float v) { return tanhf(v); }
__device__ __forceinline__ double dtanh(double v) { return tanh(v); }
__device__ __forceinline__ float derf(float v) { return erff(v); }
__device__ __forceinline__ double derf(double v) { return erf(v); }
__device__ __forceinline__ float dabs(float v) { return fabsf(v); }
__device__ __forceinline__ double dabs(double v) { return fabs(v); }

constexpr double kSqrt2OverPi = 0.7978845608028654;  // sqrt(2 / pi)
constexpr double kInvSqrt2 = 0.7071067811865476;     // 1 / sqrt(2)
constexpr double kInvSqrt2Pi = 0.3989422804014327;   // 1 / sqrt(2 pi)

template <class A> __device__ __forceinline__ A sigmoid_of(A x) { return A(1) / (A(1) + dexp(-x)); }

// out = op(v; p0, p1), written as the CPU writes it (same order of operations).
template <UnaryOp Op, class A> __device__ __forceinline__ A forward_op(A v, A p0, A p1) {
  if constexpr (Op == UnaryOp::neg) return -v;
  else if constexpr (Op == UnaryOp::exp) return dexp(v);
  else if constexpr (Op == UnaryOp::log) return dlog(v);
  else if constexpr (Op == UnaryOp::sqrt) return dsqrt(v);
  else if constexpr (Op == UnaryOp::rsqrt) return A(1) / dsqrt(v);
  else if constexpr (Op == UnaryOp::abs) return dabs(v);
  else if constexpr (Op == UnaryOp::tanh) return dtanh(v);
  else if constexpr (Op == UnaryOp::sigmoid) return sigmoid_of(v);
  else if constexpr (Op == UnaryOp::relu) return v > A(0) ? v : A(0);
  else if constexpr (Op == UnaryOp::leaky_relu) return v > A(0) ? v : p0 * v;
  else if constexpr (Op == UnaryOp::gelu_tanh) {
    const A inner = A(kSqrt2OverPi) * (v + A(0.044715) * v * v * v);
    return A(0.5) * v * (A(1) + dtanh(inner));
  } else if constexpr (Op == UnaryOp::gelu_exact) {
    return A(0.5) * v * (A(1) + derf(v * A(kInvSqrt2)));
  } else if constexpr (Op == UnaryOp::silu) {
    return v * sigmoid_of(v);
  } else if constexpr (Op == UnaryOp::softplus) {
    // (1/beta) log1p(exp(beta x)), linear where beta x > threshold (p0 = beta, p1 = threshold).
    const A bx = p0 * v;
    return bx > p1 ? v : dlog1p(dexp(bx)) / p0;
  } else if constexpr (Op == UnaryOp::clamp) {
    return v < p0 ? p0 : (v > p1 ? p1 : v);  // NaN passes through, as on the CPU
  } else if constexpr (Op == UnaryOp::pow_scalar) {
    return dpow(v, p0);
  } else if constexpr (Op == UnaryOp::affine) {
    return p0 * v + p1;
  } else if constexpr (Op == UnaryOp::square) {
    return v * v;
  } else {
    static_assert(Op == UnaryOp::reciprocal);
    return A(1) / v;
  }
}

// grad_x = d op / d x * go, from the input v and / or the forward output y.
template <UnaryOp Op, class A> __device__ __forceinline__ A backward_op(A v, A y, A go, A p0, A p1) {
  if constexpr (Op == UnaryOp::neg) return -go;
  else if constexpr (Op == UnaryOp::exp) return go * y;
  else if constexpr (Op == UnaryOp::log) return go / v;
  else if constexpr (Op == UnaryOp::sqrt) return go / (A(2) * y);
  else if constexpr (Op == UnaryOp::rsqrt) return go * A(-0.5) * y / v;
  else if constexpr (Op == UnaryOp::abs) return v > A(0) ? go : (v < A(0) ? -go : A(0));
  else if constexpr (Op == UnaryOp::tanh) return go * (A(1) - y * y);
  else if constexpr (Op == UnaryOp::sigmoid) return go * y * (A(1) - y);
  else if constexpr (Op == UnaryOp::relu) return v > A(0) ? go : A(0);
  else if constexpr (Op == UnaryOp::leaky_relu) return v > A(0) ? go : p0 * go;
  else if constexpr (Op == UnaryOp::gelu_tanh) {
    const A inner = A(kSqrt2OverPi) * (v + A(0.044715) * v * v * v);
    const A t = dtanh(inner);
    const A d_inner = A(kSqrt2OverPi) * (A(1) + A(3 * 0.044715) * v * v);
    return go * (A(0.5) * (A(1) + t) + A(0.5) * v * (A(1) - t * t) * d_inner);
  } else if constexpr (Op == UnaryOp::gelu_exact) {
    const A cdf = A(0.5) * (A(1) + derf(v * A(kInvSqrt2)));
    const A pdf = A(kInvSqrt2Pi) * dexp(A(-0.5) * v * v);
    return go * (cdf + v * pdf);
  } else if constexpr (Op == UnaryOp::silu) {
    const A s = sigmoid_of(v);
    return go * s * (A(1) + v * (A(1) - s));
  } else if constexpr (Op == UnaryOp::softplus) {
    const A bx = p0 * v;
    return bx > p1 ? go : go * sigmoid_of(bx);
  } else if constexpr (Op == UnaryOp::clamp) {
    return (v >= p0 && v <= p1) ? go : A(0);
  } else if constexpr (Op == UnaryOp::pow_scalar) {
    return p0 == A(0) ? A(0) : go * p0 * dpow(v, p0 - A(1));
  } else if constexpr (Op == UnaryOp::affine) {
    return go * p0;
  } else if constexpr (Op == UnaryOp::square) {
    return go * A(2) * v;
  } else {
    static_assert(Op == UnaryOp::reciprocal);
    return -go * y * y;
  }
}

// ---- forward ----
// x, out: (n,) contiguous, 16-byte aligned; V elements per load, then the n % V tail one by one.
template <class T, UnaryOp Op, int V>
__global__ void unary_vec_kernel(const T* x, T* out, int64_t n, acc_t<T> p0, acc_t<T> p1) {
  using P = Pack<T, V>;
  const int64_t packs = n / V;
  GRADUS_CUDA_LOOP(i, packs) {
    const P in = reinterpret_cast<const P*>(x)[i];
    P r;
#pragma unroll
    for (int k = 0; k < V; ++k) r.v[k] = from_acc<T>(forward_op<Op>(to_acc(in.v[k]), p0, p1));
    reinterpret_cast<P*>(out)[i] = r;
  }
  GRADUS_CUDA_LOOP(j, n - packs * V) {
    const int64_t i = packs * V + j;
    out[i] = from_acc<T>(forward_op<Op>(to_acc(x[i]), p0, p1));
  }
}

// out, x: (...) = layout's shape; operand 0 = out, 1 = x, any strides.
template <class T, UnaryOp Op>
__global__ void unary_strided_kernel(const T* x, T* out, int64_t n, Layout<2> layout, acc_t<T> p0,
                                     acc_t<T> p1) {
  GRADUS_CUDA_LOOP(i, n) {
    int64_t off[2];
    offsets(layout, i, off);
    out[off[0]] = from_acc<T>(forward_op<Op>(to_acc(x[off[1]]), p0, p1));
  }
}

// Calls fn(std::integral_constant<UnaryOp, op>) so that the op becomes a template argument.
template <class Fn> void dispatch_op(UnaryOp op, Fn&& fn) {
  using U = UnaryOp;
  switch (op) {
    case U::neg: return fn(std::integral_constant<U, U::neg>{});
    case U::exp: return fn(std::integral_constant<U, U::exp>{});
    case U::log: return fn(std::integral_constant<U, U::log>{});
    case U::sqrt: return fn(std::integral_constant<U, U::sqrt>{});
    case U::rsqrt: return fn(std::integral_constant<U, U::rsqrt>{});
    case U::abs: return fn(std::integral_constant<U, U::abs>{});
    case U::tanh: return fn(std::integral_constant<U, U::tanh>{});
    case U::sigmoid: return fn(std::integral_constant<U, U::sigmoid>{});
    case U::relu: return fn(std::integral_constant<U, U::relu>{});
    case U::gelu_tanh: return fn(std::integral_constant<U, U::gelu_tanh>{});
    case U::gelu_exact: return fn(std::integral_constant<U, U::gelu_exact>{});
    case U::silu: return fn(std::integral_constant<U, U::silu>{});
    case U::softplus: return fn(std::integral_constant<U, U::softplus>{});
    case U::clamp: return fn(std::integral_constant<U, U::clamp>{});
    case U::pow_scalar: return fn(std::integral_constant<U, U::pow_scalar>{});
    case U::affine: return fn(std::integral_constant<U, U::affine>{});
    case U::square: return fn(std::integral_constant<U, U::square>{});
    case U::reciprocal: return fn(std::integral_constant<U, U::reciprocal>{});
    case U::leaky_relu: return fn(std::integral_constant<U, U::leaky_relu>{});
  }
  GRADUS_FAIL(kernels::kUnary, "unknown unary op {}", static_cast<int>(op));
}

template <class T> void unary(UnaryOp op, UnaryParams p, const Tensor& x, const Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  using A = acc_t<T>;
  const A p0 = static_cast<A>(p.p0), p1 = static_cast<A>(p.p1);
  const T* px = static_cast<const T*>(x.raw_data());
  T* po = static_cast<T*>(out.raw_data());
  const Layout<2> layout = make_layout<2>(out.shape(), {&out.strides(), &x.strides()}, kernels::kUnary);
  const bool vec = all_unit_stride(layout) && aligned16(px) && aligned16(po);
  dispatch_op(op, [&](auto tag) {
    constexpr UnaryOp Op = decltype(tag)::value;
    if (vec)
      unary_vec_kernel<T, Op, kVec<T>>
          <<<elementwise_blocks((n + kVec<T> - 1) / kVec<T>), kThreads, 0, stream()>>>(px, po, n, p0, p1);
    else
      unary_strided_kernel<T, Op><<<elementwise_blocks(n), kThreads, 0, stream()>>>(px, po, n, layout, p0, p1);
    GRADUS_CUDA_CHECK_LAUNCH("unary");
  });
}

// ---- backward ----
// x, y (forward output), g (output gradient), gx: (n,) contiguous, 16-byte aligned.
template <class T, UnaryOp Op, int V>
__global__ void unary_backward_vec_kernel(const T* x, const T* y,
                                          const T* g, T* gx, int64_t n, acc_t<T> p0,
                                          acc_t<T> p1) {
  using P = Pack<T, V>;
  const int64_t packs = n / V;
  GRADUS_CUDA_LOOP(i, packs) {
    const P xv = reinterpret_cast<const P*>(x)[i];
    const P yv = reinterpret_cast<const P*>(y)[i];
    const P gv = reinterpret_cast<const P*>(g)[i];
    P r;
#pragma unroll
    for (int k = 0; k < V; ++k)
      r.v[k] = from_acc<T>(backward_op<Op>(to_acc(xv.v[k]), to_acc(yv.v[k]), to_acc(gv.v[k]), p0, p1));
    reinterpret_cast<P*>(gx)[i] = r;
  }
  GRADUS_CUDA_LOOP(j, n - packs * V) {
    const int64_t i = packs * V + j;
    gx[i] = from_acc<T>(backward_op<Op>(to_acc(x[i]), to_acc(y[i]), to_acc(g[i]), p0, p1));
  }
}

// gx, x, y, g: (...) = layout's shape; operands 0..3 in that order, any strides.
template <class T, UnaryOp Op>
__global__ void unary_backward_strided_kernel(const T* x, const T* y, const T* g, T* gx, int64_t n,
                                              Layout<4> layout, acc_t<T> p0, acc_t<T> p1) {
  GRADUS_CUDA_LOOP(i, n) {
    int64_t off[4];
    offsets(layout, i, off);
    gx[off[0]] = from_acc<T>(
        backward_op<Op>(to_acc(x[off[1]]), to_acc(y[off[2]]), to_acc(g[off[3]]), p0, p1));
  }
}

template <class T>
void unary_backward(UnaryOp op, UnaryParams p, const Tensor& x, const Tensor& out, const Tensor& g,
                    const Tensor& gx) {
  const int64_t n = gx.numel();
  if (n == 0) return;
  using A = acc_t<T>;
  const A p0 = static_cast<A>(p.p0), p1 = static_cast<A>(p.p1);
  const T* px = static_cast<const T*>(x.raw_data());
  const T* py = static_cast<const T*>(out.raw_data());
  const T* pg = static_cast<const T*>(g.raw_data());
  T* pgx = static_cast<T*>(gx.raw_data());
  const Layout<4> layout = make_layout<4>(
      gx.shape(), {&gx.strides(), &x.strides(), &out.strides(), &g.strides()}, kernels::kUnaryBackward);
  const bool vec = all_unit_stride(layout) && aligned16(px) && aligned16(py) && aligned16(pg) &&
                   aligned16(pgx);
  dispatch_op(op, [&](auto tag) {
    constexpr UnaryOp Op = decltype(tag)::value;
    if (vec)
      unary_backward_vec_kernel<T, Op, kVec<T>>
          <<<elementwise_blocks((n + kVec<T> - 1) / kVec<T>), kThreads, 0, stream()>>>(px, py, pg, pgx,
                                                                                         n, p0, p1);
    else
      unary_backward_strided_kernel<T, Op>
          <<<elementwise_blocks(n), kThreads, 0, stream()>>>(px, py, pg, pgx, n, layout, p0, p1);
    GRADUS_CUDA_CHECK_LAUNCH("unary_backward");
  });
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL(kernels::kUnary, unary);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kUnaryBackward, unary_backward);

}  // namespace gradus::cuda
