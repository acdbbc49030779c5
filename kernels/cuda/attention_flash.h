// The "flash" CUDA attention (kernels/cuda/attention_flash.cu): the fused attention of
// kernels/attention.h on the tensor cores, for bf16 with head sizes 64 and 128. The forward's block
// owns 64 query rows, streams the keys and values 64 rows at a time through shared memory, and
// keeps an online softmax; the backward rebuilds P from the saved lse tile by tile in two kernels
// (grad_q; grad_k and grad_v). Neither the (Tq, Tk) scores nor a slice of them ever reaches HBM.
// Selected in kernels/cuda/attention.cu by GRADUS_ATTENTION_KERNEL=flash.
#pragma once

#include <cstdint>

#include "kernels/attention.h"

namespace gradus::cuda {

// Whether the flash kernels run a head size on this GPU: D 64 or 128 and bf16 tensor cores
// (compute capability 8.0 or later). The operands must be bf16.
bool flash_attention_applies(int64_t head_dim);

// The arguments of kernels::AttentionForwardFn for bf16 operands (lse: f32).
void attention_forward_flash(const kernels::AttentionShape& s, kernels::AttentionOperand q,
                             kernels::AttentionOperand k, kernels::AttentionOperand v,
                             kernels::AttentionOutput out, void* lse);

// The arguments of kernels::AttentionBackwardFn for bf16 operands (lse, delta: f32): grad_q and
// delta by one kernel, grad_k and grad_v by a second, on the tensor cores.
void attention_backward_flash(const kernels::AttentionShape& s, kernels::AttentionOperand q,
                              kernels::AttentionOperand k, kernels::AttentionOperand v,
                              kernels::AttentionOperand out, kernels::AttentionOperand grad_out,
                              const void* lse, void* delta, kernels::AttentionOutput grad_q,
                              kernels::AttentionOutput grad_k, kernels::AttentionOutput grad_v);

}  // namespace gradus::cuda
