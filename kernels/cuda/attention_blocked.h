// The "blocked" CUDA attention (kernels/cuda/attention_blocked.cu): the fused-attention contract
// of kernels/attention.h computed a block of query rows at a time with cuBLAS batched products
// over every (b, h) at once, so the four large products of the forward and backward run on the
// tensor cores (bf16) or cuBLAS's tuned f32 / f64 kernels, and only a (B H, rows, Tk) slice of
// scores exists at any moment, never the whole (B, H, Tq, Tk) matrix. The softmax between the
// products is a warp per row. Selected in kernels/cuda/attention.cu.
#pragma once

#include "kernels/attention.h"

namespace gradus::cuda {

// T: float, double or __nv_bfloat16 (explicitly instantiated in attention_blocked.cu). The
// arguments are those of kernels::AttentionForwardFn / AttentionBackwardFn.
template <class T>
void attention_forward_blocked(const kernels::AttentionShape& s, kernels::AttentionOperand q,
                               kernels::AttentionOperand k, kernels::AttentionOperand v,
                               kernels::AttentionOutput out, void* lse);
template <class T>
void attention_backward_blocked(const kernels::AttentionShape& s, kernels::AttentionOperand q,
                                kernels::AttentionOperand k, kernels::AttentionOperand v,
                                kernels::AttentionOperand out, kernels::AttentionOperand grad_out,
                                const void* lse, void* delta, kernels::AttentionOutput grad_q,
                                kernels::AttentionOutput grad_k, kernels::AttentionOutput grad_v);

}  // namespace gradus::cuda
