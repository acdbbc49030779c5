// Embedding lookup: rows of a table selected by integer ids.
#pragma once

#include "core/tensor.h"

namespace gradus {

// weight: (V, C) floating point; ids: (...) of DType::i64, each in [0, V) -> (..., C).
// Differentiable in weight only: the gradient is a scatter-add of the output gradient into the rows
// named by the ids (repeated ids accumulate), reduced in a fixed order.
// An id outside [0, V) throws gradus::Error naming the id, its position in ids and V.
Tensor embedding(const Tensor& weight, const Tensor& ids);

}  // namespace gradus
