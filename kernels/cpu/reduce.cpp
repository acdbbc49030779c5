// CPU reductions over x: (outer, reduce, inner) -> out: (outer, inner): sum/mean/max/min, max/min
// with their positions, variance and logsumexp.
#include "kernels/reduce.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/vec_math.h"
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

// ---- helpers for the kernels below: a fixed summation order, as sum_contiguous/sum_long ----

constexpr int64_t kLongBlock = 4096;  // block of a long row summed by one thread
constexpr int64_t kChunk = 256;       // inner columns handled together (vectorised) by one thread

// Sum of f(x[i]) over n contiguous values with 8 interleaved partial sums combined pairwise.
template <class T, class F>
T sum_map_contiguous(const T* x, int64_t n, F f) {
  T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += f(x[i + k]);
  for (int k = 0; i < n; ++i, ++k) acc[k] += f(x[i]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// The same for a long row: fixed blocks summed in parallel, then the partials summed in order, so
// the bits do not depend on the thread count.
template <class T, class F>
T sum_map_long(const T* x, int64_t n, F f) {
  if (n <= 4 * kLongBlock) return sum_map_contiguous(x, n, f);
  const int64_t blocks = (n + kLongBlock - 1) / kLongBlock;
  std::vector<T> partial(static_cast<size_t>(blocks));
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b)
    partial[b] =
        sum_map_contiguous(x + b * kLongBlock, std::min(kLongBlock, n - b * kLongBlock), f);
  return sum_map_contiguous(partial.data(), blocks, [](T v) { return v; });
}

// Largest value of a row, ignoring NaN (callers that need NaN to propagate get it from the sum).
template <class T>
T max_contiguous(const T* x, int64_t n) {
  T best = -std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < n; ++i) best = std::max(best, x[i]);
  return best;
}
template <class T>
T max_long(const T* x, int64_t n) {
  if (n <= 4 * kLongBlock) return max_contiguous(x, n);
  const int64_t blocks = (n + kLongBlock - 1) / kLongBlock;
  std::vector<T> partial(static_cast<size_t>(blocks));
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b)
    partial[b] = max_contiguous(x + b * kLongBlock, std::min(kLongBlock, n - b * kLongBlock));
  return max_contiguous(partial.data(), blocks);
}

// ---- reduce_arg_extreme ----

template <class T, bool kMax>
bool better(T v, T best) {
  return kMax ? v > best : v < best;
}

// First position of the extreme of x[0..n) (first NaN if any); n >= 1. Strict comparisons keep the
// first of equal values.
template <class T, bool kMax>
void arg_extreme_row(const T* x, int64_t n, T& value, int64_t& index) {
  T best = x[0];
  int64_t at = 0;
  if (best == best) {
    for (int64_t i = 1; i < n; ++i) {
      const T v = x[i];
      if (v != v) {
        best = v;
        at = i;
        break;
      }
      if (better<T, kMax>(v, best)) {
        best = v;
        at = i;
      }
    }
  }
  value = best;
  index = at;
}

template <class T, bool kMax>
void arg_extreme_impl(const T* x, T* out, int64_t* index, int64_t outer, int64_t reduce,
                      int64_t inner) {
  if (inner == 1 && outer == 1 && reduce > 4 * kLongBlock) {
    // One long row: the first extreme of each fixed block, then the blocks combined in order.
    const int64_t blocks = (reduce + kLongBlock - 1) / kLongBlock;
    std::vector<T> bval(static_cast<size_t>(blocks));
    std::vector<int64_t> bidx(static_cast<size_t>(blocks));
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      arg_extreme_row<T, kMax>(x + b * kLongBlock, std::min(kLongBlock, reduce - b * kLongBlock),
                               bval[b], bidx[b]);
      bidx[b] += b * kLongBlock;
    }
    T best = bval[0];
    int64_t at = bidx[0];
    for (int64_t b = 1; b < blocks && best == best; ++b) {
      if (bval[b] != bval[b] || better<T, kMax>(bval[b], best)) {
        best = bval[b];
        at = bidx[b];
      }
    }
    out[0] = best;
    index[0] = at;
    return;
  }
  if (inner == 1) {
#pragma omp parallel for if (outer * reduce > (1 << 15)) schedule(static)
    for (int64_t o = 0; o < outer; ++o)
      arg_extreme_row<T, kMax>(x + o * reduce, reduce, out[o], index[o]);
    return;
  }
  // inner > 1: walk the reduced axis outermost over a chunk of contiguous columns.
  const int64_t chunks = (inner + kChunk - 1) / kChunk;
#pragma omp parallel for collapse(2) if (outer * reduce * inner > (1 << 15)) schedule(static)
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t i0 = c * kChunk, i1 = std::min(inner, i0 + kChunk);
      const T* src = x + o * reduce * inner;
      T* dst = out + o * inner;
      int64_t* idx = index + o * inner;
      for (int64_t i = i0; i < i1; ++i) {
        dst[i] = src[i];
        idx[i] = 0;
      }
      for (int64_t r = 1; r < reduce; ++r)
        for (int64_t i = i0; i < i1; ++i) {
          const T v = src[r * inner + i];
          const T d = dst[i];
          if (d != d) continue;  // a NaN already won
          if (v != v || better<T, kMax>(v, d)) {
            dst[i] = v;
            idx[i] = r;
          }
        }
    }
  }
}

template <class T>
void reduce_arg_extreme(bool is_max, const void* x, void* out, int64_t* index, int64_t outer,
                        int64_t reduce, int64_t inner) {
  if (reduce <= 0) return;  // the op layer rejects empty reductions (no identity for max/min)
  if (is_max)
    arg_extreme_impl<T, true>(static_cast<const T*>(x), static_cast<T*>(out), index, outer, reduce,
                              inner);
  else
    arg_extreme_impl<T, false>(static_cast<const T*>(x), static_cast<T*>(out), index, outer, reduce,
                               inner);
}

template <class T>
void reduce_arg_extreme_backward(const void* grad_out_, const int64_t* index, void* grad_x_,
                                 int64_t outer, int64_t reduce, int64_t inner) {
  const T* g = static_cast<const T*>(grad_out_);
  T* gx = static_cast<T*>(grad_x_);
#pragma omp parallel for if (outer * reduce * inner > (1 << 15)) schedule(static)
  for (int64_t o = 0; o < outer; ++o) {
    T* block = gx + o * reduce * inner;
    std::fill(block, block + reduce * inner, T(0));
    for (int64_t i = 0; i < inner; ++i) block[index[o * inner + i] * inner + i] = g[o * inner + i];
  }
}

// ---- reduce_var ----

template <class T>
void reduce_var(const void* x_, void* mean_, void* var_, int64_t outer, int64_t reduce,
                int64_t inner, double divisor) {
  const T* x = static_cast<const T*>(x_);
  T* mean = static_cast<T*>(mean_);
  T* var = static_cast<T*>(var_);
  const T n = static_cast<T>(reduce);  // 0 gives a NaN mean, as torch.var of an empty tensor
  const T div = static_cast<T>(divisor);
  auto identity = [](T v) { return v; };
  if (inner == 1 && outer == 1) {
    const T m = sum_map_long(x, reduce, identity) / n;
    mean[0] = m;
    var[0] = sum_map_long(x, reduce, [m](T v) { return (v - m) * (v - m); }) / div;
    return;
  }
  if (inner == 1) {
#pragma omp parallel for if (outer * reduce > (1 << 15)) schedule(static)
    for (int64_t o = 0; o < outer; ++o) {
      const T* row = x + o * reduce;
      const T m = sum_map_contiguous(row, reduce, identity) / n;
      mean[o] = m;
      var[o] = sum_map_contiguous(row, reduce, [m](T v) { return (v - m) * (v - m); }) / div;
    }
    return;
  }
  const int64_t chunks = (inner + kChunk - 1) / kChunk;
#pragma omp parallel for collapse(2) if (outer * reduce * inner > (1 << 15)) schedule(static)
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t i0 = c * kChunk, i1 = std::min(inner, i0 + kChunk);
      const T* src = x + o * reduce * inner;
      T* m = mean + o * inner;
      T* v = var + o * inner;
      for (int64_t i = i0; i < i1; ++i) m[i] = v[i] = 0;
      for (int64_t r = 0; r < reduce; ++r)
        for (int64_t i = i0; i < i1; ++i) m[i] += src[r * inner + i];
      for (int64_t i = i0; i < i1; ++i) m[i] /= n;
      for (int64_t r = 0; r < reduce; ++r)
        for (int64_t i = i0; i < i1; ++i) {
          const T d = src[r * inner + i] - m[i];
          v[i] += d * d;
        }
      for (int64_t i = i0; i < i1; ++i) v[i] /= div;
    }
  }
}

// ---- reduce_logsumexp ----

// The shift subtracted before exp: the maximum, or 0 when it is infinite (an all -inf or empty row
// then sums to 0 and gives -inf; a row holding +inf gives +inf). A NaN reaches the sum.
template <class T>
T lse_shift(T m) {
  return std::isinf(m) ? T(0) : m;
}

template <class T>
void reduce_logsumexp(const void* x_, void* out_, int64_t outer, int64_t reduce, int64_t inner) {
  const T* x = static_cast<const T*>(x_);
  T* out = static_cast<T*>(out_);
  if (inner == 1 && outer == 1) {
    const T m = lse_shift(max_long(x, reduce));
    out[0] = std::log(sum_map_long(x, reduce, [m](T v) { return vexp(v - m); })) + m;
    return;
  }
  if (inner == 1) {
#pragma omp parallel for if (outer * reduce > (1 << 13)) schedule(static)
    for (int64_t o = 0; o < outer; ++o) {
      const T* row = x + o * reduce;
      const T m = lse_shift(max_contiguous(row, reduce));
      out[o] = std::log(sum_map_contiguous(row, reduce, [m](T v) { return vexp(v - m); })) + m;
    }
    return;
  }
  const int64_t chunks = (inner + kChunk - 1) / kChunk;
#pragma omp parallel for collapse(2) if (outer * reduce * inner > (1 << 13)) schedule(static)
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t i0 = c * kChunk, i1 = std::min(inner, i0 + kChunk);
      const T* src = x + o * reduce * inner;
      T* dst = out + o * inner;
      T m[kChunk];
      for (int64_t i = i0; i < i1; ++i) m[i - i0] = -std::numeric_limits<T>::infinity();
      for (int64_t r = 0; r < reduce; ++r)
        for (int64_t i = i0; i < i1; ++i) m[i - i0] = std::max(m[i - i0], src[r * inner + i]);
      for (int64_t i = i0; i < i1; ++i) {
        m[i - i0] = lse_shift(m[i - i0]);
        dst[i] = 0;
      }
      for (int64_t r = 0; r < reduce; ++r)
        for (int64_t i = i0; i < i1; ++i) dst[i] += vexp(src[r * inner + i] - m[i - i0]);
      for (int64_t i = i0; i < i1; ++i) dst[i] = std::log(dst[i]) + m[i - i0];
    }
  }
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kReduce, reduce);
GRADUS_REGISTER_CPU_KERNEL(kReduceArgExtreme, reduce_arg_extreme);
GRADUS_REGISTER_CPU_KERNEL(kReduceArgExtremeBackward, reduce_arg_extreme_backward);
GRADUS_REGISTER_CPU_KERNEL(kReduceVar, reduce_var);
GRADUS_REGISTER_CPU_KERNEL(kReduceLogSumExp, reduce_logsumexp);

}  // namespace gradus::kernels::cpu
