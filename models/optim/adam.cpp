#include "models/optim/adam.h"

#include <cmath>

#include "kernels/optim.h"
#include "kernels/registry.h"

namespace gradus {

namespace {
constexpr const char* kExpAvg = "exp_avg";
constexpr const char* kExpAvgSq = "exp_avg_sq";

AdamOptions decoupled(AdamOptions o) {
  o.decoupled_weight_decay = true;
  return o;
}
}  // namespace

Adam::Adam(std::vector<ParamGroup> groups, AdamOptions options, std::string name)
    : Optimizer(std::move(groups), std::move(name)), options_(options) {
  // `x >= 0` and `x > 0` are false for NaN, so NaN is refused too.
  GRADUS_CHECK(options_.beta1 >= 0 && options_.beta1 < 1, this->name(),
               "beta1 must be in [0, 1), found {}", options_.beta1);
  GRADUS_CHECK(options_.beta2 >= 0 && options_.beta2 < 1, this->name(),
               "beta2 must be in [0, 1), found {}", options_.beta2);
  GRADUS_CHECK(options_.eps > 0, this->name(), "eps must be > 0, found {}", options_.eps);
}

Adam::Adam(std::vector<ParamGroup> groups, AdamOptions options)
    : Adam(std::move(groups), options, "Adam") {}

Adam::Adam(std::vector<Tensor> params, double lr, AdamOptions options, double weight_decay)
    : Adam(std::vector<ParamGroup>{ParamGroup{std::move(params), lr, weight_decay, ""}}, options,
           "Adam") {}

AdamW::AdamW(std::vector<ParamGroup> groups, AdamOptions options)
    : Adam(std::move(groups), decoupled(options), "AdamW") {}

AdamW::AdamW(std::vector<Tensor> params, double lr, double weight_decay, AdamOptions options)
    : Adam(std::vector<ParamGroup>{ParamGroup{std::move(params), lr, weight_decay, ""}},
           decoupled(options), "AdamW") {}

std::vector<std::string> Adam::buffer_names() const { return {kExpAvg, kExpAvgSq}; }

void Adam::update(const ParamGroup& group, const Tensor& param, const Tensor& grad,
                  ParamState& state) {
  // Resolved first, so that a dtype without a kernel fails before any state is created.
  static const kernels::KernelRef<kernels::AdamStepFn> k(kernels::kAdamStep);
  const kernels::AdamStepFn fn = k(param.device(), param.dtype());
  Tensor& m = state.buffers[kExpAvg];
  Tensor& v = state.buffers[kExpAvgSq];
  if (!m.defined()) m = zeros_like(param);
  if (!v.defined()) v = zeros_like(param);

  // Scalars in double, as PyTorch computes them in Python floats.
  const double t = static_cast<double>(state.step);
  kernels::AdamStepParams p;
  p.lr = group.lr;
  p.beta1 = options_.beta1;
  p.beta2 = options_.beta2;
  p.eps = options_.eps;
  p.weight_decay = group.weight_decay;
  p.decoupled_weight_decay = options_.decoupled_weight_decay;
  p.step_size = group.lr / (1.0 - std::pow(options_.beta1, t));
  p.bias_correction2_sqrt = std::sqrt(1.0 - std::pow(options_.beta2, t));
  fn(param.raw_data(), grad.raw_data(), m.raw_data(), v.raw_data(), param.numel(), p);
}

}  // namespace gradus
