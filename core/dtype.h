// DType: the element types a Tensor can hold.
// f32 and f64 run everywhere; i64 holds indices; bf16 is computed by the CUDA backend only: the CPU
// stores, converts and saves it, and its kernels refuse it with a clear error (no kernel registered)
// rather than computing it slowly or wrongly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace gradus {

// i64 holds indices (token ids, targets, gather indices): never differentiable.
enum class DType : uint8_t { f32 = 0, f64 = 1, bf16 = 2, i64 = 3 };
inline constexpr int kNumDTypes = 4;

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::i64: return 8;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::i64: return "i64";
  }
  return "?";
}

// Parses "f32" / "float32" / "f64" / "float64" / "bf16" / "bfloat16"; throws gradus::Error otherwise.
DType parse_dtype(std::string_view name);

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }
struct bfloat16;
template <> constexpr DType dtype_of<bfloat16>() { return DType::bf16; }

constexpr bool is_floating(DType t) { return t != DType::i64; }

}  // namespace gradus
