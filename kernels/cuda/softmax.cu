// CUDA fused softmax / log-softmax over x: (outer, n, inner) (see kernels/softmax.h; the semantics
// mirror kernels/cpu/softmax.cpp).
//
// inner == 1 (the last axis): a warp per row for short rows, a block per row otherwise; each row is
// three passes (maximum, sum of exp(x - max), write). inner > 1 (or rows of at most 16): a thread
// per (outer, inner) column walking the softmax axis, neighbouring threads on neighbouring columns
// (coalesced). Sums run in an order fixed by the shape (per-thread partial sums, then the fixed
// warp/block tree), so the bits do not depend on anything else.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/softmax.h"

namespace gradus::cuda {
namespace {

constexpr int64_t kTinyRow = 16;     // rows up to this long get a thread each (column kernel)
constexpr int64_t kShortRow = 1024;  // rows up to this long get a warp each

// ---- forward ----

// x, y: (outer, n), inner == 1. kRowThreads threads per row; thread t owns the element groups t,
// t + kRowThreads, ... A row that is all -inf (or holds +inf) gives NaN through x - max, as the
// CPU. The maximum ignores NaN (fmax, as the CPU's row maximum); a NaN reaches every output through
// the sum of exp.
template <int kRowThreads, bool kLog, class T>
__global__ void __launch_bounds__(kThreads)
    softmax_rows_kernel(const T* x, T* y, int64_t outer, int64_t n) {
  using A = acc_t<T>;
  constexpr int V = kVec<T>;
  constexpr int kRowsPerBlock = kThreads / kRowThreads;
  __shared__ A shared[32];
  const int t = threadIdx.x % kRowThreads;
  const int64_t groups = (n + V - 1) / V;
  // The loop bound is uniform over the block, so every thread reaches the block reductions.
  for (int64_t r0 = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock; r0 < outer;
       r0 += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t r = r0 + threadIdx.x / kRowThreads;
    const bool active = r < outer;
    const T* xr = x + (active ? r : 0) * n;
    T* yr = y + (active ? r : 0) * n;
    const bool xa = aligned16(xr), ya = aligned16(yr);
    A v[V];
    A m = A(-INFINITY);
    if (active)
      for (int64_t g = t; g < groups; g += kRowThreads) {
        const int count = load_group(xr, g * V, n, xa, v);
#pragma unroll
        for (int j = 0; j < V; ++j)
          if (j < count) m = fmax(m, v[j]);
      }
    m = row_max<kRowThreads>(m, shared);
    A s = A(0);
    if (active)
      for (int64_t g = t; g < groups; g += kRowThreads) {
        const int count = load_group(xr, g * V, n, xa, v);
#pragma unroll
        for (int j = 0; j < V; ++j)
          if (j < count) s += dexp(v[j] - m);
      }
    s = row_sum<kRowThreads>(s, shared);
    const A log_s = kLog ? dlog(s) : A(0);
    if (active)
      for (int64_t g = t; g < groups; g += kRowThreads) {
        const int count = load_group(xr, g * V, n, xa, v);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          if constexpr (kLog)
            v[j] = (v[j] - m) - log_s;
          else
            v[j] = dexp(v[j] - m) / s;
        }
        store_group(yr, g * V, count, ya, v);
      }
  }
}

// x, y: (outer, n, inner), inner > 1 or tiny rows. One thread per (o, i) column, three passes down
// the column.
template <bool kLog, class T>
__global__ void softmax_columns_kernel(const T* x, T* y, int64_t outer, int64_t n, int64_t inner) {
  using A = acc_t<T>;
  GRADUS_CUDA_LOOP(u, outer * inner) {
    const int64_t base = (u / inner) * n * inner + u % inner;
    const T* xc = x + base;
    T* yc = y + base;
    A m = A(-INFINITY);
    for (int64_t r = 0; r < n; ++r) m = fmax(m, load(xc + r * inner));
    A s = A(0);
    for (int64_t r = 0; r < n; ++r) s += dexp(load(xc + r * inner) - m);
    const A log_s = kLog ? dlog(s) : A(0);
    for (int64_t r = 0; r < n; ++r) {
      const A v = load(xc + r * inner);
      yc[r * inner] = from_acc<T>(kLog ? (v - m) - log_s : dexp(v - m) / s);
    }
  }
}

template <bool kLog, class T>
void softmax_impl(const void* x_, void* y_, int64_t outer, int64_t n, int64_t inner,
                  const char* name) {
  if (outer * n * inner == 0) return;
  const T* x = static_cast<const T*>(x_);
  T* y = static_cast<T*>(y_);
  if (inner == 1 && n > kTinyRow) {
    if (n <= kShortRow)
      softmax_rows_kernel<32, kLog, T>
          <<<grid_for(ceil_div(outer, kThreads / 32)), kThreads, 0, stream()>>>(x, y, outer, n);
    else
      softmax_rows_kernel<kThreads, kLog, T>
          <<<grid_for(outer), kThreads, 0, stream()>>>(x, y, outer, n);
  } else {
    softmax_columns_kernel<kLog, T>
        <<<elementwise_blocks(outer * inner), kThreads, 0, stream()>>>(x, y, outer, n, inner);
  }
  GRADUS_CUDA_CHECK_LAUNCH(name);
}

template <class T>
void softmax_forward(const void* x, void* y, int64_t outer, int64_t n, int64_t inner) {
  softmax_impl<false, T>(x, y, outer, n, inner, "softmax_forward");
}
template <class T>
void log_softmax_forward(const void* x, void* y, int64_t outer, int64_t n, int64_t inner) {
  softmax_impl<true, T>(x, y, outer, n, inner, "log_softmax_forward");
}

// ---- backward ----
// softmax:     gx = y * (g - sum(g * y))
// log_softmax: gx = g - exp(y) * sum(g)

// y, g, gx: (outer, n), inner == 1; rows laid out as in the forward.
template <int kRowThreads, bool kLog, class T>
__global__ void __launch_bounds__(kThreads)
    softmax_backward_rows_kernel(const T* y, const T* g, T* gx, int64_t outer, int64_t n) {
  using A = acc_t<T>;
  constexpr int V = kVec<T>;
  constexpr int kRowsPerBlock = kThreads / kRowThreads;
  __shared__ A shared[32];
  const int t = threadIdx.x % kRowThreads;
  const int64_t groups = (n + V - 1) / V;
  for (int64_t r0 = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock; r0 < outer;
       r0 += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t r = r0 + threadIdx.x / kRowThreads;
    const bool active = r < outer;
    const int64_t off = (active ? r : 0) * n;
    const T* yr = y + off;
    const T* gr = g + off;
    T* gxr = gx + off;
    const bool ya = aligned16(yr), ga = aligned16(gr), gxa = aligned16(gxr);
    A yv[V], gv[V];
    A s = A(0);
    if (active)
      for (int64_t g0 = t; g0 < groups; g0 += kRowThreads) {
        const int count = load_group(gr, g0 * V, n, ga, gv);
        if constexpr (!kLog) load_group(yr, g0 * V, n, ya, yv);
#pragma unroll
        for (int j = 0; j < V; ++j)
          if (j < count) s += kLog ? gv[j] : gv[j] * yv[j];
      }
    s = row_sum<kRowThreads>(s, shared);
    if (active)
      for (int64_t g0 = t; g0 < groups; g0 += kRowThreads) {
        const int count = load_group(gr, g0 * V, n, ga, gv);
        load_group(yr, g0 * V, n, ya, yv);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          if constexpr (kLog)
            gv[j] = gv[j] - dexp(yv[j]) * s;
          else
            gv[j] = yv[j] * (gv[j] - s);
        }
        store_group(gxr, g0 * V, count, gxa, gv);
      }
  }
}

// y, g, gx: (outer, n, inner), inner > 1 or tiny rows. One thread per (o, i) column.
template <bool kLog, class T>
__global__ void softmax_backward_columns_kernel(const T* y, const T* g, T* gx, int64_t outer,
                                                int64_t n, int64_t inner) {
  using A = acc_t<T>;
  GRADUS_CUDA_LOOP(u, outer * inner) {
    const int64_t base = (u / inner) * n * inner + u % inner;
    A s = A(0);
    for (int64_t r = 0; r < n; ++r) {
      const int64_t at = base + r * inner;
      s += kLog ? load(g + at) : load(g + at) * load(y + at);
    }
    for (int64_t r = 0; r < n; ++r) {
      const int64_t at = base + r * inner;
      const A yv = load(y + at), gv = load(g + at);
      gx[at] = from_acc<T>(kLog ? gv - dexp(yv) * s : yv * (gv - s));
    }
  }
}

template <bool kLog, class T>
void softmax_backward_impl(const void* y_, const void* g_, void* gx_, int64_t outer, int64_t n,
                           int64_t inner, const char* name) {
  if (outer * n * inner == 0) return;
  const T* y = static_cast<const T*>(y_);
  const T* g = static_cast<const T*>(g_);
  T* gx = static_cast<T*>(gx_);
  if (inner == 1 && n > kTinyRow) {
    if (n <= kShortRow)
      softmax_backward_rows_kernel<32, kLog, T>
          <<<grid_for(ceil_div(outer, kThreads / 32)), kThreads, 0, stream()>>>(y, g, gx, outer, n);
    else
      softmax_backward_rows_kernel<kThreads, kLog, T>
          <<<grid_for(outer), kThreads, 0, stream()>>>(y, g, gx, outer, n);
  } else {
    softmax_backward_columns_kernel<kLog, T>
        <<<elementwise_blocks(outer * inner), kThreads, 0, stream()>>>(y, g, gx, outer, n, inner);
  }
  GRADUS_CUDA_CHECK_LAUNCH(name);
}

template <class T>
void softmax_backward(const void* y, const void* g, void* gx, int64_t outer, int64_t n,
                      int64_t inner) {
  softmax_backward_impl<false, T>(y, g, gx, outer, n, inner, "softmax_backward");
}
template <class T>
void log_softmax_backward(const void* y, const void* g, void* gx, int64_t outer, int64_t n,
                          int64_t inner) {
  softmax_backward_impl<true, T>(y, g, gx, outer, n, inner, "log_softmax_backward");
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL(kernels::kSoftmaxForward, softmax_forward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kSoftmaxBackward, softmax_backward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kLogSoftmaxForward, log_softmax_forward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kLogSoftmaxBackward, log_softmax_backward);

}  // namespace gradus::cuda
