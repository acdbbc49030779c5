// Indexing kernels: index_select and gather, forward and backward (scatter-add).
//
// concat, split and stack need no kernel of their own: they are strided copies (raw_copy_) into or
// out of slices, which every backend already provides.
//
// Conventions shared by every backend:
// - The op layer brings every operand into a contiguous (outer, n, inner) layout where `n` is the
//   indexed axis of the source, so kernels see flat pointers and three sizes.
// - Index tensors are i64. Forward kernels validate every index against [0, n) before writing and
//   return the flat position (in the index tensor) of the first index out of range, or -1 when all
//   are valid; the op layer turns that into an error naming the value, the position and the size.
// - Backward kernels write every element of grad_x (zeros where nothing was gathered), so grad_x
// may
//   be freshly allocated and uninitialised. Repeated indices accumulate in a fixed order (ascending
//   position in the index), whatever the thread count: the result is bit-for-bit reproducible.
#pragma once

#include <cstdint>

namespace gradus::kernels {

// out[o, k, i] = x[o, index[k], i]
// x: (outer, n, inner), index: (K,), out: (outer, K, inner); all contiguous.
using IndexSelectFn = int64_t (*)(const void* x, const int64_t* index, void* out, int64_t outer,
                                  int64_t n, int64_t K, int64_t inner);
// grad_x[o, j, i] = sum over k with index[k] == j of grad_out[o, k, i]
// grad_out: (outer, K, inner), index: (K,), grad_x: (outer, n, inner); all contiguous.
using IndexSelectBackwardFn = void (*)(const void* grad_out, const int64_t* index, void* grad_x,
                                       int64_t outer, int64_t n, int64_t K, int64_t inner);
inline constexpr const char* kIndexSelect = "index_select";
inline constexpr const char* kIndexSelectBackward = "index_select_backward";

// out[o, k, i] = x[o, index[o, k, i], i]  (torch.gather along the middle axis)
// x: (outer, n, inner), index: (outer, K, inner), out: (outer, K, inner); all contiguous.
using GatherFn = int64_t (*)(const void* x, const int64_t* index, void* out, int64_t outer,
                             int64_t n, int64_t K, int64_t inner);
// grad_x[o, j, i] = sum over k with index[o, k, i] == j of grad_out[o, k, i]
// grad_out: (outer, K, inner), index: (outer, K, inner), grad_x: (outer, n, inner); all contiguous.
using GatherBackwardFn = void (*)(const void* grad_out, const int64_t* index, void* grad_x,
                                  int64_t outer, int64_t n, int64_t K, int64_t inner);
inline constexpr const char* kGather = "gather";
inline constexpr const char* kGatherBackward = "gather_backward";

}  // namespace gradus::kernels
