// Embedding lookup (a row gather) and its backward (a deterministic scatter-add into the table).
//
// The op layer flattens the ids and makes every operand contiguous. Pointers to the element type
// (float or double), except ids, which are always int64.
#pragma once

#include <cstdint>

namespace gradus::kernels {

// weight: (vocab, cols); ids: (n) int64; out: (n, cols), out[i] = weight[ids[i]].
// Returns -1 when every id is in [0, vocab); otherwise the first position i whose id is out of
// range (out is then unspecified), so that the op can report the id and its position.
using EmbeddingForwardFn = int64_t (*)(const void* weight, const int64_t* ids, void* out, int64_t n,
                                       int64_t vocab, int64_t cols);
// grad_out: (n, cols); ids: (n), each in [0, vocab) (checked by the forward);
// grad_weight: (vocab, cols), fully written: grad_weight[v] = sum of grad_out[i] over ids[i] == v,
// summed in increasing i (rows of ids that never occur are zero). No atomics: each row of
// grad_weight is owned by one thread.
using EmbeddingBackwardFn = void (*)(const void* grad_out, const int64_t* ids, void* grad_weight,
                                     int64_t n, int64_t vocab, int64_t cols);
inline constexpr const char* kEmbeddingForward = "embedding_forward";
inline constexpr const char* kEmbeddingBackward = "embedding_backward";

}  // namespace gradus::kernels
