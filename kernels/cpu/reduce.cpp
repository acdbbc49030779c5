// CPU reductions over x: (outer, reduce, inner) -> out: (outer, inner).
#include "kernels/reduce.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/registry.h"

namespace gradus::kernels::cpu {
namespace {

// Sum of n contiguous values with 8 interleaved partial sums combined pairwise: vectorisable, far
// more accurate than a single running sum in f32, and independent of the thread count.
template <class T> T sum_contiguous(const T* x, int64_t n) {
  T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += x[i + k];
  for (int k = 0; i < n; ++i, ++k) acc[k] += x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Blocked sum of a long row: fixed 4096-element blocks summed in parallel, then combined in order.
template <class T> T sum_long(const T* x, int64_t n) {
  constexpr int64_t kBlock = 4096;
  if (n <= 4 * kBlock) return sum_contiguous(x, n);
  int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<T> partial(static_cast<size_t>(blocks));
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b)
    partial[b] = sum_contiguous(x + b * kBlock, std::min(kBlock, n - b * kBlock));
  return sum_contiguous(partial.data(), blocks);
}

template <class T, bool kMax> T extreme_contiguous(const T* x, int64_t n) {
  T best = kMax ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    T v = x[i];
    if (v != v) return v;  // NaN wins, as in PyTorch
    best = kMax ? std::max(best, v) : std::min(best, v);
  }
  return best;
}

template <class T>
void reduce(ReduceOp op, const void* x_, void* out_, int64_t outer, int64_t reduce, int64_t inner) {
  const T* x = static_cast<const T*>(x_);
  T* out = static_cast<T*>(out_);
  const T scale = op == ReduceOp::mean ? T(1) / static_cast<T>(std::max<int64_t>(reduce, 1)) : T(1);
  if (inner == 1) {
    if (outer == 1 && (op == ReduceOp::sum || op == ReduceOp::mean)) {
      out[0] = sum_long(x, reduce) * scale;
      return;
    }
#pragma omp parallel for if (outer * reduce > (1 << 15)) schedule(static)
    for (int64_t o = 0; o < outer; ++o) {
      const T* row = x + o * reduce;
      switch (op) {
        case ReduceOp::sum:
        case ReduceOp::mean: out[o] = sum_contiguous(row, reduce) * scale; break;
        case ReduceOp::max: out[o] = extreme_contiguous<T, true>(row, reduce); break;
        case ReduceOp::min: out[o] = extreme_contiguous<T, false>(row, reduce); break;
      }
    }
    return;
  }
  // inner > 1: walk the reduced axis outermost so the inner axis stays contiguous (vectorised).
  // Work is split over (outer, chunks of inner); each output element is owned by one thread.
  constexpr int64_t kChunk = 256;
  const int64_t chunks = (inner + kChunk - 1) / kChunk;
#pragma omp parallel for collapse(2) if (outer * reduce * inner > (1 << 15)) schedule(static)
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t i0 = c * kChunk, i1 = std::min(inner, i0 + kChunk);
      T* dst = out + o * inner;
      const T* src = x + o * reduce * inner;
      if (op == ReduceOp::sum || op == ReduceOp::mean) {
        for (int64_t i = i0; i < i1; ++i) dst[i] = 0;
        for (int64_t r = 0; r < reduce; ++r)
          for (int64_t i = i0; i < i1; ++i) dst[i] += src[r * inner + i];
        for (int64_t i = i0; i < i1; ++i) dst[i] *= scale;
      } else {
        const bool is_max = op == ReduceOp::max;
        const T init = is_max ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
        for (int64_t i = i0; i < i1; ++i) dst[i] = init;
        for (int64_t r = 0; r < reduce; ++r)
          for (int64_t i = i0; i < i1; ++i) {
            T v = src[r * inner + i];
            T& d = dst[i];
            if (d != d) continue;  // NaN already seen
            d = (v != v) ? v : (is_max ? std::max(d, v) : std::min(d, v));
          }
      }
    }
  }
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kReduce, reduce);

}  // namespace gradus::kernels::cpu
