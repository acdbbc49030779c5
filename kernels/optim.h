// Optimiser kernels: fused per-parameter updates (one pass over memory per parameter per step) and
// the two pieces of gradient-norm clipping.
//
// Conventions shared by every backend:
// - Every array is contiguous, of the parameter's dtype and on the parameter's device; the
//   models layer makes strided parameters or gradients contiguous before calling.
// - Updates are in place: the kernel overwrites param and the state buffers and never allocates.
// - Elementwise math runs in the parameter's dtype with the scalar coefficients (lr, bias
//   corrections, ...) computed once in double by the caller and rounded to that dtype, as PyTorch's
//   single-tensor implementation does. Each element is independent, so the result never depends on
//   the thread count.
// The exact formulas are written out in docs/optimizers.md.
#pragma once

#include <cstdint>

namespace gradus::kernels {

// ---- SGD (torch.optim.SGD) ----
//   g = grad + weight_decay * param
//   if momentum != 0:
//     buf = first ? g : momentum * buf + (1 - dampening) * g
//     g   = nesterov ? g + momentum * buf : buf
//   param -= lr * g
struct SgdStepParams {
  double lr = 0.0;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool first = false;  // the momentum buffer is uninitialised: it becomes g (no dampening)
};
// param, grad, momentum_buf: (n); momentum_buf may be null when momentum == 0 (and is then unused).
using SgdStepFn = void (*)(void* param, const void* grad, void* momentum_buf, int64_t n,
                           const SgdStepParams& p);
inline constexpr const char* kSgdStep = "sgd_step";

// ---- Adam / AdamW (torch.optim.Adam, torch.optim.AdamW; amsgrad off) ----
//   decoupled:          param *= 1 - lr * weight_decay            (AdamW)
//   else:               g = grad + weight_decay * param          (Adam, L2)
//   exp_avg    = lerp(exp_avg, g, 1 - beta1)                      (= beta1 m + (1 - beta1) g)
//   exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
//   denom      = sqrt(exp_avg_sq) / bias_correction2_sqrt + eps
//   param     -= step_size * (exp_avg / denom)
// with step_size = lr / (1 - beta1^t) and bias_correction2_sqrt = sqrt(1 - beta2^t) for step t >=
// 1, computed by the caller.
struct AdamStepParams {
  double lr = 0.0;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;
  double step_size = 0.0;              // lr / (1 - beta1^t)
  double bias_correction2_sqrt = 1.0;  // sqrt(1 - beta2^t)
};
// param, grad, exp_avg, exp_avg_sq: (n)
using AdamStepFn = void (*)(void* param, const void* grad, void* exp_avg, void* exp_avg_sq,
                            int64_t n, const AdamStepParams& p);
inline constexpr const char* kAdamStep = "adam_step";

// ---- gradient-norm clipping ----
// Returns sum_i |x_i|^p accumulated in double (p = 2 uses x*x, p = 1 uses |x|), or max_i |x_i| when
// p is +inf; NaN propagates. Summation is in fixed blocks combined in order, so the value depends
// on n alone, never on the thread count.
// x: (n)
using NormPowSumFn = double (*)(const void* x, int64_t n, double p);
inline constexpr const char* kNormPowSum = "norm_pow_sum";

// x *= factor, in place. x: (n)
using ScaleInplaceFn = void (*)(void* x, int64_t n, double factor);
inline constexpr const char* kScaleInplace = "scale_inplace";

// ---- multi-tensor ("foreach") forms ----
// One call over a list of arrays of one dtype on one device, so that a step over ~100 parameters
// costs a few kernel launches instead of one or two per parameter. Each array's result is bit for
// bit what the per-array kernel above gives for it alone (the per-array kernels stay the readable
// reference and the GRADUS_FUSED_OPTIMIZER=0 path). Arrays of length 0 are allowed and untouched;
// the arrays of one list must not overlap.

// One array of a list, read only (data may be null when n == 0).
struct ConstArray {
  const void* data = nullptr;
  int64_t n = 0;
};
// One array of a list, updated in place (data may be null when n == 0).
struct MutableArray {
  void* data = nullptr;
  int64_t n = 0;
};

// One parameter of an Adam step: its four arrays, each (n), and its own coefficients (lr and
// weight decay come from its group; step_size and bias_correction2_sqrt from its own step count).
struct AdamMultiTensor {
  void* param = nullptr;
  const void* grad = nullptr;
  void* exp_avg = nullptr;
  void* exp_avg_sq = nullptr;
  int64_t n = 0;
  AdamStepParams params;
};
// tensors: (count); for each i, adam_step(tensors[i].param, ..., tensors[i].n, tensors[i].params).
// On CUDA: ceil(count / 24) launches at most (the tensor table goes by value as a kernel
// parameter), no host synchronisation and no copy, so the step can be captured in a CUDA graph.
using AdamMultiStepFn = void (*)(const AdamMultiTensor* tensors, int64_t count);
inline constexpr const char* kAdamMultiStep = "adam_multi_step";

// xs: (count), each xs[i].data: (xs[i].n); out: (count) host memory.
// out[i] = norm_pow_sum(xs[i].data, xs[i].n, p), bit-identical (the same fixed blocks per array).
// On CUDA: one host synchronisation per call, whatever count is.
using NormPowSumMultiFn = void (*)(const ConstArray* xs, int64_t count, double p, double* out);
inline constexpr const char* kNormPowSumMulti = "norm_pow_sum_multi";

// xs: (count), each xs[i].data: (xs[i].n); xs[i].data *= factor in place, as scale_inplace.
using ScaleInplaceMultiFn = void (*)(const MutableArray* xs, int64_t count, double factor);
inline constexpr const char* kScaleInplaceMulti = "scale_inplace_multi";

}  // namespace gradus::kernels
