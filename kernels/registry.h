// The kernel registry: each backend is a table of functions keyed by (kernel name, device, dtype).
//
// A kernel family header (kernels/<family>.h) declares the function-pointer type of its kernels and
// their names; each backend registers its implementations with GRADUS_REGISTER_KERNEL in a file of
// the same name (kernels/cpu/<family>.cpp, kernels/cuda/<family>.cu). The autodiff layer looks
// kernels up by name for the tensor's device and dtype, so it never knows which backend runs, and
// `supports(name, device, dtype)` is what `gradus ops` reports.
#pragma once

#include <array>
#include <atomic>
#include <string>
#include <string_view>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/kernel_census.h"

namespace gradus::kernels {

using AnyKernel = void (*)();

void register_kernel(std::string_view name, DeviceType device, DType dtype, AnyKernel fn);
AnyKernel find_kernel(std::string_view name, DeviceType device, DType dtype);  // nullptr if absent
bool supports(std::string_view name, DeviceType device, DType dtype);
std::vector<std::string> kernel_names();

// A named kernel resolved per (device, dtype) on first use; the call site keeps one as a static.
//   static const KernelRef<SoftmaxFn> k("softmax_forward");
//   k(x.device(), x.dtype())(...);
template <class Fn>
class KernelRef {
 public:
  explicit KernelRef(const char* name) : name_(name) {}
  Fn operator()(Device device, DType dtype) const {
    census::count(name_);  // a resolution is a call: the call sites resolve right before calling
    // Kernels register during static initialisation, so a resolved entry never changes: cache it.
    auto& slot = cache_[static_cast<size_t>(device.type) * kNumDTypes + static_cast<size_t>(dtype)];
    AnyKernel fn = slot.load(std::memory_order_acquire);
    if (fn != nullptr) return reinterpret_cast<Fn>(fn);
    fn = find_kernel(name_, device.type, dtype);
    GRADUS_CHECK(fn != nullptr, name_, "no kernel for dtype {} on {} (registered: {})",
                 dtype_name(dtype), device_type_name(device.type), describe_support());
    slot.store(fn, std::memory_order_release);
    return reinterpret_cast<Fn>(fn);
  }
  const char* name() const { return name_; }

 private:
  std::string describe_support() const;
  const char* name_;
  mutable std::array<std::atomic<AnyKernel>, kNumDeviceTypes * kNumDTypes> cache_{};
};

template <class Fn>
std::string KernelRef<Fn>::describe_support() const {
  std::string out;
  for (int d = 0; d < kNumDeviceTypes; ++d)
    for (int t = 0; t < kNumDTypes; ++t)
      if (supports(name_, static_cast<DeviceType>(d), static_cast<DType>(t)))
        out += fmt::format("{}{}/{}", out.empty() ? "" : ", ",
                           device_type_name(static_cast<DeviceType>(d)),
                           dtype_name(static_cast<DType>(t)));
  return out.empty() ? "none" : out;
}

struct KernelRegistrar {
  template <class Fn>
  KernelRegistrar(std::string_view name, DeviceType device, DType dtype, Fn fn) {
    register_kernel(name, device, dtype, reinterpret_cast<AnyKernel>(fn));
  }
};

#define GRADUS_KERNEL_CONCAT_INNER(a, b) a##b
#define GRADUS_KERNEL_CONCAT(a, b) GRADUS_KERNEL_CONCAT_INNER(a, b)
// GRADUS_REGISTER_KERNEL("softmax_forward", DeviceType::cpu, DType::f32, &softmax_forward<float>);
#define GRADUS_REGISTER_KERNEL(name, device, dtype, fn)                 \
  static const ::gradus::kernels::KernelRegistrar GRADUS_KERNEL_CONCAT( \
      gradus_kernel_reg_, __COUNTER__)(name, device, dtype, fn)
// Registers fn<float> and fn<double> for the CPU.
#define GRADUS_REGISTER_CPU_KERNEL(name, fn)                                                 \
  GRADUS_REGISTER_KERNEL(name, ::gradus::DeviceType::cpu, ::gradus::DType::f32, &fn<float>); \
  GRADUS_REGISTER_KERNEL(name, ::gradus::DeviceType::cpu, ::gradus::DType::f64, &fn<double>)

}  // namespace gradus::kernels
