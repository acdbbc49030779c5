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

#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"

namespace gradus {

struct AutocastState {
  DType compute = DType::bf16;  // matrix products
  DType wide = DType::f32;      // norms, softmax, losses; what mixed operands promote to
};

namespace detail {
Tensor autocast_compute_untaped(const Tensor& x);
}

// The parameters a training loop's products cast, remembered from one step to the next. A guard
// given an AutocastWeights casts, on entry, every parameter that products cast in earlier guards
// with it, in one cast_multi call per (device, dtype) (ceil(count / 24) launches on a GPU), and
// the products read those casts instead of casting each parameter at its use: the 29 weight casts
// of a `small` training step become one call. The first guard casts at each use and remembers
// every leaf that requires a gradient (a parameter). The references are weak: a freed model is
// forgotten. Owned by the loop, used by one thread:
//
//   AutocastWeights weights;
//   for (...) {
//     { AutocastGuard mixed(DType::bf16, DType::f32, &weights); loss = model.loss(ids, targets); }
//     backward(loss);
//     optimizer.step();
//   }
//
// The casts are taken on entry, so the parameters must not be written inside the guard: an
// optimiser step there drops them (Optimizer::step calls detail::autocast_drop_weight_casts()),
// and any other in-place write of a parameter belongs outside the guard (as with the weight cache
// of torch.autocast).
class AutocastWeights {
 public:
  // Parameters remembered (freed ones included until the next guard prunes them).
  int64_t size() const { return static_cast<int64_t>(params_.size()); }

 private:
  friend class AutocastGuard;
  friend Tensor detail::autocast_compute_untaped(const Tensor& x);
  std::unordered_map<const TensorImpl*, std::weak_ptr<TensorImpl>> params_;
  DType compute_ = DType::bf16;  // the dtype they were cast to; another one starts afresh
};

class AutocastGuard {
 public:
  // weights: optional, see AutocastWeights.
  AutocastGuard(DType compute, DType wide, AutocastWeights* weights = nullptr);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  // The casts AutocastWeights asks for, taken on entry into guard_casts (this guard's table).
  static void cast_on_entry(AutocastWeights& weights, DType compute, void* guard_casts);
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
// input); leaves (parameters, inputs) are cast at every use, since they may be written in place,
// unless the guard cast them on entry (AutocastWeights).
Tensor autocast_compute_untaped(const Tensor& x);
// An op whose output (of dtype `output`) products are likely to read under the current guard can
// write a copy of it in the compute dtype in the same pass and offer it (autocast_offer_cast):
// returns that dtype when lean autocast is on and the compute dtype is the next narrower one
// (bf16 beside f32, f32 beside f64), else nothing. The norms do this.
std::optional<DType> autocast_narrow_copy_dtype(DType output);
// Hands the current guard `cast`, a copy of the op output `source` in the compute dtype: products
// reading `source` within the guard use it instead of casting. Held while `source` lives (dropped
// at a later offer once it is gone, or when the guard ends).
void autocast_offer_cast(const Tensor& source, const Tensor& cast);
// Forgets the parameters' casts taken on entry by every guard of this thread (they would be stale
// once a parameter is written): called by Optimizer::step.
void autocast_drop_weight_casts();

// An operand of a matrix product under autocast: `value` is what the product multiplies (in the
// compute dtype), `recorded` the input it records and whose gradient it writes (in that tensor's
// own dtype). By default value = autocast_compute_untaped(x) and recorded = x. With the lean
// autocast off (set_lean_autocast(false), GRADUS_LEAN_AUTOCAST=0 in the environment) both are
// autocast_compute(x), a recorded cast: the gradient is computed in the compute dtype and cast back
// by the cast's own backward, every use casts afresh and AutocastWeights is ignored, as
// torch.autocast does; that path stays to measure and check the lean one against.
struct ProductOperand {
  Tensor value, recorded;
};
ProductOperand autocast_product_operand(const Tensor& x);
}  // namespace detail

// On by default; see detail::ProductOperand. Thread-safe (process-wide).
void set_lean_autocast(bool on);
bool lean_autocast_enabled();

namespace detail {
// For an elementwise op on a and b of different floating dtypes under autocast: both in the
// wider of the two (f64 > f32 > bf16), except that a 0-dim operand beside one with dimensions takes
// that one's dtype (PyTorch's rule for 0-dim tensors). Outside autocast, or with equal dtypes,
// unchanged.
void autocast_promote(Tensor& a, Tensor& b);
// The same for a list joined into one tensor (concat, stack): every floating tensor in the widest
// dtype among them.
std::vector<Tensor> autocast_promote_all(const std::vector<Tensor>& xs);
}  // namespace detail

}  // namespace gradus
