// Mixed precision in the manner of torch.autocast: inside an AutocastGuard the products (matmul,
// linear, scaled_dot_product_attention) run in a narrow `compute` dtype, the numerically delicate
// ops (rms_norm, layer_norm, softmax, log_softmax, cross_entropy) in the `wide` dtype of the
// parameters, and an elementwise op meeting both promotes to the wide one. Each cast is the
// differentiable to_dtype, so parameters (the f32 "master weights") receive their gradients in
// their own dtype and the optimiser never sees the narrow copies. The products go one better than
// a recorded cast: they record the wide operand itself and their backward writes its gradient in
// the wide dtype directly (bf16 products summed in f32 and stored in f32), so a master weight's
// gradient is never rounded to bf16 and costs no cast.
//
//   { AutocastGuard mixed(DType::bf16, DType::f32); loss = model.loss(ids, targets); }
//   backward(loss);  // outside the guard: the backward runs in the forward's dtypes
//
// bf16 compute needs the GPU (the CPU backend has no bf16 arithmetic); the same code path runs on
// the CPU as f32 compute with f64 parameters, which is how the tests check it. The state is per
// thread, like the tape.
#pragma once

#include <optional>
#include <vector>

#include "core/tensor.h"

namespace gradus {

struct AutocastState {
  DType compute = DType::bf16;  // matrix products
  DType wide = DType::f32;      // norms, softmax, losses; what mixed operands promote to
};

class AutocastGuard {
 public:
  AutocastGuard(DType compute, DType wide);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  std::optional<AutocastState> previous_;
};

// The current thread's state; empty outside every guard.
std::optional<AutocastState> autocast_state();

namespace detail {
// x cast to the compute (resp. wide) dtype when autocast is on and x is a floating tensor of
// another dtype; x itself otherwise (an undefined x stays undefined).
Tensor autocast_compute(const Tensor& x);
Tensor autocast_wide(const Tensor& x);
// As autocast_compute, but the cast is not recorded on the tape: for the matrix products (matmul,
// linear, linear_cross_entropy), which record the operand itself and write its gradient in the
// operand's own dtype (an f32 master weight gets an f32 dW straight from the gemm, with no narrow
// gradient and no cast in the backward; see kernels::kGemmWideOutput). Within a guard, a tensor an
// op produced is cast once however many products read it (q, k and v share one cast of their
// input); leaves (parameters, inputs) are cast at every use, since they may be written in place.
Tensor autocast_compute_untaped(const Tensor& x);
// For an elementwise op on a and b of different floating dtypes under autocast: both in the
// wider of the two (f64 > f32 > bf16). Outside autocast, or with equal dtypes, unchanged.
void autocast_promote(Tensor& a, Tensor& b);
// The same for a list joined into one tensor (concat, stack): every floating tensor in the widest
// dtype among them.
std::vector<Tensor> autocast_promote_all(const std::vector<Tensor>& xs);
}  // namespace detail

}  // namespace gradus
