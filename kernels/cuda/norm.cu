// CUDA RMSNorm and LayerNorm over x: (rows, cols), forward and backward (see kernels/norm.h for the
// contract; the semantics mirror kernels/cpu/norm.cpp).
//
// Row work (statistics, y, grad_x) runs a warp per row for short rows and a block per row
// otherwise (thread t of a row takes the element groups t, t + threads, ...). The per-row scalars
// (mean square, variance, 1/sqrt) are finished in double as on the CPU, and the statistics are
// stored in the element type and read back rounded, so the forward and the backward use the same
// values. grad_weight / grad_bias are reduced over rows without atomics: a thread per (row chunk,
// column) sums its chunk (chunks fixed by the row count), then a second kernel adds the chunk sums
// of each column in a fixed order. Bit-for-bit reproducible.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "core/tensor.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rounded.cuh"
#include "kernels/norm.h"

namespace gradus::cuda {
namespace {

constexpr int64_t kShortRow = 1024;    // rows up to this long get a warp each
constexpr int64_t kMinChunkRows = 16;  // parameter gradients: at least this many rows per chunk
constexpr int64_t kMaxChunks = 256;    // ... and at most this many chunks

// v[j] *= w[k0 + j] (w optional: nullptr leaves v as it is).
template <class T>
__device__ __forceinline__ void scale_by(const T* w, int64_t k0, int64_t n, bool aligned,
                                         acc_t<T>* v) {
  if (w == nullptr) return;
  acc_t<T> wv[kVec<T>];
  const int count = load_group(w, k0, n, aligned, wv);
#pragma unroll
  for (int j = 0; j < kVec<T>; ++j)
    if (j < count) v[j] *= wv[j];
}

// ---------------------------------------------------------------- RMSNorm

// x, y: (rows, cols); weight: (cols) or nullptr; rstd: (rows).
// rstd = 1 / sqrt(mean(x^2) + eps) rounded to T; y = (x * rstd) * weight.
// add_rms_norm: with delta: (rows, cols) of D (T or narrower), the row is first sum = x + delta,
// rounded to T and stored, and the norm is of sum: each thread reads back the groups it wrote.
// y_narrow (nullptr for none): y again in N, each value rounded from y's (the products' copy).
template <int kRowThreads, class T, class D = T, class N = T>
__global__ void __launch_bounds__(kThreads)
    rms_norm_forward_kernel(const T* x, const D* delta, T* sum, const T* w, T* y, N* y_narrow,
                            T* rstd, int64_t rows, int64_t cols, double inv_cols, double eps) {
  using A = acc_t<T>;
  constexpr int V = kVec<T>;
  __shared__ A shared[32];
  const int t = threadIdx.x % kRowThreads;
  const int64_t groups = (cols + V - 1) / V;
  const bool wa = aligned16(w);
  constexpr int kRowsPerBlock = kThreads / kRowThreads;
  // The loop bound is uniform over the block, so every thread reaches the block reductions;
  // `active` is false for the padding rows of the last block (a whole warp at a time).
  for (int64_t r0 = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock; r0 < rows;
       r0 += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t r = r0 + threadIdx.x / kRowThreads;
    const bool active = r < rows;
    const int64_t off = (active ? r : 0) * cols;
    const T* xr = x + off;
    T* yr = y + off;
    const bool xa = aligned16(xr), ya = aligned16(yr);
    // The row the norm reads: x, or the sum written in the first pass.
    const T* nr = delta != nullptr ? sum + off : xr;
    const bool na = aligned16(nr);
    A v[V];
    A ss = A(0);
    if (active)
      for (int64_t g = t; g < groups; g += kRowThreads) {
        const int count = load_group(xr, g * V, cols, xa, v);
        if (delta != nullptr) {
#pragma unroll
          for (int j = 0; j < V; ++j)
            if (j < count)  // rounded to T, as the composite's add stores it
              v[j] = to_acc(from_acc<T>(v[j] + static_cast<A>(load(delta + off + g * V + j))));
          store_group(sum + off, g * V, count, na, v);
        }
#pragma unroll
        for (int j = 0; j < V; ++j)
          if (j < count) ss += v[j] * v[j];
      }
    ss = row_sum<kRowThreads>(ss, shared);
    const T rs_t = from_acc<T>(1.0 / sqrt(static_cast<double>(ss) * inv_cols + eps));
    if (!active) continue;
    if (t == 0) rstd[r] = rs_t;
    const A rs = to_acc(rs_t);
    for (int64_t g = t; g < groups; g += kRowThreads) {
      const int count = load_group(nr, g * V, cols, na, v);
#pragma unroll
      for (int j = 0; j < V; ++j) v[j] *= rs;
      scale_by(w, g * V, cols, wa, v);
      store_group(yr, g * V, count, ya, v);
      if (y_narrow != nullptr)
#pragma unroll
        for (int j = 0; j < V; ++j)  // rounded to T, then to N, as a cast of y would
          if (j < count)
            y_narrow[off + g * V + j] =
                from_acc<N>(static_cast<acc_t<N>>(to_acc(from_acc<T>(v[j]))));
    }
  }
}

// With xhat = x * rstd and g = grad_y * weight: grad_x = rstd * (g - xhat * mean(g * xhat)).
// x, grad_y, grad_x: (rows, cols); weight: (cols) or nullptr; rstd: (rows).
// add_rms_norm (x is its sum): gsum (rows, cols) or nullptr is added to grad_x (rounded to T first,
// as the composite stores it), which goes to gx (T) and gdelta (D), each (rows, cols) or nullptr.
template <int kRowThreads, class T, class D = T>
__global__ void __launch_bounds__(kThreads)
    rms_norm_backward_kernel(const T* x, const T* w, const T* rstd, const T* gy, const T* gsum,
                             T* gx, D* gdelta, int64_t rows, int64_t cols, double inv_cols) {
  using A = acc_t<T>;
  constexpr int V = kVec<T>;
  __shared__ A shared[32];
  const int t = threadIdx.x % kRowThreads;
  const int64_t groups = (cols + V - 1) / V;
  const bool wa = aligned16(w);
  constexpr int kRowsPerBlock = kThreads / kRowThreads;
  // The loop bound is uniform over the block, so every thread reaches the block reductions;
  // `active` is false for the padding rows of the last block (a whole warp at a time).
  for (int64_t r0 = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock; r0 < rows;
       r0 += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t r = r0 + threadIdx.x / kRowThreads;
    const bool active = r < rows;
    const int64_t off = (active ? r : 0) * cols;
    const T* xr = x + off;
    const T* gyr = gy + off;
    const bool xa = aligned16(xr), ga = aligned16(gyr);
    const bool gxa = gx != nullptr && aligned16(gx + off);
    const bool gsa = gsum != nullptr && aligned16(gsum + off);
    const A rs = active ? load(rstd + r) : A(0);
    A xv[V], gv[V];
    A d = A(0);
    if (active)
      for (int64_t g = t; g < groups; g += kRowThreads) {
        const int count = load_group(xr, g * V, cols, xa, xv);
        load_group(gyr, g * V, cols, ga, gv);
        scale_by(w, g * V, cols, wa, gv);
#pragma unroll
        for (int j = 0; j < V; ++j)
          if (j < count) d += gv[j] * (xv[j] * rs);
      }
    d = row_sum<kRowThreads>(d, shared);
    if (!active) continue;
    const A md = static_cast<A>(static_cast<double>(d) * inv_cols);
    for (int64_t g = t; g < groups; g += kRowThreads) {
      const int count = load_group(xr, g * V, cols, xa, xv);
      load_group(gyr, g * V, cols, ga, gv);
      scale_by(w, g * V, cols, wa, gv);
#pragma unroll
      for (int j = 0; j < V; ++j) gv[j] = rs * (gv[j] - (xv[j] * rs) * md);
      if (gsum != nullptr) {
        A sv[V];
        load_group(gsum + off, g * V, cols, gsa, sv);
#pragma unroll
        for (int j = 0; j < V; ++j)  // add_rn: never contracted into the product above
          if (j < count) gv[j] = add_rn(to_acc(from_acc<T>(gv[j])), sv[j]);
      }
      if (gx != nullptr) store_group(gx + off, g * V, count, gxa, gv);
      if (gdelta != nullptr)
#pragma unroll
        for (int j = 0; j < V; ++j)  // rounded to T, then to D, as the composite's cast back
          if (j < count)
            gdelta[off + g * V + j] =
                from_acc<D>(static_cast<acc_t<D>>(to_acc(from_acc<T>(gv[j]))));
    }
  }
}

// ---------------------------------------------------------------- LayerNorm

// x, y: (rows, cols); weight, bias: (cols) or nullptr; mean, rstd: (rows). Two passes (mean, then
// the mean square deviation from it); y = ((x - mean) * rstd) * weight + bias with mean and rstd
// rounded to T, as the backward reads them.
template <int kRowThreads, class T>
__global__ void __launch_bounds__(kThreads)
    layer_norm_forward_kernel(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd,
                              int64_t rows, int64_t cols, double inv_cols, double eps) {
  using A = acc_t<T>;
  constexpr int V = kVec<T>;
  __shared__ A shared[32];
  const int t = threadIdx.x % kRowThreads;
  const int64_t groups = (cols + V - 1) / V;
  const bool wa = aligned16(w), ba = aligned16(b);
  constexpr int kRowsPerBlock = kThreads / kRowThreads;
  // The loop bound is uniform over the block, so every thread reaches the block reductions;
  // `active` is false for the padding rows of the last block (a whole warp at a time).
  for (int64_t r0 = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock; r0 < rows;
       r0 += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t r = r0 + threadIdx.x / kRowThreads;
    const bool active = r < rows;
    const T* xr = x + (active ? r : 0) * cols;
    T* yr = y + (active ? r : 0) * cols;
    const bool xa = aligned16(xr), ya = aligned16(yr);
    A v[V];
    A s = A(0);
    if (active)
      for (int64_t g = t; g < groups; g += kRowThreads) {
        const int count = load_group(xr, g * V, cols, xa, v);
#pragma unroll
        for (int j = 0; j < V; ++j)
          if (j < count) s += v[j];
      }
    s = row_sum<kRowThreads>(s, shared);
    const double mu = static_cast<double>(s) * inv_cols;
    const A mu_a = static_cast<A>(mu);
    A ss = A(0);
    if (active)
      for (int64_t g = t; g < groups; g += kRowThreads) {
        const int count = load_group(xr, g * V, cols, xa, v);
#pragma unroll
        for (int j = 0; j < V; ++j)
          if (j < count) ss += (v[j] - mu_a) * (v[j] - mu_a);
      }
    ss = row_sum<kRowThreads>(ss, shared);
    const T m_t = from_acc<T>(mu);
    const T rs_t = from_acc<T>(1.0 / sqrt(static_cast<double>(ss) * inv_cols + eps));
    if (!active) continue;
    if (t == 0) {
      mean[r] = m_t;
      rstd[r] = rs_t;
    }
    const A m = to_acc(m_t), rs = to_acc(rs_t);
    for (int64_t g = t; g < groups; g += kRowThreads) {
      const int count = load_group(xr, g * V, cols, xa, v);
#pragma unroll
      for (int j = 0; j < V; ++j) v[j] = (v[j] - m) * rs;
      scale_by(w, g * V, cols, wa, v);
      if (b != nullptr) {
        A bv[V];
        load_group(b, g * V, cols, ba, bv);
#pragma unroll
        for (int j = 0; j < V; ++j)
          if (j < count) v[j] += bv[j];
      }
      store_group(yr, g * V, count, ya, v);
    }
  }
}

// With xhat = (x - mean) * rstd and g = grad_y * weight:
//   grad_x = rstd * (g - mean(g) - xhat * mean(g * xhat)).
// x, grad_y, grad_x: (rows, cols); weight: (cols) or nullptr; mean, rstd: (rows).
template <int kRowThreads, class T>
__global__ void __launch_bounds__(kThreads)
    layer_norm_backward_kernel(const T* x, const T* w, const T* mean, const T* rstd, const T* gy,
                               T* gx, int64_t rows, int64_t cols, double inv_cols) {
  using A = acc_t<T>;
  constexpr int V = kVec<T>;
  __shared__ A shared[32];
  const int t = threadIdx.x % kRowThreads;
  const int64_t groups = (cols + V - 1) / V;
  const bool wa = aligned16(w);
  constexpr int kRowsPerBlock = kThreads / kRowThreads;
  // The loop bound is uniform over the block, so every thread reaches the block reductions;
  // `active` is false for the padding rows of the last block (a whole warp at a time).
  for (int64_t r0 = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock; r0 < rows;
       r0 += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t r = r0 + threadIdx.x / kRowThreads;
    const bool active = r < rows;
    const int64_t off = (active ? r : 0) * cols;
    const T* xr = x + off;
    const T* gyr = gy + off;
    T* gxr = gx + off;
    const bool xa = aligned16(xr), ga = aligned16(gyr), gxa = aligned16(gxr);
    const A m = active ? load(mean + r) : A(0), rs = active ? load(rstd + r) : A(0);
    A xv[V], gv[V];
    A sg = A(0), sgx = A(0);
    if (active)
      for (int64_t g = t; g < groups; g += kRowThreads) {
        const int count = load_group(xr, g * V, cols, xa, xv);
        load_group(gyr, g * V, cols, ga, gv);
        scale_by(w, g * V, cols, wa, gv);
#pragma unroll
        for (int j = 0; j < V; ++j)
          if (j < count) {
            sg += gv[j];
            sgx += gv[j] * ((xv[j] - m) * rs);
          }
      }
    sg = row_sum<kRowThreads>(sg, shared);
    sgx = row_sum<kRowThreads>(sgx, shared);
    if (!active) continue;
    const A mg = static_cast<A>(static_cast<double>(sg) * inv_cols);
    const A mgx = static_cast<A>(static_cast<double>(sgx) * inv_cols);
    for (int64_t g = t; g < groups; g += kRowThreads) {
      const int count = load_group(xr, g * V, cols, xa, xv);
      load_group(gyr, g * V, cols, ga, gv);
      scale_by(w, g * V, cols, wa, gv);
#pragma unroll
      for (int j = 0; j < V; ++j) gv[j] = rs * (gv[j] - mg - ((xv[j] - m) * rs) * mgx);
      store_group(gxr, g * V, count, gxa, gv);
    }
  }
}

// ---------------------------------------------------------------- weight / bias gradients

// x, grad_y: (rows, cols); mean: (rows) or nullptr (RMSNorm: xhat = x * rstd); rstd: (rows).
// partial_w, partial_b (each nullptr when not wanted): (chunks, cols), the sums over the rows
// [b * chunk_rows, (b + 1) * chunk_rows) of grad_y * xhat and of grad_y. One thread per
// (chunk, column), walking its rows in order; neighbouring threads on neighbouring columns.
template <class T>
__global__ void norm_param_partials_kernel(const T* x, const T* mean, const T* rstd, const T* gy,
                                           acc_t<T>* partial_w, acc_t<T>* partial_b, int64_t rows,
                                           int64_t cols, int64_t chunk_rows, int64_t chunks) {
  using A = acc_t<T>;
  GRADUS_CUDA_LOOP(u, chunks * cols) {
    const int64_t c = u % cols, r0 = (u / cols) * chunk_rows;
    const int64_t r1 = rows < r0 + chunk_rows ? rows : r0 + chunk_rows;
    A sw = A(0), sb = A(0);
#pragma unroll 4
    for (int64_t r = r0; r < r1; ++r) {
      const A g = load(gy + r * cols + c);
      if (partial_w != nullptr) {
        const A xv = load(x + r * cols + c), rs = load(rstd + r);
        const A xhat = mean != nullptr ? (xv - load(mean + r)) * rs : xv * rs;
        sw += g * xhat;
      }
      sb += g;
    }
    if (partial_w != nullptr) partial_w[u] = sw;
    if (partial_b != nullptr) partial_b[u] = sb;
  }
}

// partial: (chunks, cols) -> out: (cols). A block takes 32 columns; its 8 warps sum chunks
// w, w + 8, ... of each column, then the 8 sums are added in warp order (a fixed order; no
// atomics). chunks == 0 (no rows) writes zeros.
template <class T>
__global__ void __launch_bounds__(kThreads)
    sum_chunks_kernel(const acc_t<T>* partial, T* out, int64_t chunks, int64_t cols) {
  using A = acc_t<T>;
  constexpr int kWarps = kThreads / 32;
  __shared__ A shared[kWarps][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t c0 = static_cast<int64_t>(blockIdx.x) * 32; c0 < cols;
       c0 += static_cast<int64_t>(gridDim.x) * 32) {
    const int64_t c = c0 + lane;
    A s = A(0);
    if (c < cols)
      for (int64_t b = warp; b < chunks; b += kWarps) s += partial[b * cols + c];
    shared[warp][lane] = s;
    __syncthreads();
    if (warp == 0 && c < cols) {
      A total = shared[0][lane];
#pragma unroll
      for (int k = 1; k < kWarps; ++k) total += shared[k][lane];
      out[c] = from_acc<T>(total);
    }
    __syncthreads();
  }
}

// grad_weight = sum over rows of grad_y * xhat, grad_bias = sum over rows of grad_y (either may be
// nullptr). The row chunks depend on the row count alone.
template <class T>
void param_grads(const T* x, const T* mean, const T* rstd, const T* gy, T* gw, T* gb, int64_t rows,
                 int64_t cols, const char* name) {
  using A = acc_t<T>;
  if (cols == 0 || (gw == nullptr && gb == nullptr)) return;
  const int64_t chunk_rows = std::max(kMinChunkRows, ceil_div(rows, kMaxChunks));
  const int64_t chunks = ceil_div(rows, chunk_rows);
  // Stream-ordered caching allocator: the buffers may be released right after the launches.
  const Shape shape{std::max<int64_t>(chunks * cols, 1)};
  Tensor hold_w, hold_b;
  A* pw = nullptr;
  A* pb = nullptr;
  if (gw != nullptr) {
    hold_w = Tensor::empty(shape, acc_dtype<A>(), kGPU);
    pw = static_cast<A*>(hold_w.raw_data());
  }
  if (gb != nullptr) {
    hold_b = Tensor::empty(shape, acc_dtype<A>(), kGPU);
    pb = static_cast<A*>(hold_b.raw_data());
  }
  if (chunks > 0) {
    norm_param_partials_kernel<T><<<elementwise_blocks(chunks * cols), kThreads, 0, stream()>>>(
        x, mean, rstd, gy, pw, pb, rows, cols, chunk_rows, chunks);
    GRADUS_CUDA_CHECK_LAUNCH(name);
  }
  if (gw != nullptr) {
    sum_chunks_kernel<T>
        <<<grid_for(ceil_div(cols, 32)), kThreads, 0, stream()>>>(pw, gw, chunks, cols);
    GRADUS_CUDA_CHECK_LAUNCH(name);
  }
  if (gb != nullptr) {
    sum_chunks_kernel<T>
        <<<grid_for(ceil_div(cols, 32)), kThreads, 0, stream()>>>(pb, gb, chunks, cols);
    GRADUS_CUDA_CHECK_LAUNCH(name);
  }
}

double inverse_cols(int64_t cols) { return 1.0 / static_cast<double>(std::max<int64_t>(cols, 1)); }

// ---------------------------------------------------------------- entry points

// Launches rms_norm_forward_kernel, a warp per row for short rows and a block per row otherwise.
// delta and sum: nullptr for rms_norm; y_narrow: nullptr for no narrow copy.
template <class T, class D, class N>
void launch_rms_norm_forward(const T* x, const D* delta, T* sum, const T* w, T* y, N* y_narrow,
                             T* rstd, int64_t rows, int64_t cols, double eps, const char* name) {
  if (rows == 0) return;  // cols == 0 still writes each row's rstd (1 / sqrt(eps)), as the CPU
  const double inv_cols = inverse_cols(cols);
  if (cols <= kShortRow)
    rms_norm_forward_kernel<32, T, D, N>
        <<<grid_for(ceil_div(rows, kThreads / 32)), kThreads, 0, stream()>>>(
            x, delta, sum, w, y, y_narrow, rstd, rows, cols, inv_cols, eps);
  else
    rms_norm_forward_kernel<kThreads, T, D, N><<<grid_for(rows), kThreads, 0, stream()>>>(
        x, delta, sum, w, y, y_narrow, rstd, rows, cols, inv_cols, eps);
  GRADUS_CUDA_CHECK_LAUNCH(name);
}

// Calls fn(N{}) for y_narrow's element type: T when there is none, else narrow_dtype's.
template <class T, class Fn>
void dispatch_narrow(const void* y_narrow, DType narrow_dtype, const char* kernel, Fn&& fn) {
  if (y_narrow == nullptr) return fn(T{});
  dispatch_same_or_narrower<T>(narrow_dtype, kernel, std::forward<Fn>(fn));
}

// Launches rms_norm_backward_kernel (when a row gradient is wanted), then the weight gradient.
template <class T, class D>
void launch_rms_norm_backward(const T* x, const T* w, const T* rstd, const T* gy, const T* gsum,
                              T* gx, D* gdelta, T* gw, int64_t rows, int64_t cols,
                              const char* name) {
  const double inv_cols = inverse_cols(cols);
  if ((gx != nullptr || gdelta != nullptr) && rows * cols > 0) {
    if (cols <= kShortRow)
      rms_norm_backward_kernel<32, T, D>
          <<<grid_for(ceil_div(rows, kThreads / 32)), kThreads, 0, stream()>>>(
              x, w, rstd, gy, gsum, gx, gdelta, rows, cols, inv_cols);
    else
      rms_norm_backward_kernel<kThreads, T, D><<<grid_for(rows), kThreads, 0, stream()>>>(
          x, w, rstd, gy, gsum, gx, gdelta, rows, cols, inv_cols);
    GRADUS_CUDA_CHECK_LAUNCH(name);
  }
  param_grads<T>(x, nullptr, rstd, gy, gw, nullptr, rows, cols, name);
}

template <class T>
void rms_norm_forward(const void* x, const void* w, void* y, void* rstd, int64_t rows, int64_t cols,
                      double eps, void* y_narrow, DType narrow_dtype) {
  dispatch_narrow<T>(y_narrow, narrow_dtype, kernels::kRmsNormForward, [&](auto nz) {
    using N = decltype(nz);
    launch_rms_norm_forward<T, T, N>(
        static_cast<const T*>(x), nullptr, nullptr, static_cast<const T*>(w), static_cast<T*>(y),
        static_cast<N*>(y_narrow), static_cast<T*>(rstd), rows, cols, eps, "rms_norm_forward");
  });
}

template <class T>
void rms_norm_backward(const void* x, const void* w, const void* rstd, const void* gy, void* gx,
                       void* gw, int64_t rows, int64_t cols) {
  launch_rms_norm_backward<T, T>(static_cast<const T*>(x), static_cast<const T*>(w),
                                 static_cast<const T*>(rstd), static_cast<const T*>(gy), nullptr,
                                 static_cast<T*>(gx), nullptr, static_cast<T*>(gw), rows, cols,
                                 "rms_norm_backward");
}

template <class T>
void add_rms_norm_forward(const void* x, const void* delta, DType delta_dtype, const void* w,
                          void* sum, void* y, void* rstd, int64_t rows, int64_t cols, double eps,
                          void* y_narrow, DType narrow_dtype) {
  dispatch_same_or_narrower<T>(delta_dtype, kernels::kAddRmsNormForward, [&](auto d) {
    dispatch_narrow<T>(y_narrow, narrow_dtype, kernels::kAddRmsNormForward, [&](auto nz) {
      using D = decltype(d);
      using N = decltype(nz);
      launch_rms_norm_forward<T, D, N>(
          static_cast<const T*>(x), static_cast<const D*>(delta), static_cast<T*>(sum),
          static_cast<const T*>(w), static_cast<T*>(y), static_cast<N*>(y_narrow),
          static_cast<T*>(rstd), rows, cols, eps, "add_rms_norm_forward");
    });
  });
}

template <class T>
void add_rms_norm_backward(const void* sum, const void* w, const void* rstd, const void* gy,
                           const void* gsum, void* gx, void* gdelta, DType delta_dtype, void* gw,
                           int64_t rows, int64_t cols) {
  dispatch_same_or_narrower<T>(delta_dtype, kernels::kAddRmsNormBackward, [&](auto d) {
    using D = decltype(d);
    launch_rms_norm_backward<T, D>(
        static_cast<const T*>(sum), static_cast<const T*>(w), static_cast<const T*>(rstd),
        static_cast<const T*>(gy), static_cast<const T*>(gsum), static_cast<T*>(gx),
        static_cast<D*>(gdelta), static_cast<T*>(gw), rows, cols, "add_rms_norm_backward");
  });
}

template <class T>
void layer_norm_forward(const void* x_, const void* w_, const void* b_, void* y_, void* mean_,
                        void* rstd_, int64_t rows, int64_t cols, double eps) {
  if (rows == 0) return;  // cols == 0 still writes each row's mean (0) and rstd, as the CPU
  const T* x = static_cast<const T*>(x_);
  const T* w = static_cast<const T*>(w_);
  const T* b = static_cast<const T*>(b_);
  T* y = static_cast<T*>(y_);
  T* mean = static_cast<T*>(mean_);
  T* rstd = static_cast<T*>(rstd_);
  const double inv_cols = inverse_cols(cols);
  if (cols <= kShortRow)
    layer_norm_forward_kernel<32, T>
        <<<grid_for(ceil_div(rows, kThreads / 32)), kThreads, 0, stream()>>>(
            x, w, b, y, mean, rstd, rows, cols, inv_cols, eps);
  else
    layer_norm_forward_kernel<kThreads, T><<<grid_for(rows), kThreads, 0, stream()>>>(
        x, w, b, y, mean, rstd, rows, cols, inv_cols, eps);
  GRADUS_CUDA_CHECK_LAUNCH("layer_norm_forward");
}

template <class T>
void layer_norm_backward(const void* x_, const void* w_, const void* mean_, const void* rstd_,
                         const void* gy_, void* gx_, void* gw_, void* gb_, int64_t rows,
                         int64_t cols) {
  const T* x = static_cast<const T*>(x_);
  const T* w = static_cast<const T*>(w_);
  const T* mean = static_cast<const T*>(mean_);
  const T* rstd = static_cast<const T*>(rstd_);
  const T* gy = static_cast<const T*>(gy_);
  T* gx = static_cast<T*>(gx_);
  const double inv_cols = inverse_cols(cols);
  if (gx != nullptr && rows * cols > 0) {
    if (cols <= kShortRow)
      layer_norm_backward_kernel<32, T>
          <<<grid_for(ceil_div(rows, kThreads / 32)), kThreads, 0, stream()>>>(
              x, w, mean, rstd, gy, gx, rows, cols, inv_cols);
    else
      layer_norm_backward_kernel<kThreads, T><<<grid_for(rows), kThreads, 0, stream()>>>(
          x, w, mean, rstd, gy, gx, rows, cols, inv_cols);
    GRADUS_CUDA_CHECK_LAUNCH("layer_norm_backward");
  }
  param_grads<T>(x, mean, rstd, gy, static_cast<T*>(gw_), static_cast<T*>(gb_), rows, cols,
                 "layer_norm_backward");
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL(kernels::kRmsNormForward, rms_norm_forward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kRmsNormBackward, rms_norm_backward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kAddRmsNormForward, add_rms_norm_forward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kAddRmsNormBackward, add_rms_norm_backward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kLayerNormForward, layer_norm_forward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kLayerNormBackward, layer_norm_backward);

}  // namespace gradus::cuda
