// How the fused attention-shaped ops (scaled_dot_product_attention, pna_moments) hand (B, H, T, D)
// tensors to their kernels (kernels/attention.h's AttentionOperand / AttentionOutput): through
// their (b, h, t) strides, so the (B, T, H, D) storage of heads split from a projection is read as
// it is, and with fresh outputs in that same layout, so merging the heads back is a reshape.
#pragma once

#include "core/tensor.h"
#include "kernels/attention.h"

namespace gradus::detail {

inline kernels::AttentionOperand heads_operand(const Tensor& x) {
  return {x.raw_data(), x.stride(0), x.stride(1), x.stride(2)};
}
inline kernels::AttentionOutput heads_output(Tensor& x) {
  return {x.raw_data(), x.stride(0), x.stride(1), x.stride(2)};
}

// x: (B, H, T, D) as the kernels read it: channels with stride 1 and rows at least D apart (BLAS's
// leading dimension); anything else (a strided slice, keys broadcast along T) is copied.
inline Tensor kernel_ready_heads(const Tensor& x) {
  const bool channels_ok = x.size(-1) == 1 || x.stride(-1) == 1;
  const bool rows_ok = x.size(2) <= 1 || x.stride(2) >= x.size(3);
  return channels_ok && rows_ok ? x : raw_contiguous(x);
}

// A fresh (B, H, T, D) tensor (B, H, D from like) laid out as (B, T, H, D).
inline Tensor empty_heads(const Tensor& like, int64_t T) {
  const int64_t B = like.size(0), H = like.size(1), D = like.size(3);
  return raw_transpose(Tensor::empty({B, T, H, D}, like.dtype(), like.device()), 1, 2);
}

}  // namespace gradus::detail
