// Device: where a tensor's storage lives. The CPU is always present; CUDA tensors exist when the
// CUDA backend is built in (kernels/cuda) and a GPU is present. One device per type: cuda:0.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace gradus {

enum class DeviceType : uint8_t { cpu = 0, cuda = 1 };
inline constexpr int kNumDeviceTypes = 2;

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  constexpr bool is_cpu() const { return type == DeviceType::cpu; }
  constexpr bool is_cuda() const { return type == DeviceType::cuda; }
  friend constexpr bool operator==(Device a, Device b) {
    return a.type == b.type && a.index == b.index;
  }
  std::string str() const;  // "cpu", "cuda:0"
};

inline constexpr Device kCPU{DeviceType::cpu, 0};

constexpr std::string_view device_type_name(DeviceType t) {
  return t == DeviceType::cpu ? "cpu" : "cuda";
}

// Parses "cpu", "cuda", "cuda:1"; throws gradus::Error otherwise.
Device parse_device(std::string_view name);

}  // namespace gradus
