#include "models/nn/norm.h"

#include <cmath>

#include "autodiff/ops/norm.h"
#include "core/error.h"

namespace gradus {

namespace {
void check_norm_args(const char* where, int64_t dim, double eps) {
  GRADUS_CHECK(dim > 0, where, "dim must be positive, found {}", dim);
  GRADUS_CHECK(std::isfinite(eps) && eps > 0, where, "eps must be positive and finite, found {}",
               eps);
}
}  // namespace

RMSNorm::RMSNorm(int64_t dim, double eps) : eps_(eps) {
  check_norm_args("RMSNorm", dim, eps);
  weight_ = register_parameter("weight", Tensor::ones({dim}));
}

Tensor RMSNorm::forward(const Tensor& x) const { return rms_norm(x, weight_, eps_); }

SumAndNorm RMSNorm::forward_residual(const Tensor& x, const Tensor& delta) const {
  return add_rms_norm(x, delta, weight_, eps_);
}

LayerNorm::LayerNorm(int64_t dim, double eps, bool bias) : eps_(eps) {
  check_norm_args("LayerNorm", dim, eps);
  weight_ = register_parameter("weight", Tensor::ones({dim}));
  if (bias) bias_ = register_parameter("bias", Tensor::zeros({dim}));
}

Tensor LayerNorm::forward(const Tensor& x) const { return layer_norm(x, weight_, bias_, eps_); }

}  // namespace gradus
