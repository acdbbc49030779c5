#include "models/nn/linear.h"

#include <cmath>

#include "autodiff/ops/matmul.h"
#include "core/error.h"
#include "core/random.h"

namespace gradus {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen) {
  GRADUS_CHECK(in_features > 0 && out_features > 0, "Linear",
               "in_features and out_features must be positive, found {} and {}", in_features,
               out_features);
  double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  weight_ = register_parameter(
      "weight", rand_uniform({out_features, in_features}, gen, DType::f32, -bound, bound));
  if (bias)
    bias_ =
        register_parameter("bias", rand_uniform({out_features}, gen, DType::f32, -bound, bound));
}

Linear::Linear(Tensor weight, Tensor bias) {
  GRADUS_CHECK(weight.defined() && weight.dim() == 2, "Linear",
               "weight must be (out, in), found {}",
               weight.defined() ? weight.describe() : std::string("undefined"));
  weight_ = register_parameter("weight", weight);
  if (bias.defined()) {
    GRADUS_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "Linear",
                 "bias must be ({}) to match weight {}, found {}", weight.size(0),
                 weight.describe(), bias.describe());
    bias_ = register_parameter("bias", bias);
  }
}

Tensor Linear::forward(const Tensor& x) const { return linear(x, weight_, bias_); }

}  // namespace gradus
