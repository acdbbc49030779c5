// Fused normalisation kernels over the last axis: RMSNorm and LayerNorm, forward and backward.
//
// The op layer flattens the leading axes and makes the input contiguous, so every kernel sees
// x: (rows, cols) row-major. The forward saves per-row statistics (rstd, and the mean for
// LayerNorm) so the backward never recomputes a reduction over the row. The backward computes
// grad_x per row and reduces grad_weight / grad_bias over the rows in an order fixed by the shape
// alone (partial sums over fixed row blocks, combined in block order), never with atomics, so the
// result is the same bit for bit whatever the thread count.
//
// Pointers to the element type (float or double); an optional tensor is passed as nullptr.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace gradus::kernels {

// ---- RMSNorm: y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + eps) ----
// x: (rows, cols); weight: (cols) or nullptr (no scale); y: (rows, cols); rstd: (rows).
// y_narrow: (rows, cols) or nullptr: y again in narrow_dtype (the next narrower floating dtype:
// bf16 beside f32, f32 beside f64), each value rounded from y's, as a cast after the kernel would
// round it. Under mixed precision that is the copy the products read (no cast of their own).
using RmsNormForwardFn = void (*)(const void* x, const void* weight, void* y, void* rstd,
                                  int64_t rows, int64_t cols, double eps, void* y_narrow,
                                  DType narrow_dtype);
// x: (rows, cols); weight: (cols) or nullptr; rstd: (rows) from the forward; grad_y: (rows, cols);
// grad_x: (rows, cols) or nullptr (not wanted); grad_weight: (cols) or nullptr (not wanted).
// Every element of a wanted output is written (no zero-filling needed).
using RmsNormBackwardFn = void (*)(const void* x, const void* weight, const void* rstd,
                                   const void* grad_y, void* grad_x, void* grad_weight,
                                   int64_t rows, int64_t cols);
inline constexpr const char* kRmsNormForward = "rms_norm_forward";
inline constexpr const char* kRmsNormBackward = "rms_norm_backward";

// ---- residual add + RMSNorm: sum = x + delta, y = RMSNorm(sum) ----
// The pre-norm block's h and its norm. One pass where three kernels ran (a widening cast of delta,
// the add, the norm) and one backward where three ran (the norm's, the accumulation of sum's two
// gradients, the cast back). T is the kernel's dtype (x, sum, y, weight, rstd); delta has
// delta_dtype: T, or under mixed precision the next narrower one (bf16 beside f32, f32 beside
// f64), widened on load. sum is rounded to T before the statistics, so every value equals the
// composite's. y_narrow, narrow_dtype: as for RMSNorm.
// x, delta, sum, y, y_narrow: (rows, cols); weight: (cols) or nullptr; rstd: (rows).
using AddRmsNormForwardFn = void (*)(const void* x, const void* delta, DType delta_dtype,
                                     const void* weight, void* sum, void* y, void* rstd,
                                     int64_t rows, int64_t cols, double eps, void* y_narrow,
                                     DType narrow_dtype);
// sum, weight, rstd, grad_y: as rms_norm_backward reads x, weight, rstd, grad_y. grad_sum: the
// gradient that reached sum from its other use, (rows, cols), or nullptr. With
// g = grad_sum + (the rms_norm gradient of grad_y): grad_x = g in T and grad_delta = g rounded to
// delta_dtype, each (rows, cols) or nullptr (not wanted); grad_weight: (cols) or nullptr.
using AddRmsNormBackwardFn = void (*)(const void* sum, const void* weight, const void* rstd,
                                      const void* grad_y, const void* grad_sum, void* grad_x,
                                      void* grad_delta, DType delta_dtype, void* grad_weight,
                                      int64_t rows, int64_t cols);
inline constexpr const char* kAddRmsNormForward = "add_rms_norm_forward";
inline constexpr const char* kAddRmsNormBackward = "add_rms_norm_backward";

// ---- LayerNorm: y = (x - mean) * rstd * weight + bias, rstd = 1 / sqrt(var(x) + eps) ----
// (population variance, as torch.nn.LayerNorm)
// x: (rows, cols); weight, bias: (cols) or nullptr; y: (rows, cols); mean, rstd: (rows)
using LayerNormForwardFn = void (*)(const void* x, const void* weight, const void* bias, void* y,
                                    void* mean, void* rstd, int64_t rows, int64_t cols, double eps);
// x: (rows, cols); weight: (cols) or nullptr; mean, rstd: (rows); grad_y: (rows, cols);
// grad_x: (rows, cols), grad_weight: (cols), grad_bias: (cols), each nullptr when not wanted.
using LayerNormBackwardFn = void (*)(const void* x, const void* weight, const void* mean,
                                     const void* rstd, const void* grad_y, void* grad_x,
                                     void* grad_weight, void* grad_bias, int64_t rows,
                                     int64_t cols);
inline constexpr const char* kLayerNormForward = "layer_norm_forward";
inline constexpr const char* kLayerNormBackward = "layer_norm_backward";

}  // namespace gradus::kernels
