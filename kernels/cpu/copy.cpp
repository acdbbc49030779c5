#include "kernels/copy.h"

#include "kernels/registry.h"

namespace gradus::kernels::cpu {
namespace {

// dst, src: (...) same shape, any strides (core's OpenMP strided loop).
void strided_copy(const Tensor& dst, const Tensor& src) { raw_copy_(dst, src); }

}  // namespace

GRADUS_REGISTER_KERNEL(kStridedCopy, DeviceType::cpu, DType::f32, &strided_copy);
GRADUS_REGISTER_KERNEL(kStridedCopy, DeviceType::cpu, DType::f64, &strided_copy);
GRADUS_REGISTER_KERNEL(kStridedCopy, DeviceType::cpu, DType::i64, &strided_copy);

}  // namespace gradus::kernels::cpu
