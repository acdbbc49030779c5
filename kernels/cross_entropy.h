// Fused softmax cross-entropy over the last axis: one pass per row computes the log-sum-exp and the
// loss, and the backward rebuilds softmax from the saved log-sum-exp (no (rows, V) probabilities
// are stored between the passes).
//
// The op layer flattens the leading axes and makes every operand contiguous. Pointers to the
// element type (float or double), except targets, which are always int64.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace gradus::kernels {

// targets: (rows) int64, checked against V classes. Returns -1 when every target is ignore_index
// or in [0, V), and *valid_count receives the number of rows whose target is not ignore_index;
// otherwise returns the first row whose target is neither (*valid_count is then unspecified), so
// that the op can report it. The one place a loss waits for the device: an op checks all of its
// targets once, before any forward chunk (the CUDA form synchronises the host once per call).
using CrossEntropyCheckTargetsFn = int64_t (*)(const int64_t* targets, int64_t rows, int64_t vocab,
                                               int64_t ignore_index, int64_t* valid_count);
// logits: (rows, V); targets: (rows) int64, already checked; loss: (rows); lse: (rows).
// loss[r] = lse[r] - logits[r, targets[r]] with lse[r] = log(sum_j exp(logits[r, j])) (computed
// with the row maximum subtracted), and loss[r] = 0 where targets[r] == ignore_index. Never waits
// for the device. A row whose target is out of range (a caller that skipped the check) reads
// nothing out of range; its loss and lse are unspecified.
using CrossEntropyForwardFn = void (*)(const void* logits, const int64_t* targets, void* loss,
                                       void* lse, int64_t rows, int64_t vocab,
                                       int64_t ignore_index);
// logits: (rows, V); targets: (rows); lse: (rows) from the forward;
// grad_loss: the upstream gradient of row r is grad_loss[r * grad_stride] (grad_stride 0: one
// scalar shared by every row, as for the "sum" and "mean" reductions);
// grad_logits: (rows, V) = (softmax(logits[r]) - onehot(targets[r])) * grad_loss[r] * scale,
// and an all-zero row where targets[r] == ignore_index. grad_logits has grad_dtype: the logits'
// dtype, or the next narrower one (bf16 beside f32, f32 beside f64: what the products of a
// mixed-precision head read), each value computed in the logits' dtype and rounded once more.
using CrossEntropyBackwardFn = void (*)(const void* logits, const int64_t* targets, const void* lse,
                                        const void* grad_loss, int64_t grad_stride, double scale,
                                        void* grad_logits, DType grad_dtype, int64_t rows,
                                        int64_t vocab, int64_t ignore_index);
inline constexpr const char* kCrossEntropyCheckTargets = "cross_entropy_check_targets";
inline constexpr const char* kCrossEntropyForward = "cross_entropy_forward";
inline constexpr const char* kCrossEntropyBackward = "cross_entropy_backward";

}  // namespace gradus::kernels
