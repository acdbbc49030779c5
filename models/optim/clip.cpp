#include "models/optim/clip.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/optim.h"
#include "kernels/registry.h"

namespace gradus {

namespace {

double grad_norm_impl(const char* who, const std::vector<Tensor>& params, double norm_type) {
  const bool inf_norm = norm_type == std::numeric_limits<double>::infinity();
  GRADUS_CHECK(inf_norm || (norm_type > 0 && std::isfinite(norm_type)), who,
               "norm_type must be > 0 or +inf, found {}", norm_type);
  static const kernels::KernelRef<kernels::NormPowSumFn> k(kernels::kNormPowSum);
  double acc = 0.0;  // sum of |g|^p, or the running max for the inf norm
  for (size_t i = 0; i < params.size(); ++i) {
    GRADUS_CHECK(params[i].defined(), who, "parameter {} is an undefined tensor", i);
    const Tensor grad = params[i].grad();
    if (!grad.defined()) continue;
    const Tensor g = raw_contiguous(grad);
    const double part = k(g.device(), g.dtype())(g.raw_data(), g.numel(), norm_type);
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
  static const kernels::KernelRef<kernels::ScaleInplaceFn> k(kernels::kScaleInplace);
  for (const Tensor& p : params) {
    const Tensor grad = p.grad();
    if (!grad.defined()) continue;
    if (grad.is_contiguous()) {
      k(grad.device(), grad.dtype())(grad.raw_data(), grad.numel(), coef);
    } else {
      // Scale a packed copy and write it back, so that every holder of the gradient sees the
      // change.
      Tensor work = raw_clone(grad);
      k(work.device(), work.dtype())(work.raw_data(), work.numel(), coef);
      raw_copy_(grad, work);
    }
  }
  return total;
}

}  // namespace gradus
