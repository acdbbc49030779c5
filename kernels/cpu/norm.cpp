// CPU RMSNorm and LayerNorm kernels over x: (rows, cols) (see kernels/norm.h for the contract).
//
// Row statistics and row dot products are accumulated in double (8 interleaved partial sums, an
// order fixed by cols), so f32 keeps full accuracy on long rows. grad_weight / grad_bias are
// reduced over rows through per-block partial sums: the rows are cut into blocks whose size depends
// on the row count only, each block is owned by one thread, and the blocks are summed in order per
// column.
#include "kernels/norm.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/element_convert.h"
#include "kernels/cpu/same_or_narrower.h"
#include "kernels/registry.h"

namespace gradus::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = 1 << 14;  // elements below which a loop stays on one thread

// Sum of f(i) for i in [0, n) with 8 interleaved double partial sums combined pairwise.
template <class F>
double row_sum(int64_t n, F f) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += f(i + k);
  for (int k = 0; i < n; ++i, ++k) acc[k] += f(i);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// The sums of f(i) and h(i) in one sweep, each as row_sum computes it.
template <class F, class H>
std::pair<double, double> row_sum2(int64_t n, F f, H h) {
  double a[8] = {0, 0, 0, 0, 0, 0, 0, 0}, b[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) {
      a[k] += f(i + k);
      b[k] += h(i + k);
    }
  for (int k = 0; i < n; ++i, ++k) {
    a[k] += f(i);
    b[k] += h(i);
  }
  return {((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])),
          ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]))};
}

// The fixed row partition for the weight-gradient reduction: at most kMaxBlocks blocks of at least
// kMinRows rows, a function of `rows` alone (never of the thread count).
struct RowBlocks {
  int64_t size = 1;
  int64_t count = 0;
};
RowBlocks row_blocks(int64_t rows) {
  constexpr int64_t kMinRows = 32, kMaxBlocks = 64;
  RowBlocks b;
  b.size = std::max(kMinRows, (rows + kMaxBlocks - 1) / kMaxBlocks);
  b.count = (rows + b.size - 1) / b.size;
  return b;
}

// out[c] = sum over blocks b (in order) of partial[b * cols + c]. Column-parallel.
template <class T>
void sum_partials(const std::vector<double>& partial, int64_t blocks, int64_t cols, T* out) {
#pragma omp parallel for if (blocks * cols > kParallelWork) schedule(static)
  for (int64_t c = 0; c < cols; ++c) {
    double s = 0;
    for (int64_t b = 0; b < blocks; ++b) s += partial[static_cast<size_t>(b * cols + c)];
    out[c] = static_cast<T>(s);
  }
}

// ---------------------------------------------------------------- RMSNorm
// One row: returns rstd (rounded to T) and writes y = x * rstd * weight. x, y: (cols).
template <class T>
T rms_norm_row(const T* xr, const T* w, T* yr, int64_t cols, double inv_cols, double eps) {
  const double ms = row_sum(cols,
                            [&](int64_t c) {
                              const double v = xr[c];
                              return v * v;
                            }) *
                    inv_cols;
  // The backward reads the rstd in T, so the forward uses the same rounded value.
  const T rs = static_cast<T>(1.0 / std::sqrt(ms + eps));
  if (w != nullptr) {
    for (int64_t c = 0; c < cols; ++c) yr[c] = xr[c] * rs * w[c];
  } else {
    for (int64_t c = 0; c < cols; ++c) yr[c] = xr[c] * rs;
  }
  return rs;
}

// The rows of y again in N (yn: nullptr for none), each value converted from y's.
template <class T, class N>
void narrow_row(const T* yr, N* yn, int64_t cols) {
  if (yn != nullptr)
    for (int64_t c = 0; c < cols; ++c) yn[c] = convert_element<N, T>(yr[c]);
}

// Calls fn(N{}) for y_narrow's storage type: T when there is none, else narrow_dtype's.
template <class T, class Fn>
void dispatch_narrow(const void* y_narrow, DType narrow_dtype, const char* kernel, Fn&& fn) {
  if (y_narrow == nullptr) return fn(T{});
  dispatch_same_or_narrower<T>(narrow_dtype, kernel, std::forward<Fn>(fn));
}

template <class T>
void rms_norm_forward(const void* x_, const void* w_, void* y_, void* rstd_, int64_t rows,
                      int64_t cols, double eps, void* y_narrow, DType narrow_dtype) {
  const T* x = static_cast<const T*>(x_);
  const T* w = static_cast<const T*>(w_);
  T* y = static_cast<T*>(y_);
  T* rstd = static_cast<T*>(rstd_);
  const double inv_cols = 1.0 / static_cast<double>(std::max<int64_t>(cols, 1));
  dispatch_narrow<T>(y_narrow, narrow_dtype, kRmsNormForward, [&](auto nz) {
    using N = decltype(nz);
    N* yn = static_cast<N*>(y_narrow);
#pragma omp parallel for if (rows * cols > kParallelWork) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      rstd[r] = rms_norm_row(x + r * cols, w, y + r * cols, cols, inv_cols, eps);
      narrow_row(y + r * cols, yn != nullptr ? yn + r * cols : nullptr, cols);
    }
  });
}

// sum = x + delta (delta of D, widened to T: exact), then the norm of each row of sum, read back
// as stored, so every value equals the composite's (a cast, an add, rms_norm); yn as for rms_norm.
template <class T, class D, class N>
void add_rms_norm_rows(const T* x, const D* delta, const T* w, T* sum, T* y, N* yn, T* rstd,
                       int64_t rows, int64_t cols, double eps) {
  const double inv_cols = 1.0 / static_cast<double>(std::max<int64_t>(cols, 1));
#pragma omp parallel for if (rows * cols > kParallelWork) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    const D* dr = delta + r * cols;
    T* sr = sum + r * cols;
    for (int64_t c = 0; c < cols; ++c) sr[c] = xr[c] + convert_element<T, D>(dr[c]);
    rstd[r] = rms_norm_row(sr, w, y + r * cols, cols, inv_cols, eps);
    narrow_row(y + r * cols, yn != nullptr ? yn + r * cols : nullptr, cols);
  }
}

template <class T>
void add_rms_norm_forward(const void* x, const void* delta, DType delta_dtype, const void* w,
                          void* sum, void* y, void* rstd, int64_t rows, int64_t cols, double eps,
                          void* y_narrow, DType narrow_dtype) {
  dispatch_same_or_narrower<T>(delta_dtype, kAddRmsNormForward, [&](auto d) {
    dispatch_narrow<T>(y_narrow, narrow_dtype, kAddRmsNormForward, [&](auto nz) {
      using D = decltype(d);
      using N = decltype(nz);
      add_rms_norm_rows(static_cast<const T*>(x), static_cast<const D*>(delta),
                        static_cast<const T*>(w), static_cast<T*>(sum), static_cast<T*>(y),
                        static_cast<N*>(y_narrow), static_cast<T*>(rstd), rows, cols, eps);
    });
  });
}

// With xhat = x * rstd and g = grad_y * weight:
//   grad_x = rstd * (g - xhat * mean(g * xhat)),  grad_weight = sum over rows of grad_y * xhat.
// For add_rms_norm (x is its sum) grad_sum, when given, is added to grad_x, which is written in T
// (gx) and rounded to D (gdelta), each where wanted.
template <class T, class D>
void rms_norm_backward_rows(const T* x, const T* w, const T* rstd, const T* gy, const T* gsum,
                            T* gx, D* gdelta, T* gw, int64_t rows, int64_t cols) {
  const double inv_cols = 1.0 / static_cast<double>(std::max<int64_t>(cols, 1));
  const RowBlocks blocks = row_blocks(rows);
  const bool want_gx = gx != nullptr || gdelta != nullptr;
  std::vector<double> partial(gw != nullptr ? static_cast<size_t>(blocks.count * cols) : 0, 0.0);
#pragma omp parallel for if (rows * cols > kParallelWork) schedule(static)
  for (int64_t b = 0; b < blocks.count; ++b) {
    double* pw = gw != nullptr ? partial.data() + b * cols : nullptr;
    std::vector<T> g(want_gx ? static_cast<size_t>(cols) : 0);
    const int64_t r1 = std::min(rows, (b + 1) * blocks.size);
    for (int64_t r = b * blocks.size; r < r1; ++r) {
      const T* xr = x + r * cols;
      const T* gyr = gy + r * cols;
      const T rs = rstd[r];
      if (pw != nullptr)
        for (int64_t c = 0; c < cols; ++c) pw[c] += static_cast<double>(gyr[c] * (xr[c] * rs));
      if (!want_gx) continue;
      // g = grad_y * weight, computed once per row (both passes below read it).
      if (w != nullptr) {
        for (int64_t c = 0; c < cols; ++c) g[c] = gyr[c] * w[c];
      } else {
        std::copy_n(gyr, cols, g.data());
      }
      const T d = static_cast<T>(row_sum(cols,
                                         [&](int64_t c) {
                                           return static_cast<double>(g[c]) *
                                                  static_cast<double>(xr[c] * rs);
                                         }) *
                                 inv_cols);
      const int64_t off = r * cols;
      for (int64_t c = 0; c < cols; ++c) {
        T v = rs * (g[c] - (xr[c] * rs) * d);
        if (gsum != nullptr) v = v + gsum[off + c];
        if (gx != nullptr) gx[off + c] = v;
        if (gdelta != nullptr) gdelta[off + c] = convert_element<D, T>(v);
      }
    }
  }
  if (gw != nullptr) sum_partials(partial, blocks.count, cols, gw);
}

template <class T>
void rms_norm_backward(const void* x, const void* w, const void* rstd, const void* gy, void* gx,
                       void* gw, int64_t rows, int64_t cols) {
  rms_norm_backward_rows<T, T>(static_cast<const T*>(x), static_cast<const T*>(w),
                               static_cast<const T*>(rstd), static_cast<const T*>(gy), nullptr,
                               static_cast<T*>(gx), nullptr, static_cast<T*>(gw), rows, cols);
}

template <class T>
void add_rms_norm_backward(const void* sum, const void* w, const void* rstd, const void* gy,
                           const void* gsum, void* gx, void* gdelta, DType delta_dtype, void* gw,
                           int64_t rows, int64_t cols) {
  dispatch_same_or_narrower<T>(delta_dtype, kAddRmsNormBackward, [&](auto d) {
    using D = decltype(d);
    rms_norm_backward_rows<T, D>(static_cast<const T*>(sum), static_cast<const T*>(w),
                                 static_cast<const T*>(rstd), static_cast<const T*>(gy),
                                 static_cast<const T*>(gsum), static_cast<T*>(gx),
                                 static_cast<D*>(gdelta), static_cast<T*>(gw), rows, cols);
  });
}

// ---------------------------------------------------------------- LayerNorm
template <class T>
void layer_norm_forward(const void* x_, const void* w_, const void* b_, void* y_, void* mean_,
                        void* rstd_, int64_t rows, int64_t cols, double eps) {
  const T* x = static_cast<const T*>(x_);
  const T* w = static_cast<const T*>(w_);
  const T* bias = static_cast<const T*>(b_);
  T* y = static_cast<T*>(y_);
  T* mean = static_cast<T*>(mean_);
  T* rstd = static_cast<T*>(rstd_);
  const double inv_cols = 1.0 / static_cast<double>(std::max<int64_t>(cols, 1));
#pragma omp parallel for if (rows * cols > kParallelWork) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    // Two passes (mean, then the mean square deviation): no cancellation for rows with a large
    // mean.
    const double mu =
        row_sum(cols, [&](int64_t c) { return static_cast<double>(xr[c]); }) * inv_cols;
    const double var = row_sum(cols,
                               [&](int64_t c) {
                                 const double d = xr[c] - mu;
                                 return d * d;
                               }) *
                       inv_cols;
    const T m = static_cast<T>(mu);
    const T rs = static_cast<T>(1.0 / std::sqrt(var + eps));
    mean[r] = m;
    rstd[r] = rs;
    for (int64_t c = 0; c < cols; ++c) {
      T v = (xr[c] - m) * rs;
      if (w != nullptr) v *= w[c];
      if (bias != nullptr) v += bias[c];
      yr[c] = v;
    }
  }
}

// With xhat = (x - mean) * rstd and g = grad_y * weight:
//   grad_x = rstd * (g - mean(g) - xhat * mean(g * xhat)),
//   grad_weight = sum over rows of grad_y * xhat,  grad_bias = sum over rows of grad_y.
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
  T* gw = static_cast<T*>(gw_);
  T* gb = static_cast<T*>(gb_);
  const double inv_cols = 1.0 / static_cast<double>(std::max<int64_t>(cols, 1));
  const RowBlocks blocks = row_blocks(rows);
  const size_t partial_size = static_cast<size_t>(blocks.count * cols);
  std::vector<double> partial_w(gw != nullptr ? partial_size : 0, 0.0);
  std::vector<double> partial_b(gb != nullptr ? partial_size : 0, 0.0);
#pragma omp parallel for if (rows * cols > kParallelWork) schedule(static)
  for (int64_t b = 0; b < blocks.count; ++b) {
    double* pw = gw != nullptr ? partial_w.data() + b * cols : nullptr;
    double* pb = gb != nullptr ? partial_b.data() + b * cols : nullptr;
    std::vector<T> g(gx != nullptr ? static_cast<size_t>(cols) : 0);
    const int64_t r1 = std::min(rows, (b + 1) * blocks.size);
    for (int64_t r = b * blocks.size; r < r1; ++r) {
      const T* xr = x + r * cols;
      const T* gyr = gy + r * cols;
      const T m = mean[r], rs = rstd[r];
      if (pw != nullptr)
        for (int64_t c = 0; c < cols; ++c)
          pw[c] += static_cast<double>(gyr[c] * ((xr[c] - m) * rs));
      if (pb != nullptr)
        for (int64_t c = 0; c < cols; ++c) pb[c] += static_cast<double>(gyr[c]);
      if (gx == nullptr) continue;
      T* gxr = gx + r * cols;
      // g = grad_y * weight, computed once per row (both passes below read it).
      if (w != nullptr) {
        for (int64_t c = 0; c < cols; ++c) g[c] = gyr[c] * w[c];
      } else {
        std::copy_n(gyr, cols, g.data());
      }
      const auto [sum_g, sum_gx] = row_sum2(
          cols, [&](int64_t c) { return static_cast<double>(g[c]); },
          [&](int64_t c) {
            return static_cast<double>(g[c]) * static_cast<double>((xr[c] - m) * rs);
          });
      const T mg = static_cast<T>(sum_g * inv_cols), mgx = static_cast<T>(sum_gx * inv_cols);
      for (int64_t c = 0; c < cols; ++c) gxr[c] = rs * (g[c] - mg - ((xr[c] - m) * rs) * mgx);
    }
  }
  if (gw != nullptr) sum_partials(partial_w, blocks.count, cols, gw);
  if (gb != nullptr) sum_partials(partial_b, blocks.count, cols, gb);
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kRmsNormForward, rms_norm_forward);
GRADUS_REGISTER_CPU_KERNEL(kRmsNormBackward, rms_norm_backward);
GRADUS_REGISTER_CPU_KERNEL(kAddRmsNormForward, add_rms_norm_forward);
GRADUS_REGISTER_CPU_KERNEL(kAddRmsNormBackward, add_rms_norm_backward);
GRADUS_REGISTER_CPU_KERNEL(kLayerNormForward, layer_norm_forward);
GRADUS_REGISTER_CPU_KERNEL(kLayerNormBackward, layer_norm_backward);

}  // namespace gradus::kernels::cpu
