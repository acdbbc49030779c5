// Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay,
// step for step as torch.optim.SGD (formulas in docs/optimizers.md).
#pragma once

#include "models/optim/optimizer.h"

namespace gradus {

struct SGDOptions {
  double momentum = 0.0;  // >= 0; 0 keeps no buffer
  double dampening =
      0.0;  // in [0, 1]; the first step ignores it (the buffer starts as the gradient)
  bool nesterov = false;  // needs momentum > 0 and dampening == 0
};

class SGD : public Optimizer {
 public:
  explicit SGD(std::vector<ParamGroup> groups, SGDOptions options = {});
  SGD(std::vector<Tensor> params, double lr, SGDOptions options = {}, double weight_decay = 0.0);

  const SGDOptions& options() const { return options_; }

 protected:
  void update(const ParamGroup& group, const Tensor& param, const Tensor& grad,
              ParamState& state) override;
  std::vector<std::string> buffer_names() const override;

 private:
  SGDOptions options_;
};

}  // namespace gradus
