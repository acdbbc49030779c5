// Optimiser base: parameter groups, lazily created per-parameter state, step / zero_grad, and named
// access to the state for checkpoints. SGD, Adam and AdamW (sgd.h, adam.h) supply the update; the
// arithmetic lives in fused kernels (kernels/optim.h). Formulas: docs/optimizers.md.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace gradus {

// Parameters that share hyper-parameters. lr and weight_decay may be changed between steps (a
// learning-rate schedule writes param_groups()[g].lr).
struct ParamGroup {
  std::vector<Tensor> params;
  double lr = 1e-3;
  double weight_decay = 0.0;
  std::string name;  // only for messages and readability
  // For schedules that drive every group from one rate: a group's lr is the scheduled rate times
  // this (grade parameters of graded transformers learn at 0.1 x). The optimiser never reads it.
  double lr_scale = 1.0;
};

// The state of one parameter: its named buffers (created at its first update, in the parameter's
// dtype and on its device, always contiguous) and the number of updates applied to it (a parameter
// skipped for lack of a gradient does not count the step, as in PyTorch).
struct ParamState {
  std::map<std::string, Tensor> buffers;
  int64_t step = 0;
};

// On by default: step() hands all of a step's updates to the optimiser at once, which runs its
// multi-tensor kernel (a few launches per step on the GPU), and grad_norm / clip_grad_norm read
// every gradient in one call per (device, dtype). GRADUS_FUSED_OPTIMIZER=0 in the environment (or
// set_fused_optimizer(false)) runs the per-parameter kernels instead, to time or check the fusion;
// the results are bit-identical either way. Thread-safe.
void set_fused_optimizer(bool on);
bool fused_optimizer_enabled();

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient (others are skipped), under no-grad; the
  // parameters are overwritten in place. Re-validates lr and weight_decay of every group first.
  void step();
  // Drops every parameter's gradient (PyTorch's zero_grad(set_to_none=True)).
  void zero_grad();
  // Moves every state buffer to `device` (after the model's parameters were moved with
  // Module::to(device): the parameter handles the groups hold follow the module by themselves).
  void to(Device device);

  // Mutable so that a schedule can change lr; adding parameters to a group is allowed (they get
  // fresh state at their first update).
  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  void add_param_group(ParamGroup group);
  std::vector<Tensor> params() const;  // every parameter, group by group

  // Number of step() calls so far.
  int64_t step_count() const { return step_count_; }
  const std::string& name() const { return name_; }

  // The state as named tensors, for checkpoints: "step_count" (i64 rank-0), then for each parameter
  // with state "group<g>.param<p>.step" (i64 rank-0) and its buffers "group<g>.param<p>.<buffer>"
  // (Adam: exp_avg, exp_avg_sq; SGD with momentum: momentum_buffer). Buffers are the live tensors.
  std::vector<std::pair<std::string, Tensor>> state_tensors() const;
  // Restores what state_tensors() returned (values are copied into fresh buffers; dtype and device
  // follow the parameter). Throws on an unknown name or a shape mismatch; parameters not mentioned
  // start afresh.
  void load_state_tensors(const std::vector<std::pair<std::string, Tensor>>& tensors);

  // State of parameter p of group g (empty before its first update).
  const ParamState& state(size_t group, size_t param) const;

 protected:
  Optimizer(std::vector<ParamGroup> groups, std::string name);

  // Applies one update to `param` (contiguous, possibly a temporary copy of a strided parameter)
  // with gradient `grad` (contiguous, same dtype and device). state.step already counts this
  // update.
  virtual void update(const ParamGroup& group, const Tensor& param, const Tensor& grad,
                      ParamState& state) = 0;

  // One parameter's part of a step, as update() receives it.
  struct PendingUpdate {
    const ParamGroup* group;
    Tensor param;  // contiguous: the parameter itself or its packed work copy
    Tensor grad;   // contiguous, same dtype and device
    ParamState* state;
  };
  // Applies every update of this step, in parameter order (step() writes work copies back after
  // it). The default calls update() for each; an optimiser with a multi-tensor kernel overrides it
  // to update many parameters per launch. Used while fused_optimizer_enabled().
  virtual void update_all(const std::vector<PendingUpdate>& updates);
  // The buffers this optimiser keeps per parameter (for load_state_tensors).
  virtual std::vector<std::string> buffer_names() const = 0;

  // A zero-filled buffer shaped like `param` (its dtype and device).
  static Tensor zeros_like(const Tensor& param);

 private:
  // Throws (naming the optimiser, the field and the group) on lr < 0, weight_decay < 0 (or NaN),
  // an undefined, non-floating or non-leaf parameter, or one listed twice.
  void validate_groups() const;

  std::vector<ParamGroup> groups_;
  std::vector<std::vector<ParamState>> state_;  // [group][param]
  int64_t step_count_ = 0;
  std::string name_;
};

}  // namespace gradus
