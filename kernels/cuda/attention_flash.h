// The "flash" CUDA attention forward (kernels/cuda/attention_flash.cu): the fused-attention
// forward of kernels/attention.h on the tensor cores, for bf16 with head sizes 64 and 128. A block
// owns 64 query rows, streams the keys and values 64 rows at a time through shared memory, and
// keeps an online softmax, so neither the (Tq, Tk) scores nor a slice of them ever reaches HBM.
// Its out and lse are the contract's, so any family's backward (blocked by default) follows it.
// Selected in kernels/cuda/attention.cu by GRADUS_ATTENTION_KERNEL=flash.
#pragma once

#include <cstdint>

#include "kernels/attention.h"

namespace gradus::cuda {

// Whether the flash forward runs a head size on this GPU: D 64 or 128 and bf16 tensor cores
// (compute capability 8.0 or later). The operands must be bf16.
bool flash_forward_applies(int64_t head_dim);

// The arguments of kernels::AttentionForwardFn for bf16 operands (lse: f32).
void attention_forward_flash(const kernels::AttentionShape& s, kernels::AttentionOperand q,
                             kernels::AttentionOperand k, kernels::AttentionOperand v,
                             kernels::AttentionOutput out, void* lse);

}  // namespace gradus::cuda
