#include "models/optim/sgd.h"

#include "kernels/optim.h"
#include "kernels/registry.h"

namespace gradus {

namespace {
constexpr const char* kMomentumBuffer = "momentum_buffer";
}

SGD::SGD(std::vector<ParamGroup> groups, SGDOptions options)
    : Optimizer(std::move(groups), "SGD"), options_(options) {
  GRADUS_CHECK(options_.momentum >= 0, "SGD", "momentum must be >= 0, found {}", options_.momentum);
  GRADUS_CHECK(options_.dampening >= 0 && options_.dampening <= 1, "SGD",
               "dampening must be in [0, 1], found {}", options_.dampening);
  GRADUS_CHECK(!options_.nesterov || (options_.momentum > 0 && options_.dampening == 0), "SGD",
               "nesterov requires momentum > 0 and dampening == 0, found momentum {} and "
               "dampening {}",
               options_.momentum, options_.dampening);
}

SGD::SGD(std::vector<Tensor> params, double lr, SGDOptions options, double weight_decay)
    : SGD(std::vector<ParamGroup>{ParamGroup{std::move(params), lr, weight_decay, ""}}, options) {}

std::vector<std::string> SGD::buffer_names() const {
  if (options_.momentum == 0) return {};
  return {kMomentumBuffer};
}

void SGD::update(const ParamGroup& group, const Tensor& param, const Tensor& grad,
                 ParamState& state) {
  // Resolved first, so that a dtype without a kernel fails before any state is created.
  static const kernels::KernelRef<kernels::SgdStepFn> k(kernels::kSgdStep);
  const kernels::SgdStepFn fn = k(param.device(), param.dtype());
  kernels::SgdStepParams p;
  p.lr = group.lr;
  p.weight_decay = group.weight_decay;
  p.momentum = options_.momentum;
  p.dampening = options_.dampening;
  p.nesterov = options_.nesterov;
  void* buf = nullptr;
  if (options_.momentum != 0) {
    auto it = state.buffers.find(kMomentumBuffer);
    if (it == state.buffers.end()) {
      // The kernel initialises it from the gradient (p.first), so it needs no zero fill.
      it =
          state.buffers
              .emplace(kMomentumBuffer, Tensor::empty(param.shape(), param.dtype(), param.device()))
              .first;
      p.first = true;
    }
    buf = it->second.raw_data();
  }
  fn(param.raw_data(), grad.raw_data(), buf, param.numel(), p);
}

}  // namespace gradus
