// CPU where kernel: out = cond != 0 ? a : b (see kernels/elementwise.h for the conventions).
#include <cstdint>

#include "core/strided_loop.h"
#include "kernels/elementwise.h"
#include "kernels/registry.h"

namespace gradus::kernels {
namespace cpu {
namespace {

// C is the condition's element type: T itself (a 1 / 0 mask) or int64_t.
template <class T, class C>
void where_loop(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  const C* pc = static_cast<const C*>(cond.raw_data());
  const T* pa = static_cast<const T*>(a.raw_data());
  const T* pb = static_cast<const T*>(b.raw_data());
  T* po = static_cast<T*>(out.raw_data());
  const int64_t n = out.numel();
  if (cond.is_contiguous() && a.is_contiguous() && b.is_contiguous()) {
#pragma omp parallel for simd if (n > (1 << 15)) schedule(static)
    for (int64_t i = 0; i < n; ++i) po[i] = pc[i] != C(0) ? pa[i] : pb[i];
    return;
  }
  strided_loop<4>(
      out.shape(), {&out.strides(), &cond.strides(), &a.strides(), &b.strides()},
      [&](const std::array<int64_t, 4>& o) { po[o[0]] = pc[o[1]] != C(0) ? pa[o[2]] : pb[o[3]]; });
}

template <class T>
void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  if (cond.dtype() == DType::i64) return where_loop<T, int64_t>(cond, a, b, out);
  GRADUS_CHECK(cond.dtype() == dtype_of<T>(), kWhere,
               "the condition {} must be i64 or have the dtype of the values ({})", cond.describe(),
               dtype_name(dtype_of<T>()));
  where_loop<T, T>(cond, a, b, out);
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kWhere, where);

}  // namespace cpu
}  // namespace gradus::kernels
