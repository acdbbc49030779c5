// A graded two-layer perceptron, the feed-forward of the theory checks and of the regression
// experiment: x -> W2 sigma(W1 Phi_in x + b1) + b2, optionally followed by Phi_out.
// Folded, the initial Phi_in is absorbed into W1's columns at construction and the network runs
// ungraded (the "folded" baseline).
#pragma once

#include <memory>
#include <optional>

#include "models/graded/grading.h"
#include "models/nn/linear.h"

namespace gradus::graded {

enum class Activation { relu, tanh, silu, gelu };
Activation parse_activation(const std::string& name);  // throws naming the accepted names
// sup |sigma'|: the activation's Lipschitz constant (silu 1.0998, gelu 1.1289, relu and tanh 1).
double activation_lipschitz(Activation a);
Tensor activate(const Tensor& x, Activation a);

class GradedMLP : public Module {
 public:
  // Submodules fc1 (in -> hidden), fc2 (hidden -> out) drawn from gen in that order, then the
  // gradings "grading_in" (options in.dim must equal `in`) and "grading_out" when given.
  GradedMLP(int64_t in, int64_t hidden, int64_t out, Activation activation, Generator& gen,
            std::optional<GradingOptions> grading_in = std::nullopt,
            std::optional<GradingOptions> grading_out = std::nullopt, bool folded = false,
            bool bias = true);

  // x: (..., in) -> (..., out)
  Tensor forward(const Tensor& x) const;

  const std::shared_ptr<Linear>& fc1() const { return fc1_; }
  const std::shared_ptr<Linear>& fc2() const { return fc2_; }
  const std::shared_ptr<GradingOperator>& grading_in() const { return grading_in_; }
  const std::shared_ptr<GradingOperator>& grading_out() const { return grading_out_; }
  Activation activation() const { return activation_; }

 private:
  std::shared_ptr<Linear> fc1_, fc2_;
  std::shared_ptr<GradingOperator> grading_in_, grading_out_;  // null: identity (or folded)
  Activation activation_;
};

}  // namespace gradus::graded
