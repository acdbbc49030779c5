// Softmax cross-entropy, fused (as torch.nn.functional.cross_entropy with class indices, the
// classes on the last axis).
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace gradus {

// logits: (..., V) floating point; targets: (...) of DType::i64 (logits' leading shape), each in
// [0, V) or equal to ignore_index.
// loss[i] = logsumexp(logits[i]) - logits[i, targets[i]], 0 where targets[i] == ignore_index.
// reduction "none" -> (...) per-position losses; "sum" -> () their sum; "mean" -> () their sum over
// the count of non-ignored targets (NaN when every target is ignored, as PyTorch).
// Differentiable in logits only. A target outside [0, V) that is not ignore_index throws
// gradus::Error naming the target, its position and V.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100,
                     const std::string& reduction = "mean");

}  // namespace gradus
