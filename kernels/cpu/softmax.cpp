// CPU fused softmax / log-softmax over x: (outer, n, inner) (see kernels/softmax.h).
//
// Every row (or, for inner > 1, every column of a chunk) is owned by one thread and its sums run in
// a fixed order, so the bits do not depend on the thread count.
#include "kernels/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/vec_math.h"
#include "kernels/registry.h"

namespace gradus::kernels::cpu {
namespace {

constexpr int64_t kChunk = 256;         // inner columns processed together by one thread
constexpr int64_t kParallel = 1 << 14;  // elements below which one thread does everything

// Row maximum ignoring NaN (a NaN still reaches every output through the sum of exp).
// A row that is all -inf keeps max = -inf, so x - max is NaN there: the output is NaN, as in
// PyTorch. A +inf entry likewise makes the row NaN.
template <class T>
T row_max(const T* x, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

// Pairwise combination of 8 interleaved partial sums (accurate, vectorisable, fixed order).
template <class T>
T combine8(const T* acc) {
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// ---- forward ----

// One row: x, y: (n,).
template <class T, bool kLog>
void softmax_row(const T* x, T* y, int64_t n) {
  const T m = row_max(x, n);
  T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  // Softmax stores exp(x - m) on the way so the last pass only divides; log-softmax only sums.
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) {
      const T e = vexp(x[i + k] - m);
      if constexpr (!kLog) y[i + k] = e;
      acc[k] += e;
    }
  for (int k = 0; i < n; ++i, ++k) {
    const T e = vexp(x[i] - m);
    if constexpr (!kLog) y[i] = e;
    acc[k] += e;
  }
  const T s = combine8(acc);
  if constexpr (kLog) {
    const T log_s = std::log(s);
    for (int64_t j = 0; j < n; ++j) y[j] = (x[j] - m) - log_s;
  } else {
    for (int64_t j = 0; j < n; ++j) y[j] /= s;
  }
}

// Columns [i0, i1) of one outer slice: x, y: (n, inner).
template <class T, bool kLog>
void softmax_columns(const T* x, T* y, int64_t n, int64_t inner, int64_t i0, int64_t i1) {
  T m[kChunk], s[kChunk];
  const int64_t w = i1 - i0;
  for (int64_t i = 0; i < w; ++i) {
    m[i] = -std::numeric_limits<T>::infinity();
    s[i] = 0;
  }
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < w; ++i) m[i] = std::max(m[i], x[r * inner + i0 + i]);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < w; ++i) {
      const T e = vexp(x[r * inner + i0 + i] - m[i]);
      if constexpr (!kLog) y[r * inner + i0 + i] = e;
      s[i] += e;
    }
  if constexpr (kLog) {
    for (int64_t i = 0; i < w; ++i) s[i] = std::log(s[i]);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < w; ++i) y[r * inner + i0 + i] = (x[r * inner + i0 + i] - m[i]) - s[i];
  } else {
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < w; ++i) y[r * inner + i0 + i] /= s[i];
  }
}

template <class T, bool kLog>
void softmax_impl(const void* x_, void* y_, int64_t outer, int64_t n, int64_t inner) {
  const T* x = static_cast<const T*>(x_);
  T* y = static_cast<T*>(y_);
  if (inner == 1) {
#pragma omp parallel for if (outer * n > kParallel && outer > 1) schedule(static)
    for (int64_t o = 0; o < outer; ++o) softmax_row<T, kLog>(x + o * n, y + o * n, n);
    return;
  }
  const int64_t chunks = (inner + kChunk - 1) / kChunk;
#pragma omp parallel for collapse(2) if (outer * n * inner > kParallel) schedule(static)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < chunks; ++c)
      softmax_columns<T, kLog>(x + o * n * inner, y + o * n * inner, n, inner, c * kChunk,
                               std::min(inner, (c + 1) * kChunk));
}

template <class T>
void softmax_forward(const void* x, void* y, int64_t outer, int64_t n, int64_t inner) {
  softmax_impl<T, false>(x, y, outer, n, inner);
}
template <class T>
void log_softmax_forward(const void* x, void* y, int64_t outer, int64_t n, int64_t inner) {
  softmax_impl<T, true>(x, y, outer, n, inner);
}

// ---- backward ----
// softmax:     gx = y * (g - sum(g * y))
// log_softmax: gx = g - exp(y) * sum(g)

template <class T, bool kLog>
void softmax_backward_row(const T* y, const T* g, T* gx, int64_t n) {
  T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += kLog ? g[i + k] : g[i + k] * y[i + k];
  for (int k = 0; i < n; ++i, ++k) acc[k] += kLog ? g[i] : g[i] * y[i];
  const T s = combine8(acc);
  if constexpr (kLog) {
    for (int64_t j = 0; j < n; ++j) gx[j] = g[j] - vexp(y[j]) * s;
  } else {
    for (int64_t j = 0; j < n; ++j) gx[j] = y[j] * (g[j] - s);
  }
}

template <class T, bool kLog>
void softmax_backward_columns(const T* y, const T* g, T* gx, int64_t n, int64_t inner, int64_t i0,
                              int64_t i1) {
  T s[kChunk];
  const int64_t w = i1 - i0;
  for (int64_t i = 0; i < w; ++i) s[i] = 0;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < w; ++i) {
      const int64_t at = r * inner + i0 + i;
      s[i] += kLog ? g[at] : g[at] * y[at];
    }
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < w; ++i) {
      const int64_t at = r * inner + i0 + i;
      if constexpr (kLog)
        gx[at] = g[at] - vexp(y[at]) * s[i];
      else
        gx[at] = y[at] * (g[at] - s[i]);
    }
}

template <class T, bool kLog>
void softmax_backward_impl(const void* y_, const void* g_, void* gx_, int64_t outer, int64_t n,
                           int64_t inner) {
  const T* y = static_cast<const T*>(y_);
  const T* g = static_cast<const T*>(g_);
  T* gx = static_cast<T*>(gx_);
  if (inner == 1) {
#pragma omp parallel for if (outer * n > kParallel && outer > 1) schedule(static)
    for (int64_t o = 0; o < outer; ++o)
      softmax_backward_row<T, kLog>(y + o * n, g + o * n, gx + o * n, n);
    return;
  }
  const int64_t chunks = (inner + kChunk - 1) / kChunk;
#pragma omp parallel for collapse(2) if (outer * n * inner > kParallel) schedule(static)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t base = o * n * inner;
      softmax_backward_columns<T, kLog>(y + base, g + base, gx + base, n, inner, c * kChunk,
                                        std::min(inner, (c + 1) * kChunk));
    }
}

template <class T>
void softmax_backward(const void* y, const void* g, void* gx, int64_t outer, int64_t n,
                      int64_t inner) {
  softmax_backward_impl<T, false>(y, g, gx, outer, n, inner);
}
template <class T>
void log_softmax_backward(const void* y, const void* g, void* gx, int64_t outer, int64_t n,
                          int64_t inner) {
  softmax_backward_impl<T, true>(y, g, gx, outer, n, inner);
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kSoftmaxForward, softmax_forward);
GRADUS_REGISTER_CPU_KERNEL(kSoftmaxBackward, softmax_backward);
GRADUS_REGISTER_CPU_KERNEL(kLogSoftmaxForward, log_softmax_forward);
GRADUS_REGISTER_CPU_KERNEL(kLogSoftmaxBackward, log_softmax_backward);

}  // namespace gradus::kernels::cpu
