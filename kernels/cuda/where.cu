// CUDA where kernel: out = cond != 0 ? a : b (see kernels/elementwise.h for the conventions; mirrors
// kernels/cpu/where.cpp). The condition is a 1 / 0 mask in the values' dtype or i64; every operand
// may be a strided view (stride 0 on broadcast axes), the output is contiguous.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/strided.cuh"
#include "kernels/elementwise.h"

namespace gradus::cuda {
namespace {

// The DType of a CUDA element type (core's dtype_of knows the host bfloat16, not __nv_bfloat16).
template <class T> constexpr DType device_dtype() {
  if constexpr (std::is_same_v<T, bf16>) return DType::bf16;
  else return dtype_of<T>();
}

// A condition element is "true" when it is not zero (NaN counts as true, as on the CPU).
template <class C> __device__ __forceinline__ bool is_set(C c) {
  if constexpr (std::is_same_v<C, bf16>) return __bfloat162float(c) != 0.0f;
  else return c != C(0);
}

// out, cond, a, b: (...) = layout's shape; operands 0..3 in that order, any strides. C is the
// condition's element type (T or int64_t). The selected value is copied, never converted.
template <class T, class C>
__global__ void where_kernel(const C* cond, const T* a, const T* b, T* out, int64_t n, Layout<4> layout) {
  GRADUS_CUDA_LOOP(i, n) {
    int64_t off[4];
    offsets(layout, i, off);
    out[off[0]] = is_set(cond[off[1]]) ? a[off[2]] : b[off[3]];
  }
}

template <class T, class C>
void where_launch(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  const Layout<4> layout = make_layout<4>(
      out.shape(), {&out.strides(), &cond.strides(), &a.strides(), &b.strides()}, kernels::kWhere);
  where_kernel<T, C><<<elementwise_blocks(n), kThreads, 0, stream()>>>(
      static_cast<const C*>(cond.raw_data()), static_cast<const T*>(a.raw_data()),
      static_cast<const T*>(b.raw_data()), static_cast<T*>(out.raw_data()), n, layout);
  GRADUS_CUDA_CHECK_LAUNCH("where");
}

template <class T> void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  if (cond.dtype() == DType::i64) return where_launch<T, int64_t>(cond, a, b, out);
  GRADUS_CHECK(cond.dtype() == device_dtype<T>(), kernels::kWhere,
               "the condition {} must be i64 or have the dtype of the values ({})", cond.describe(),
               dtype_name(device_dtype<T>()));
  where_launch<T, T>(cond, a, b, out);
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL(kernels::kWhere, where);

}  // namespace gradus::cuda
