// Adam (L2 weight decay added to the gradient, as torch.optim.Adam) and AdamW (decoupled weight
// decay, as torch.optim.AdamW), with bias correction and eps added after the square root. amsgrad
// is not provided. Formulas in docs/optimizers.md.
#pragma once

#include "kernels/optim.h"
#include "models/optim/optimizer.h"

namespace gradus {

struct AdamOptions {
  double beta1 = 0.9;    // in [0, 1)
  double beta2 = 0.999;  // in [0, 1)
  double eps = 1e-8;     // > 0
  // false: weight_decay * param is added to the gradient (Adam); true: param *= 1 - lr *
  // weight_decay before the update (AdamW).
  bool decoupled_weight_decay = false;
};

class Adam : public Optimizer {
 public:
  explicit Adam(std::vector<ParamGroup> groups, AdamOptions options = {});
  explicit Adam(std::vector<Tensor> params, double lr = 1e-3, AdamOptions options = {},
                double weight_decay = 0.0);

  const AdamOptions& options() const { return options_; }

 protected:
  Adam(std::vector<ParamGroup> groups, AdamOptions options, std::string name);
  void update(const ParamGroup& group, const Tensor& param, const Tensor& grad,
              ParamState& state) override;
  // One adam_multi_step call per (device, dtype) of the parameters: same results as update() on
  // each, in a few launches.
  void update_all(const std::vector<PendingUpdate>& updates) override;
  std::vector<std::string> buffer_names() const override;

 private:
  // The kernel's scalars for a parameter at state.step (computed in double, as PyTorch does).
  kernels::AdamStepParams step_params(const ParamGroup& group, const ParamState& state) const;
  // The state's exp_avg and exp_avg_sq, created as zeros at the first update.
  static std::pair<Tensor, Tensor> moments(const Tensor& param, ParamState& state);

  AdamOptions options_;
};

// Adam with decoupled weight decay; options.decoupled_weight_decay is forced to true. The group's
// weight_decay is the decay (0.01 by default from a plain parameter list, as in PyTorch).
class AdamW : public Adam {
 public:
  explicit AdamW(std::vector<ParamGroup> groups, AdamOptions options = {});
  explicit AdamW(std::vector<Tensor> params, double lr = 1e-3, double weight_decay = 1e-2,
                 AdamOptions options = {});
};

}  // namespace gradus
