// What the multi-head attention kinds (std, lgt / egt, gin, pna) share around their scores: the
// layout of heads, the rotary query / key projection, the check of their input and their
// bias-free projections. With H heads of D = C / H channels.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/random.h"
#include "core/tensor.h"
#include "models/nn/linear.h"
#include "models/nn/module.h"

namespace gradus {

// t: (B, T, H * D) -> (B, H, T, D): a view; rope and matmul take the strided layout as it is.
Tensor split_heads(const Tensor& t, int64_t num_heads);
// t: (B, H, T, D) -> (B, T, H * D), the heads side by side again: a view when t is laid out as
// (B, T, H, D) (scaled_dot_product_attention's output), a copy otherwise.
Tensor merge_heads(const Tensor& t);
// The same for heads-first rows: (H, B T, D) -> (B, T, H D), one copy (the per-head MLPs of gin
// and pna run on that layout).
Tensor merge_heads_first(const Tensor& t, int64_t batch);
// projected: (B, T, H * D) -> rope(split_heads(projected)): (B, H, T, D), row t at absolute
// position position_offset + t: the queries or keys of a RoPE kind.
Tensor rope_heads(const Tensor& projected, int64_t num_heads, double rope_theta,
                  int64_t position_offset);

// Throws `where` (the kind's class) unless x is (B, T, hidden_size).
void check_attention_input(const char* where, const Tensor& x, int64_t hidden_size);

// Registers on owner the bias-free hidden_size -> hidden_size projection `name` (q_proj, k_proj,
// v_proj, o_proj: Hugging Face's names), drawn from gen. Returns it.
std::shared_ptr<Linear> add_projection(Module& owner, const std::string& name, int64_t hidden_size,
                                       Generator& gen);

}  // namespace gradus
