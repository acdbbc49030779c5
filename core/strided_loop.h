// Strided N-d iteration shared by the CPU copy, fill and elementwise kernels.
//
// For K operands that share a logical shape but have their own strides (0 for broadcast axes), calls
// fn(offsets) once per element with each operand's element offset. Axes that are contiguous for
// every operand are merged first, so a contiguous or simply broadcast case becomes a tight inner loop.
// The outer rows are split across OpenMP threads (the one owner of CPU threads; see docs/threads.md).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "core/shape.h"

namespace gradus {

template <size_t K> struct CollapsedLoop {
  Shape shape;                                   // merged sizes, outermost first
  std::array<std::vector<int64_t>, K> strides;   // merged strides per operand
};

template <size_t K>
CollapsedLoop<K> collapse_loop(const Shape& shape, const std::array<const Strides*, K>& strides) {
  CollapsedLoop<K> out;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;  // size-1 axes contribute nothing
    bool merge = !out.shape.empty();
    for (size_t k = 0; k < K && merge; ++k)
      merge = out.strides[k].back() == (*strides[k])[d] * shape[d];
    if (merge) {
      out.shape.back() *= shape[d];
      for (size_t k = 0; k < K; ++k) out.strides[k].back() = (*strides[k])[d];
    } else {
      out.shape.push_back(shape[d]);
      for (size_t k = 0; k < K; ++k) out.strides[k].push_back((*strides[k])[d]);
    }
  }
  if (out.shape.empty()) {  // scalar or all size-1: one element
    out.shape.push_back(1);
    for (size_t k = 0; k < K; ++k) out.strides[k].push_back(0);
  }
  return out;
}

// fn(const std::array<int64_t, K>& offsets) for each element.
template <size_t K, class Fn>
void strided_loop(const Shape& shape, const std::array<const Strides*, K>& strides, Fn&& fn) {
  if (shape_numel(shape) == 0) return;
  CollapsedLoop<K> c = collapse_loop<K>(shape, strides);
  const int64_t nd = static_cast<int64_t>(c.shape.size());
  const int64_t inner = c.shape[nd - 1];
  int64_t outer = 1;
  for (int64_t d = 0; d + 1 < nd; ++d) outer *= c.shape[d];
  std::array<int64_t, K> inner_stride;
  for (size_t k = 0; k < K; ++k) inner_stride[k] = c.strides[k][nd - 1];
  const bool parallel = outer * inner > (1 << 15) && outer > 1;
#pragma omp parallel for if (parallel) schedule(static)
  for (int64_t row = 0; row < outer; ++row) {
    std::array<int64_t, K> base{};
    int64_t rem = row;
    for (int64_t d = nd - 2; d >= 0; --d) {
      int64_t idx = rem % c.shape[d];
      rem /= c.shape[d];
      for (size_t k = 0; k < K; ++k) base[k] += idx * c.strides[k][d];
    }
    std::array<int64_t, K> off = base;
    for (int64_t i = 0; i < inner; ++i) {
      fn(off);
      for (size_t k = 0; k < K; ++k) off[k] += inner_stride[k];
    }
  }
}

template <class Fn> void strided_loop_1(const Shape& shape, const Strides& s0, Fn&& fn) {
  strided_loop<1>(shape, {&s0}, [&](const std::array<int64_t, 1>& o) { fn(o[0]); });
}
template <class Fn>
void strided_loop_2(const Shape& shape, const Strides& s0, const Strides& s1, Fn&& fn) {
  strided_loop<2>(shape, {&s0, &s1}, [&](const std::array<int64_t, 2>& o) { fn(o[0], o[1]); });
}

}  // namespace gradus
