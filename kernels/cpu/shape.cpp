// CPU indexing kernels (see kernels/shape.h for the layouts and the determinism contract).
#include "kernels/shape.h"

#include <algorithm>
#include <cstdint>
#include <limits>

#include "kernels/registry.h"

namespace gradus::kernels {
namespace cpu {
namespace {

constexpr int64_t kParallelThreshold = 1 << 15;
// Columns of `inner` handled by one task of a scatter-add: wide enough to vectorise, narrow enough
// to give the threads work when outer is 1 (an embedding table).
constexpr int64_t kColumnBlock = 64;

// Flat position of the first index outside [0, n), or -1. A min-reduction, so the answer does not
// depend on the thread count.
int64_t first_out_of_range(const int64_t* index, int64_t count, int64_t n) {
  int64_t first = std::numeric_limits<int64_t>::max();
#pragma omp parallel for reduction(min : first) if (count > kParallelThreshold) schedule(static)
  for (int64_t p = 0; p < count; ++p)
    if (index[p] < 0 || index[p] >= n) first = std::min(first, p);
  return first == std::numeric_limits<int64_t>::max() ? -1 : first;
}

template <class T>
int64_t index_select(const void* xv, const int64_t* index, void* outv, int64_t outer, int64_t n,
                     int64_t K, int64_t inner) {
  if (int64_t bad = first_out_of_range(index, K, n); bad >= 0) return bad;
  const T* x = static_cast<const T*>(xv);
  T* out = static_cast<T*>(outv);
  const int64_t rows = outer * K;
#pragma omp parallel for if (rows * inner > kParallelThreshold) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r / K, k = r % K;
    const T* src = x + (o * n + index[k]) * inner;
    T* dst = out + r * inner;
    for (int64_t i = 0; i < inner; ++i) dst[i] = src[i];
  }
  return -1;
}

// Each task owns the columns [i0, i1) of one outer slice of grad_x, zeroes them, then adds the rows
// of grad_out in ascending k: the sum order is fixed by the index alone.
template <class T>
void index_select_backward(const void* gov, const int64_t* index, void* gxv, int64_t outer,
                           int64_t n, int64_t K, int64_t inner) {
  const T* go = static_cast<const T*>(gov);
  T* gx = static_cast<T*>(gxv);
  const int64_t blocks = (inner + kColumnBlock - 1) / kColumnBlock;
  const int64_t tasks = outer * blocks;
#pragma omp parallel for if ((n + K) * inner * outer > kParallelThreshold) schedule(static)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t o = t / blocks;
    const int64_t i0 = (t % blocks) * kColumnBlock, i1 = std::min(inner, i0 + kColumnBlock);
    T* gxo = gx + o * n * inner;
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = i0; i < i1; ++i) gxo[j * inner + i] = T(0);
    const T* goo = go + o * K * inner;
    for (int64_t k = 0; k < K; ++k) {
      T* dst = gxo + index[k] * inner;
      const T* src = goo + k * inner;
      for (int64_t i = i0; i < i1; ++i) dst[i] += src[i];
    }
  }
}

template <class T>
int64_t gather(const void* xv, const int64_t* index, void* outv, int64_t outer, int64_t n,
               int64_t K, int64_t inner) {
  if (int64_t bad = first_out_of_range(index, outer * K * inner, n); bad >= 0) return bad;
  const T* x = static_cast<const T*>(xv);
  T* out = static_cast<T*>(outv);
  const int64_t rows = outer * K;
#pragma omp parallel for if (rows * inner > kParallelThreshold) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r / K;
    const T* xo = x + o * n * inner;
    const int64_t* idx = index + r * inner;
    T* dst = out + r * inner;
    for (int64_t i = 0; i < inner; ++i) dst[i] = xo[idx[i] * inner + i];
  }
  return -1;
}

// Same ownership as index_select_backward: a task owns columns [i0, i1) of one outer slice and adds
// grad_out in ascending k, so repeated indices accumulate in a fixed order.
template <class T>
void gather_backward(const void* gov, const int64_t* index, void* gxv, int64_t outer, int64_t n,
                     int64_t K, int64_t inner) {
  const T* go = static_cast<const T*>(gov);
  T* gx = static_cast<T*>(gxv);
  const int64_t blocks = (inner + kColumnBlock - 1) / kColumnBlock;
  const int64_t tasks = outer * blocks;
#pragma omp parallel for if ((n + K) * inner * outer > kParallelThreshold) schedule(static)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t o = t / blocks;
    const int64_t i0 = (t % blocks) * kColumnBlock, i1 = std::min(inner, i0 + kColumnBlock);
    T* gxo = gx + o * n * inner;
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = i0; i < i1; ++i) gxo[j * inner + i] = T(0);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t* idx = index + (o * K + k) * inner;
      const T* src = go + (o * K + k) * inner;
      for (int64_t i = i0; i < i1; ++i) gxo[idx[i] * inner + i] += src[i];
    }
  }
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kIndexSelect, index_select);
GRADUS_REGISTER_CPU_KERNEL(kIndexSelectBackward, index_select_backward);
GRADUS_REGISTER_CPU_KERNEL(kGather, gather);
GRADUS_REGISTER_CPU_KERNEL(kGatherBackward, gather_backward);

}  // namespace cpu
}  // namespace gradus::kernels
