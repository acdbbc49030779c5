#include "models/optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unordered_set>

#include "autodiff/autocast.h"
#include "autodiff/tape.h"
#include "core/env_switch.h"

namespace gradus {

namespace {

std::string group_label(const ParamGroup& group, size_t index) {
  return group.name.empty() ? fmt::format("group {}", index)
                            : fmt::format("group {} '{}'", index, group.name);
}

std::string state_prefix(size_t group, size_t param) {
  return fmt::format("group{}.param{}.", group, param);
}

Tensor i64_scalar(int64_t value) {
  Tensor t = Tensor::empty({}, DType::i64);
  *t.data<int64_t>() = value;
  return t;
}

int64_t read_i64_scalar(const Tensor& t, const std::string& name, const std::string& who) {
  GRADUS_CHECK(t.defined() && t.numel() == 1, who,
               "state tensor '{}' must hold one value, found {}", name, t.describe());
  const double v = t.item();
  GRADUS_CHECK(v >= 0 && v == std::floor(v), who,
               "state tensor '{}' must be a non-negative integer count, found {}", name, v);
  return static_cast<int64_t>(v);
}

}  // namespace

Optimizer::Optimizer(std::vector<ParamGroup> groups, std::string name)
    : groups_(std::move(groups)), name_(std::move(name)) {
  size_t total = 0;
  for (const ParamGroup& g : groups_) total += g.params.size();
  GRADUS_CHECK(total > 0, name_, "got an empty parameter list ({} groups, no parameters)",
               groups_.size());
  validate_groups();
  state_.resize(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) state_[g].resize(groups_[g].params.size());
}

void Optimizer::validate_groups() const {
  std::unordered_set<const TensorImpl*> seen;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& g = groups_[gi];
    // `x >= 0` is false for NaN, so NaN is refused too.
    GRADUS_CHECK(g.lr >= 0, name_, "lr must be >= 0, found {} ({})", g.lr, group_label(g, gi));
    GRADUS_CHECK(g.weight_decay >= 0, name_, "weight_decay must be >= 0, found {} ({})",
                 g.weight_decay, group_label(g, gi));
    for (size_t pi = 0; pi < g.params.size(); ++pi) {
      const Tensor& p = g.params[pi];
      GRADUS_CHECK(p.defined(), name_, "parameter {} of {} is an undefined tensor", pi,
                   group_label(g, gi));
      GRADUS_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64 || p.dtype() == DType::bf16,
                   name_, "parameter {} of {} must be floating point, found {}", pi,
                   group_label(g, gi), p.describe());
      GRADUS_CHECK(p.is_leaf(), name_,
                   "parameter {} of {} is not a leaf (it was computed by an op); optimise the leaf "
                   "it came from",
                   pi, group_label(g, gi));
      GRADUS_CHECK(seen.insert(p.impl_ptr().get()).second, name_,
                   "parameter {} of {} ({}) appears more than once in the parameter groups", pi,
                   group_label(g, gi), p.describe());
    }
  }
}

void Optimizer::add_param_group(ParamGroup group) {
  groups_.push_back(std::move(group));
  try {
    validate_groups();
  } catch (...) {
    groups_.pop_back();
    throw;
  }
  state_.emplace_back(groups_.back().params.size());
}

std::vector<Tensor> Optimizer::params() const {
  std::vector<Tensor> out;
  for (const ParamGroup& g : groups_) out.insert(out.end(), g.params.begin(), g.params.end());
  return out;
}

const ParamState& Optimizer::state(size_t group, size_t param) const {
  GRADUS_CHECK(group < state_.size() && param < state_[group].size(), name_,
               "no parameter {} in group {}", param, group);
  return state_[group][param];
}

Tensor Optimizer::zeros_like(const Tensor& param) {
  return Tensor::zeros(param.shape(), param.dtype(), param.device());
}

void Optimizer::step() {
  // param_groups() is mutable: parameters may have been added and lr changed since the last step.
  validate_groups();
  state_.resize(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) state_[g].resize(groups_[g].params.size());

  NoGradGuard no_grad;
  // Casts of the parameters that an enclosing autocast guard took on entry would go stale.
  detail::autocast_drop_weight_casts();
  // Every gradient is checked before any parameter or state changes.
  std::vector<std::pair<size_t, size_t>> with_grad;  // (group, param) in parameter order
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& group = groups_[gi];
    for (size_t pi = 0; pi < group.params.size(); ++pi) {
      const Tensor& param = group.params[pi];
      const Tensor grad = param.grad();
      if (!grad.defined()) continue;  // as PyTorch: no gradient, no update, no state change
      GRADUS_CHECK(grad.dtype() == param.dtype() && grad.device() == param.device() &&
                       grad.shape() == param.shape(),
                   name_, "gradient {} does not match parameter {} of {} ({})", grad.describe(), pi,
                   group_label(group, gi), param.describe());
      with_grad.emplace_back(gi, pi);
    }
  }
  ++step_count_;
  std::vector<PendingUpdate> updates;
  updates.reserve(with_grad.size());
  for (const auto& [gi, pi] : with_grad) {
    const Tensor& param = groups_[gi].params[pi];
    ParamState& st = state_[gi][pi];
    ++st.step;
    // The kernels want contiguous memory: a strided parameter is updated in a packed copy that is
    // written back below.
    updates.push_back(PendingUpdate{&groups_[gi], param.is_contiguous() ? param : raw_clone(param),
                                    raw_contiguous(param.grad()), &st});
  }
  if (fused_optimizer_enabled()) {
    update_all(updates);
  } else {
    for (const PendingUpdate& u : updates) update(*u.group, u.param, u.grad, *u.state);
  }
  for (size_t i = 0; i < updates.size(); ++i) {
    const Tensor& param = groups_[with_grad[i].first].params[with_grad[i].second];
    if (!param.is_contiguous()) raw_copy_(param, updates[i].param);
  }
}

void Optimizer::update_all(const std::vector<PendingUpdate>& updates) {
  for (const PendingUpdate& u : updates) update(*u.group, u.param, u.grad, *u.state);
}

namespace {
EnvSwitch& fused_optimizer_switch() {
  static EnvSwitch on("GRADUS_FUSED_OPTIMIZER");
  return on;
}
}  // namespace

void set_fused_optimizer(bool on) { fused_optimizer_switch().set(on); }
bool fused_optimizer_enabled() { return fused_optimizer_switch().on(); }

void Optimizer::to(Device device) {
  for (auto& group_state : state_)
    for (ParamState& st : group_state)
      for (auto& [name, buffer] : st.buffers) buffer = raw_to_device(buffer, device);
}

void Optimizer::zero_grad() {
  for (const ParamGroup& g : groups_)
    for (const Tensor& p : g.params) p.zero_grad();
}

std::vector<std::pair<std::string, Tensor>> Optimizer::state_tensors() const {
  std::vector<std::pair<std::string, Tensor>> out;
  out.emplace_back("step_count", i64_scalar(step_count_));
  for (size_t g = 0; g < state_.size(); ++g)
    for (size_t p = 0; p < state_[g].size(); ++p) {
      const ParamState& st = state_[g][p];
      if (st.step == 0 && st.buffers.empty()) continue;
      const std::string prefix = state_prefix(g, p);
      out.emplace_back(prefix + "step", i64_scalar(st.step));
      for (const auto& [name, t] : st.buffers) out.emplace_back(prefix + name, t);
    }
  return out;
}

void Optimizer::load_state_tensors(const std::vector<std::pair<std::string, Tensor>>& tensors) {
  const std::string who = name_ + ".load_state_tensors";
  state_.resize(groups_.size());
  std::vector<std::vector<ParamState>> fresh(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) fresh[g].resize(groups_[g].params.size());
  const std::vector<std::string> buffers = buffer_names();
  int64_t count = step_count_;
  for (const auto& [name, t] : tensors) {
    if (name == "step_count") {
      count = read_i64_scalar(t, name, who);
      continue;
    }
    // "group<g>.param<p>.<field>"
    size_t g = 0, p = 0;
    int consumed = 0;
    char field[64] = {0};
    const bool parsed =
        std::sscanf(name.c_str(), "group%zu.param%zu.%63s%n", &g, &p, field, &consumed) == 3 &&
        consumed == static_cast<int>(name.size());
    GRADUS_CHECK(parsed, who,
                 "unknown state tensor name '{}' (expected 'step_count' or "
                 "'group<g>.param<p>.<field>')",
                 name);
    GRADUS_CHECK(g < groups_.size() && p < groups_[g].params.size(), who,
                 "state tensor '{}' names parameter {} of group {}, which does not exist", name, p,
                 g);
    const std::string f = field;
    ParamState& st = fresh[g][p];
    if (f == "step") {
      st.step = read_i64_scalar(t, name, who);
      continue;
    }
    GRADUS_CHECK(std::find(buffers.begin(), buffers.end(), f) != buffers.end(), who,
                 "state tensor '{}': {} keeps no buffer '{}' with these options", name, name_, f);
    const Tensor& param = groups_[g].params[p];
    GRADUS_CHECK(t.defined() && t.shape() == param.shape(), who,
                 "state tensor '{}' is {} but the parameter is {}", name,
                 t.defined() ? t.describe() : "undefined", param.describe());
    Tensor buf = Tensor::empty(param.shape(), param.dtype(), param.device());
    raw_copy_(buf, t);
    st.buffers[f] = buf;
  }
  for (size_t g = 0; g < fresh.size(); ++g)
    for (size_t p = 0; p < fresh[g].size(); ++p) {
      const ParamState& st = fresh[g][p];
      if (st.step == 0) {
        GRADUS_CHECK(st.buffers.empty(), who, "buffers given for group{}.param{} but no step count",
                     g, p);
        continue;
      }
      for (const std::string& b : buffers)
        GRADUS_CHECK(st.buffers.count(b), who, "group{}.param{}.{} is missing (step is {})", g, p,
                     b, st.step);
    }
  state_ = std::move(fresh);
  step_count_ = count;
}

}  // namespace gradus
