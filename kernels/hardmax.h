// Hardmax self-attention (models/hardmax/, docs/hardmax.md): each token moves partway towards the
// mean of the tokens with the highest score, ties averaged (the tau -> 0 limit of softmax):
//   y_i = (1 - alpha) x_i + alpha * mean_{j in C_i} x_j
//   rank-1 scores:  C_i = the k-maximal tokens (k . x_j) when q . x_i > 0, the k-minimal ones when
//                   q . x_i < 0, all tokens when q . x_i = 0 (the argmax of (q . x_i)(k . x_j)
//                   without rounding the product)
//   general scores: C_i = argmax_j x_i . (A x_j)
// Arithmetic per token in the order of models/hardmax/model.h: dot products summed in coordinate
// order from 0; mean = x_{j0} + (sum over C_i in index order of (x_j - x_{j0})) / |C_i|;
// y = (1 - alpha) * x + alpha * mean with (1 - alpha) rounded first; alpha = 0 returns x.
// Tokens at or beyond a sequence's length are padding: they take no part and are copied.
//
// Backward, away from ties (the selection is piecewise constant): dy_i/dx_i = (1 - alpha) I plus
// alpha / |C_i| I for i in C_i, dy_i/dx_j = alpha / |C_i| I for j in C_i; d/dalpha = mean - x_i;
// no gradient reaches q, k or A.
#pragma once

#include <cstdint>

namespace gradus::kernels {

// x, y: (B, T, C) contiguous; q, k: (C); alpha: one element; lengths: (B) in [1, T] or nullptr.
using HardmaxRank1Fn = void (*)(const void* x, const void* q, const void* k, const void* alpha,
                                const int64_t* lengths, void* y, int64_t B, int64_t T, int64_t C);
// A: (C, C) row-major.
using HardmaxGeneralFn = void (*)(const void* x, const void* A, const void* alpha,
                                  const int64_t* lengths, void* y, int64_t B, int64_t T, int64_t C);
// gy, gx: (B, T, C); galpha: (B) per-sequence sums of gy_i . (mean_i - x_i) (the op adds them in
// order). The selection is recomputed from x.
using HardmaxRank1BackwardFn = void (*)(const void* x, const void* q, const void* k,
                                        const void* alpha, const int64_t* lengths, const void* gy,
                                        void* gx, void* galpha, int64_t B, int64_t T, int64_t C);
using HardmaxGeneralBackwardFn = void (*)(const void* x, const void* A, const void* alpha,
                                          const int64_t* lengths, const void* gy, void* gx,
                                          void* galpha, int64_t B, int64_t T, int64_t C);

inline constexpr const char* kHardmaxRank1Forward = "hardmax_rank1_forward";
inline constexpr const char* kHardmaxRank1Backward = "hardmax_rank1_backward";
inline constexpr const char* kHardmaxGeneralForward = "hardmax_general_forward";
inline constexpr const char* kHardmaxGeneralBackward = "hardmax_general_backward";

}  // namespace gradus::kernels
