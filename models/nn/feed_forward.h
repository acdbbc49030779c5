// Position-wise feed-forward networks of the decoder block.
#pragma once

#include <cstdint>
#include <memory>

#include "models/nn/linear.h"
#include "models/nn/module.h"

namespace gradus {

// The SwiGLU gate silu(g) * u as one op (swiglu: no silu(g) kept for the backward) or, with the
// switch off, the composite silu then mul (the reference). On by default; GRADUS_FUSED_SWIGLU=0 in
// the environment turns it off for the process. Thread-safe.
void set_fused_swiglu(bool on);
bool fused_swiglu_enabled();

// SwiGLU (Llama's MLP): down_proj(silu(gate_proj(x)) * up_proj(x)), no biases. Submodules
// gate_proj (hidden -> intermediate), up_proj (hidden -> intermediate), down_proj
// (intermediate -> hidden), drawn from gen in that order (Hugging Face LlamaMLP's names).
class SwiGLU : public Module {
 public:
  SwiGLU(int64_t hidden_size, int64_t intermediate_size, Generator& gen);
  // x: (..., hidden) -> (..., hidden)
  Tensor forward(const Tensor& x) const;

  const std::shared_ptr<Linear>& gate_proj() const { return gate_proj_; }
  const std::shared_ptr<Linear>& up_proj() const { return up_proj_; }
  const std::shared_ptr<Linear>& down_proj() const { return down_proj_; }

 private:
  std::shared_ptr<Linear> gate_proj_, up_proj_, down_proj_;
};

// GELU MLP (GPT-2 / BERT style): down_proj(gelu(up_proj(x))), with biases unless bias = false;
// gelu exact (erf) unless tanh_approximation. Submodules up_proj, down_proj.
class GeluFFN : public Module {
 public:
  GeluFFN(int64_t hidden_size, int64_t intermediate_size, Generator& gen, bool bias = true,
          bool tanh_approximation = false);
  // x: (..., hidden) -> (..., hidden)
  Tensor forward(const Tensor& x) const;

  const std::shared_ptr<Linear>& up_proj() const { return up_proj_; }
  const std::shared_ptr<Linear>& down_proj() const { return down_proj_; }

 private:
  std::shared_ptr<Linear> up_proj_, down_proj_;
  bool tanh_approximation_;
};

}  // namespace gradus
