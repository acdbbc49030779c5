#include "kernels/copy.h"

#include <omp.h>

#include "core/element_convert.h"
#include "kernels/registry.h"

namespace gradus::kernels::cpu {
namespace {

// dst, src: (...) same shape, any strides (core's OpenMP strided loop).
void strided_copy(const Tensor& dst, const Tensor& src) { raw_copy_(dst, src); }

// Below this many elements in all, the conversion runs on one thread (waking the pool would cost
// more than it saves).
constexpr int64_t kMinParallelElements = int64_t{1} << 15;

template <class S, class D>
void cast_arrays(const CastArray* arrays, int64_t count) {
  int64_t total = 0;
  for (int64_t a = 0; a < count; ++a) total += arrays[a].n;
  for (int64_t a = 0; a < count; ++a) {
    const S* src = static_cast<const S*>(arrays[a].src);
    D* dst = static_cast<D*>(arrays[a].dst);
    const int64_t n = arrays[a].n;
#pragma omp parallel for schedule(static) if (total >= kMinParallelElements)
    for (int64_t i = 0; i < n; ++i) dst[i] = convert_element<D, S>(src[i]);
  }
}

// arrays: (count), each src (n) of S converted into dst (n) of dtype `to`.
template <class S>
void cast_multi(const CastArray* arrays, int64_t count, DType to) {
  switch (to) {
    case DType::f32: return cast_arrays<S, float>(arrays, count);
    case DType::f64: return cast_arrays<S, double>(arrays, count);
    case DType::bf16: return cast_arrays<S, bfloat16>(arrays, count);
    default: break;
  }
  GRADUS_FAIL(kCastMulti, "cannot convert to {}: expected f32, f64 or bf16", dtype_name(to));
}

}  // namespace

GRADUS_REGISTER_KERNEL(kStridedCopy, DeviceType::cpu, DType::f32, &strided_copy);
GRADUS_REGISTER_KERNEL(kStridedCopy, DeviceType::cpu, DType::f64, &strided_copy);
GRADUS_REGISTER_KERNEL(kStridedCopy, DeviceType::cpu, DType::i64, &strided_copy);
GRADUS_REGISTER_KERNEL(kCastMulti, DeviceType::cpu, DType::f32, &cast_multi<float>);
GRADUS_REGISTER_KERNEL(kCastMulti, DeviceType::cpu, DType::f64, &cast_multi<double>);
GRADUS_REGISTER_KERNEL(kCastMulti, DeviceType::cpu, DType::bf16, &cast_multi<bfloat16>);

}  // namespace gradus::kernels::cpu
