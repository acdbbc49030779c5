#include "models/optim/adam.h"

#include <cmath>

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

kernels::AdamStepParams Adam::step_params(const ParamGroup& group, const ParamState& state) const {
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
  return p;
}

std::pair<Tensor, Tensor> Adam::moments(const Tensor& param, ParamState& state) {
  Tensor& m = state.buffers[kExpAvg];
  Tensor& v = state.buffers[kExpAvgSq];
  if (!m.defined()) m = zeros_like(param);
  if (!v.defined()) v = zeros_like(param);
  return {m, v};
}

void Adam::update(const ParamGroup& group, const Tensor& param, const Tensor& grad,
                  ParamState& state) {
  // Resolved first, so that a dtype without a kernel fails before any state is created.
  static const kernels::KernelRef<kernels::AdamStepFn> k(kernels::kAdamStep);
  const kernels::AdamStepFn fn = k(param.device(), param.dtype());
  const auto [m, v] = moments(param, state);
  fn(param.raw_data(), grad.raw_data(), m.raw_data(), v.raw_data(), param.numel(),
     step_params(group, state));
}

void Adam::update_all(const std::vector<PendingUpdate>& updates) {
  static const kernels::KernelRef<kernels::AdamMultiStepFn> k(kernels::kAdamMultiStep);
  // Buckets of one (device, dtype), each in parameter order; every kernel is resolved before any
  // state is created.
  std::vector<std::vector<const PendingUpdate*>> buckets;
  std::vector<kernels::AdamMultiStepFn> fns;
  for (const PendingUpdate& u : updates) {
    size_t b = 0;
    while (b < buckets.size() && !(buckets[b][0]->param.device() == u.param.device() &&
                                   buckets[b][0]->param.dtype() == u.param.dtype()))
      ++b;
    if (b == buckets.size()) {
      fns.push_back(k(u.param.device(), u.param.dtype()));
      buckets.emplace_back();
    }
    buckets[b].push_back(&u);
  }
  for (size_t b = 0; b < buckets.size(); ++b) {
    std::vector<kernels::AdamMultiTensor> tensors;
    tensors.reserve(buckets[b].size());
    for (const PendingUpdate* u : buckets[b]) {
      const auto [m, v] = moments(u->param, *u->state);
      tensors.push_back(kernels::AdamMultiTensor{u->param.raw_data(), u->grad.raw_data(),
                                                 m.raw_data(), v.raw_data(), u->param.numel(),
                                                 step_params(*u->group, *u->state)});
    }
    fns[b](tensors.data(), static_cast<int64_t>(tensors.size()));
  }
}

}  // namespace gradus
