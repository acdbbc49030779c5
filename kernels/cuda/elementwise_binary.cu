// CUDA binary elementwise kernels (see kernels/elementwise.h for the conventions; the rules mirror
// kernels/cpu/elementwise_binary.cpp). Each op is a template parameter, so its body is folded into
// the kernel; a and b may be any strided views (stride 0 on broadcast axes), outputs are contiguous.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/strided.cuh"
#include "kernels/elementwise.h"

namespace gradus::cuda {
namespace {

using kernels::BinaryOp;

template <BinaryOp Op, class A> __device__ __forceinline__ A forward_op(A x, A y) {
  if constexpr (Op == BinaryOp::add) return x + y;
  else if constexpr (Op == BinaryOp::sub) return x - y;
  else if constexpr (Op == BinaryOp::mul) return x * y;
  else if constexpr (Op == BinaryOp::div) return x / y;
  // NaN propagates from either side, as in PyTorch (x != x is the NaN test).
  else if constexpr (Op == BinaryOp::maximum) return (x != x || x > y) ? x : y;
  else if constexpr (Op == BinaryOp::minimum) return (x != x || x < y) ? x : y;
  else {
    static_assert(Op == BinaryOp::pow);
    return dpow(x, y);
  }
}

// da = d op / d x * go, db = d op / d y * go.
template <BinaryOp Op, class A> __device__ __forceinline__ void backward_op(A x, A y, A go, A& da, A& db) {
  if constexpr (Op == BinaryOp::add) {
    da = go;
    db = go;
  } else if constexpr (Op == BinaryOp::sub) {
    da = go;
    db = -go;
  } else if constexpr (Op == BinaryOp::mul) {
    da = go * y;
    db = go * x;
  } else if constexpr (Op == BinaryOp::div) {
    da = go / y;
    db = -go * x / (y * y);
  } else if constexpr (Op == BinaryOp::maximum || Op == BinaryOp::minimum) {
    // Ties split the gradient equally between a and b.
    const bool wins = Op == BinaryOp::maximum ? x > y : x < y;
    const A share = x == y ? A(0.5) : (wins ? A(1) : A(0));
    da = go * share;
    db = go * (A(1) - share);
  } else {
    static_assert(Op == BinaryOp::pow);
    // d/dx x^y = y x^(y-1); d/dy x^y = x^y log x, taken as 0 at x == 0 for y >= 0 (PyTorch's rule).
    da = y == A(0) ? A(0) : go * y * dpow(x, y - A(1));
    db = (x == A(0) && y >= A(0)) ? A(0) : go * dpow(x, y) * dlog(x);
  }
}

// Calls fn(std::integral_constant<BinaryOp, op>) so that the op becomes a template argument.
template <class Fn> void dispatch_op(BinaryOp op, const char* name, Fn&& fn) {
  using B = BinaryOp;
  switch (op) {
    case B::add: return fn(std::integral_constant<B, B::add>{});
    case B::sub: return fn(std::integral_constant<B, B::sub>{});
    case B::mul: return fn(std::integral_constant<B, B::mul>{});
    case B::div: return fn(std::integral_constant<B, B::div>{});
    case B::maximum: return fn(std::integral_constant<B, B::maximum>{});
    case B::minimum: return fn(std::integral_constant<B, B::minimum>{});
    case B::pow: return fn(std::integral_constant<B, B::pow>{});
  }
  GRADUS_FAIL(name, "unknown binary op {}", static_cast<int>(op));
}

// ---- forward ----
// a, b, out: (n,) contiguous, 16-byte aligned; V elements per load, then the n % V tail one by one.
template <class T, BinaryOp Op, int V>
__global__ void binary_vec_kernel(const T* a, const T* b, T* out, int64_t n) {
  using P = Pack<T, V>;
  const int64_t packs = n / V;
  GRADUS_CUDA_LOOP(i, packs) {
    const P av = reinterpret_cast<const P*>(a)[i];
    const P bv = reinterpret_cast<const P*>(b)[i];
    P r;
#pragma unroll
    for (int k = 0; k < V; ++k) r.v[k] = from_acc<T>(forward_op<Op>(to_acc(av.v[k]), to_acc(bv.v[k])));
    reinterpret_cast<P*>(out)[i] = r;
  }
  GRADUS_CUDA_LOOP(j, n - packs * V) {
    const int64_t i = packs * V + j;
    out[i] = from_acc<T>(forward_op<Op>(to_acc(a[i]), to_acc(b[i])));
  }
}

// out, a, b: (...) = layout's shape; operands 0..2 in that order, any strides.
template <class T, BinaryOp Op>
__global__ void binary_strided_kernel(const T* a, const T* b, T* out, int64_t n, Layout<3> layout) {
  GRADUS_CUDA_LOOP(i, n) {
    int64_t off[3];
    offsets(layout, i, off);
    out[off[0]] = from_acc<T>(forward_op<Op>(to_acc(a[off[1]]), to_acc(b[off[2]])));
  }
}

template <class T> void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  const T* pa = static_cast<const T*>(a.raw_data());
  const T* pb = static_cast<const T*>(b.raw_data());
  T* po = static_cast<T*>(out.raw_data());
  const Layout<3> layout =
      make_layout<3>(out.shape(), {&out.strides(), &a.strides(), &b.strides()}, kernels::kBinary);
  const bool vec = all_unit_stride(layout) && aligned16(pa) && aligned16(pb) && aligned16(po);
  dispatch_op(op, kernels::kBinary, [&](auto tag) {
    constexpr BinaryOp Op = decltype(tag)::value;
    if (vec)
      binary_vec_kernel<T, Op, kVec<T>>
          <<<elementwise_blocks((n + kVec<T> - 1) / kVec<T>), kThreads, 0, stream()>>>(pa, pb, po, n);
    else
      binary_strided_kernel<T, Op><<<elementwise_blocks(n), kThreads, 0, stream()>>>(pa, pb, po, n, layout);
    GRADUS_CUDA_CHECK_LAUNCH("binary");
  });
}

// ---- backward ----
// ga, gb, a, b, g: (...) = layout's shape; operands 0..4 in that order, any strides. ga or gb is
// nullptr when that gradient is not wanted (its strides are then 0 and it is never written).
template <class T, BinaryOp Op>
__global__ void binary_backward_kernel(const T* a, const T* b, const T* g, T* ga, T* gb, int64_t n,
                                       Layout<5> layout) {
  using A = acc_t<T>;
  GRADUS_CUDA_LOOP(i, n) {
    int64_t off[5];
    offsets(layout, i, off);
    A da, db;
    backward_op<Op>(to_acc(a[off[2]]), to_acc(b[off[3]]), to_acc(g[off[4]]), da, db);
    if (ga != nullptr) ga[off[0]] = from_acc<T>(da);
    if (gb != nullptr) gb[off[1]] = from_acc<T>(db);
  }
}

template <class T>
void binary_backward(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& g, const Tensor& ga,
                     const Tensor& gb) {
  const int64_t n = g.numel();
  if (n == 0 || (!ga.defined() && !gb.defined())) return;
  const Strides zero(g.shape().size(), 0);
  const T* pa = static_cast<const T*>(a.raw_data());
  const T* pb = static_cast<const T*>(b.raw_data());
  const T* pg = static_cast<const T*>(g.raw_data());
  T* pga = ga.defined() ? static_cast<T*>(ga.raw_data()) : nullptr;
  T* pgb = gb.defined() ? static_cast<T*>(gb.raw_data()) : nullptr;
  const Layout<5> layout = make_layout<5>(
      g.shape(),
      {ga.defined() ? &ga.strides() : &zero, gb.defined() ? &gb.strides() : &zero, &a.strides(),
       &b.strides(), &g.strides()},
      kernels::kBinaryBackward);
  dispatch_op(op, kernels::kBinaryBackward, [&](auto tag) {
    constexpr BinaryOp Op = decltype(tag)::value;
    binary_backward_kernel<T, Op>
        <<<elementwise_blocks(n), kThreads, 0, stream()>>>(pa, pb, pg, pga, pgb, n, layout);
    GRADUS_CUDA_CHECK_LAUNCH("binary_backward");
  });
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL(kernels::kBinary, binary);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kBinaryBackward, binary_backward);

}  // namespace gradus::cuda
