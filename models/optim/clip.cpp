#include "models/optim/clip.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/optim.h"
#include "kernels/registry.h"
#include "models/optim/optimizer.h"

namespace gradus {

namespace {

// The gradients of `params` that exist, made contiguous, with their parameter index.
struct GradEntry {
  size_t index;
  Tensor grad;
};

// Groups entries by (device, dtype), keeping parameter order within each group.
std::vector<std::vector<const GradEntry*>> by_device_and_dtype(const std::vector<GradEntry>& all) {
  std::vector<std::vector<const GradEntry*>> buckets;
  for (const GradEntry& e : all) {
    size_t b = 0;
    while (b < buckets.size() && !(buckets[b][0]->grad.device() == e.grad.device() &&
                                   buckets[b][0]->grad.dtype() == e.grad.dtype()))
      ++b;
    if (b == buckets.size()) buckets.emplace_back();
    buckets[b].push_back(&e);
  }
  return buckets;
}

// sum |g|^p (or max |g|) of each gradient, in the order of `grads`: one norm_pow_sum_multi call
// (one host synchronisation on the GPU) per (device, dtype), or one norm_pow_sum per gradient with
// the fused optimiser switched off. The values are the same bits either way.
std::vector<double> per_gradient_norm_parts(const std::vector<GradEntry>& grads, double norm_type) {
  std::vector<double> parts(grads.size(), 0.0);
  if (!fused_optimizer_enabled()) {
    static const kernels::KernelRef<kernels::NormPowSumFn> k(kernels::kNormPowSum);
    for (size_t i = 0; i < grads.size(); ++i) {
      const Tensor& g = grads[i].grad;
      parts[i] = k(g.device(), g.dtype())(g.raw_data(), g.numel(), norm_type);
    }
    return parts;
  }
  static const kernels::KernelRef<kernels::NormPowSumMultiFn> k(kernels::kNormPowSumMulti);
  for (const auto& bucket : by_device_and_dtype(grads)) {
    std::vector<kernels::ConstArray> xs;
    for (const GradEntry* e : bucket) xs.push_back({e->grad.raw_data(), e->grad.numel()});
    std::vector<double> out(xs.size());
    const Tensor& first = bucket[0]->grad;
    k(first.device(), first.dtype())(xs.data(), static_cast<int64_t>(xs.size()), norm_type,
                                     out.data());
    for (size_t j = 0; j < bucket.size(); ++j)
      parts[static_cast<size_t>(bucket[j] - grads.data())] = out[j];
  }
  return parts;
}

double grad_norm_impl(const char* who, const std::vector<Tensor>& params, double norm_type) {
  const bool inf_norm = norm_type == std::numeric_limits<double>::infinity();
  GRADUS_CHECK(inf_norm || (norm_type > 0 && std::isfinite(norm_type)), who,
               "norm_type must be > 0 or +inf, found {}", norm_type);
  std::vector<GradEntry> grads;
  for (size_t i = 0; i < params.size(); ++i) {
    GRADUS_CHECK(params[i].defined(), who, "parameter {} is an undefined tensor", i);
    const Tensor grad = params[i].grad();
    if (grad.defined()) grads.push_back(GradEntry{i, raw_contiguous(grad)});
  }
  const std::vector<double> parts = per_gradient_norm_parts(grads, norm_type);
  // Combined in parameter order, whatever the grouping by device above.
  double acc = 0.0;  // sum of |g|^p, or the running max for the inf norm
  for (const double part : parts) {
    if (inf_norm)
      acc = (part != part || acc != acc) ? std::numeric_limits<double>::quiet_NaN()
                                         : std::max(acc, part);
    else
      acc += part;
  }
  if (inf_norm) return acc;
  return norm_type == 2.0   ? std::sqrt(acc)
         : norm_type == 1.0 ? acc
                            : std::pow(acc, 1.0 / norm_type);
}

// Multiplies every gradient by coef in place; a strided gradient is scaled in a packed copy that is
// written back, so that every holder of the gradient sees the change.
void scale_gradients(const std::vector<Tensor>& params, double coef) {
  std::vector<GradEntry> work;  // contiguous gradients or packed copies, with their parameter
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor grad = params[i].grad();
    if (grad.defined()) work.push_back(GradEntry{i, grad.is_contiguous() ? grad : raw_clone(grad)});
  }
  if (fused_optimizer_enabled()) {
    static const kernels::KernelRef<kernels::ScaleInplaceMultiFn> k(kernels::kScaleInplaceMulti);
    for (const auto& bucket : by_device_and_dtype(work)) {
      std::vector<kernels::MutableArray> xs;
      for (const GradEntry* e : bucket) xs.push_back({e->grad.raw_data(), e->grad.numel()});
      const Tensor& first = bucket[0]->grad;
      k(first.device(), first.dtype())(xs.data(), static_cast<int64_t>(xs.size()), coef);
    }
  } else {
    static const kernels::KernelRef<kernels::ScaleInplaceFn> k(kernels::kScaleInplace);
    for (const GradEntry& e : work)
      k(e.grad.device(), e.grad.dtype())(e.grad.raw_data(), e.grad.numel(), coef);
  }
  for (const GradEntry& e : work) {
    const Tensor grad = params[e.index].grad();
    if (!grad.is_contiguous()) raw_copy_(grad, e.grad);
  }
}

}  // namespace

double grad_norm(const std::vector<Tensor>& params, double norm_type) {
  return grad_norm_impl("grad_norm", params, norm_type);
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type) {
  GRADUS_CHECK(max_norm >= 0, "clip_grad_norm", "max_norm must be >= 0, found {}", max_norm);
  const double total = grad_norm_impl("clip_grad_norm", params, norm_type);
  if (!std::isfinite(total)) return total;
  const double coef = max_norm / (total + 1e-6);
  if (coef >= 1.0) return total;
  scale_gradients(params, coef);
  return total;
}

}  // namespace gradus
