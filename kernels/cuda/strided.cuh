// Strided layouts for the elementwise and copy kernels: K operands sharing one logical shape, each
// with its own element strides (0 on broadcast axes), reduced on the host to as few axes as the
// strides allow and passed to the kernel by value.
#pragma once

#include <array>

#include "core/tensor.h"
#include "kernels/cuda/common.cuh"

namespace gradus::cuda {

constexpr int kMaxDims = 12;
template <int K> struct Layout {
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t strides[K][kMaxDims];
};

// Drops size-1 axes and merges axes that are contiguous for every operand (as core/strided_loop.h
// does), so a contiguous operand set becomes one axis of stride 1 and a broadcast scalar one of 0.
template <int K>
Layout<K> make_layout(const Shape& shape, const std::array<const Strides*, K>& strides, const char* op) {
  Layout<K> l;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = l.ndim > 0;
    for (int k = 0; k < K && merge; ++k)
      merge = l.strides[k][l.ndim - 1] == (*strides[k])[d] * shape[d];
    if (merge) {
      l.shape[l.ndim - 1] *= shape[d];
      for (int k = 0; k < K; ++k) l.strides[k][l.ndim - 1] = (*strides[k])[d];
      continue;
    }
    GRADUS_CHECK(l.ndim < kMaxDims, op, "shape {} has more than {} non-mergeable axes",
                 shape_str(shape), kMaxDims);
    l.shape[l.ndim] = shape[d];
    for (int k = 0; k < K; ++k) l.strides[k][l.ndim] = (*strides[k])[d];
    ++l.ndim;
  }
  if (l.ndim == 0) {  // a scalar or all size-1 axes: one element
    l.ndim = 1;
    l.shape[0] = 1;
    for (int k = 0; k < K; ++k) l.strides[k][0] = 0;
  }
  return l;
}

// True when every operand is one contiguous run (the vectorised kernels' precondition, with the
// pointers' alignment checked apart).
template <int K> bool all_unit_stride(const Layout<K>& l) {
  if (l.ndim != 1) return false;
  for (int k = 0; k < K; ++k)
    if (l.strides[k][0] != 1) return false;
  return true;
}

// Element offsets of row-major element i for every operand; one axis (contiguous or a broadcast
// scalar) needs no division.
template <int K> __device__ __forceinline__ void offsets(const Layout<K>& l, int64_t i, int64_t (&off)[K]) {
  if (l.ndim == 1) {
#pragma unroll
    for (int k = 0; k < K; ++k) off[k] = i * l.strides[k][0];
    return;
  }
#pragma unroll
  for (int k = 0; k < K; ++k) off[k] = 0;
  for (int d = l.ndim - 1; d >= 0; --d) {
    const int64_t idx = i % l.shape[d];
    i /= l.shape[d];
#pragma unroll
    for (int k = 0; k < K; ++k) off[k] += idx * l.strides[k][d];
  }
}

}  // namespace gradus::cuda
