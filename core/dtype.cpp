#include "core/dtype.h"

#include "core/device.h"
#include "core/error.h"

namespace gradus {

DType parse_dtype(std::string_view name) {
  if (name == "f32" || name == "float32") return DType::f32;
  if (name == "f64" || name == "float64") return DType::f64;
  if (name == "bf16" || name == "bfloat16") return DType::bf16;
  if (name == "i64" || name == "int64") return DType::i64;
  GRADUS_FAIL("dtype", "expected one of f32, f64, bf16, i64 but found \"{}\"", name);
}

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : fmt::format("cuda:{}", index);
}

Device parse_device(std::string_view name) {
  if (name == "cpu") return kCPU;
  if (name == "cuda") return Device{DeviceType::cuda, 0};
  if (name.substr(0, 5) == "cuda:") {
    int index = 0;
    for (char c : name.substr(5)) {
      GRADUS_CHECK(c >= '0' && c <= '9', "device", "expected cpu, cuda or cuda:N but found \"{}\"",
                   name);
      index = index * 10 + (c - '0');
    }
    return Device{DeviceType::cuda, index};
  }
  GRADUS_FAIL("device", "expected cpu, cuda or cuda:N but found \"{}\"", name);
}

}  // namespace gradus
