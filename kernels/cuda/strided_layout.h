// Strided layouts for the elementwise and copy kernels: K operands sharing one logical shape, each
// with its own element strides (0 on broadcast axes), reduced on the host to as few axes as the
// strides allow and passed to the kernel by value; and the index arithmetic that turns a
// row-major element index into each operand's element offset.
//
// Why the divider: a strided kernel turns each element's index into per-axis coordinates, one
// division per axis. A 64-bit integer division is a software routine of about a hundred
// instructions on a GPU, so with 3 or 4 axes the kernels were bound by that arithmetic, not by
// memory: on an H100 a (16, 12, 1024, 64) copy with a transposed operand took 123 us where its
// bytes need 25 us (docs/cuda.md, "Strided kernels"). When the element count fits in 31 bits
// (every tensor below 2^31 elements), each division is instead a multiply-high, an add and a shift
// with a magic number computed once on the host (IndexDivider; Granlund and Montgomery, "Division
// by invariant integers using multiplication", 1994). Larger tensors keep the 64-bit division.
//
// Plain C++ with __host__ __device__ functions: the CPU build compiles it too, so the tests check
// the divider and the offsets against plain division on the host (StridedLayout.*).
#pragma once

#include <array>
#include <cstdint>

#include "core/error.h"
#include "core/tensor.h"

#if defined(__CUDACC__)
#define GRADUS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define GRADUS_HOST_DEVICE inline
#endif
#if defined(__CUDA_ARCH__)  // the device pass: the host compiler does not know the pragma
#define GRADUS_UNROLL _Pragma("unroll")
#else
#define GRADUS_UNROLL
#endif

namespace gradus::cuda {

// n / divisor and n % divisor for any n < 2^31 and a divisor in [1, 2^31), without a division.
// shift = ceil(log2 divisor) and magic = floor(2^32 (2^shift - divisor) / divisor) + 1, so that
// 2^32 + magic = floor(2^(32 + shift) / divisor) + 1, and n / divisor = floor(n (2^32 + magic) /
// 2^(32 + shift)) = (mulhi(n, magic) + n) >> shift for every n < 2^32 (the paper's theorem 4.2:
// divisor (2^32 + magic) lies in (2^(32+shift), 2^(32+shift) + 2^shift]). The sum mulhi + n
// stays below 2^32 because n < 2^31.
struct IndexDivider {
  uint32_t divisor = 1, magic = 1, shift = 0;

  static IndexDivider make(uint32_t d) {
    GRADUS_CHECK(d >= 1 && d < (uint32_t{1} << 31), "IndexDivider",
                 "divisor must lie in [1, 2^31), found {}", d);
    IndexDivider r;
    r.divisor = d;
    while ((uint64_t{1} << r.shift) < d) ++r.shift;
    const uint64_t magic = ((uint64_t{1} << 32) * ((uint64_t{1} << r.shift) - d)) / d + 1;
    r.magic = static_cast<uint32_t>(magic);  // < 2^32: 2^shift - d < d
    return r;
  }

  GRADUS_HOST_DEVICE uint32_t div(uint32_t n) const {
#if defined(__CUDA_ARCH__)
    const uint32_t high = __umulhi(n, magic);
#else
    const uint32_t high = static_cast<uint32_t>((uint64_t{n} * magic) >> 32);
#endif
    return (high + n) >> shift;
  }
};

constexpr int kMaxDims = 12;
template <int K>
struct Layout {
  int ndim = 0;
  // Every element index fits in 31 bits: offsets() divides with `divider` in 32 bits.
  bool index32 = false;
  int64_t shape[kMaxDims];
  int64_t strides[K][kMaxDims];
  IndexDivider divider[kMaxDims];  // of shape[d], for d >= 1 (axis 0 needs no division)
};

// Drops size-1 axes and merges axes that are contiguous for every operand (as core/strided_loop.h
// does), so a contiguous operand set becomes one axis of stride 1 and a broadcast scalar one of 0.
template <int K>
Layout<K> make_layout(const Shape& shape, const std::array<const Strides*, K>& strides,
                      const char* op) {
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
  int64_t numel = 1;
  for (int d = 0; d < l.ndim; ++d) numel *= l.shape[d];
  l.index32 = numel < (int64_t{1} << 31);
  if (l.index32)
    for (int d = 1; d < l.ndim; ++d)
      l.divider[d] = IndexDivider::make(static_cast<uint32_t>(l.shape[d]));
  return l;
}

// True when every operand is one contiguous run (the vectorised kernels' precondition, with the
// pointers' alignment checked apart).
template <int K>
bool all_unit_stride(const Layout<K>& l) {
  if (l.ndim != 1) return false;
  for (int k = 0; k < K; ++k)
    if (l.strides[k][0] != 1) return false;
  return true;
}

// Element offsets of row-major element i (0 <= i < the layout's element count) for every operand.
// One axis (contiguous or a broadcast scalar) needs no division; axis 0 never needs one (what is
// left of i after the inner axes is its coordinate). The loops run over kMaxDims with a break, so
// the layout's fields are read at constant offsets (a kernel parameter indexed by a variable would
// be copied to local memory).
template <int K>
GRADUS_HOST_DEVICE void offsets(const Layout<K>& l, int64_t i, int64_t (&off)[K]) {
  if (l.ndim == 1) {
    GRADUS_UNROLL
    for (int k = 0; k < K; ++k) off[k] = i * l.strides[k][0];
    return;
  }
  GRADUS_UNROLL
  for (int k = 0; k < K; ++k) off[k] = 0;
  if (l.index32) {
    uint32_t rest = static_cast<uint32_t>(i);
    GRADUS_UNROLL
    for (int d = kMaxDims - 1; d >= 1; --d) {
      if (d >= l.ndim) continue;
      const uint32_t outer = l.divider[d].div(rest);
      const int64_t idx = rest - outer * l.divider[d].divisor;
      rest = outer;
      GRADUS_UNROLL
      for (int k = 0; k < K; ++k) off[k] += idx * l.strides[k][d];
    }
    GRADUS_UNROLL
    for (int k = 0; k < K; ++k) off[k] += static_cast<int64_t>(rest) * l.strides[k][0];
    return;
  }
  GRADUS_UNROLL
  for (int d = kMaxDims - 1; d >= 1; --d) {
    if (d >= l.ndim) continue;
    const int64_t outer = i / l.shape[d];
    const int64_t idx = i - outer * l.shape[d];
    i = outer;
    GRADUS_UNROLL
    for (int k = 0; k < K; ++k) off[k] += idx * l.strides[k][d];
  }
  GRADUS_UNROLL
  for (int k = 0; k < K; ++k) off[k] += i * l.strides[k][0];
}

}  // namespace gradus::cuda
