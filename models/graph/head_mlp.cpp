#include "models/graph/head_mlp.h"

#include <cmath>

#include "autodiff/autocast.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/norm.h"
#include "autodiff/ops/view.h"
#include "core/error.h"

namespace gradus::graph {

HeadLinear::HeadLinear(int64_t heads, int64_t in_features, int64_t out_features, bool bias,
                       Generator& gen) {
  GRADUS_CHECK(heads > 0 && in_features > 0 && out_features > 0, "HeadLinear",
               "heads, in_features and out_features must be positive, found {}, {} and {}", heads,
               in_features, out_features);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  weight_ = register_parameter(
      "weight", rand_uniform({heads, out_features, in_features}, gen, DType::f32, -bound, bound));
  if (bias)
    bias_ = register_parameter(
        "bias", rand_uniform({heads, 1, out_features}, gen, DType::f32, -bound, bound));
}

Tensor HeadLinear::forward(const Tensor& x) const {
  const int64_t H = weight_.size(0), in = weight_.size(2);
  GRADUS_CHECK(x.dim() >= 3 && x.size(-3) == H && x.size(-1) == in, "HeadLinear",
               "expected x of shape (..., {}, T, {}) but found {}", H, in, x.describe());
  // The transposed weight is a BLAS transpose flag, not a copy; the heads are the gemm batch.
  Tensor y = matmul(x, transpose(weight_, -1, -2));
  if (!bias_.defined()) return y;
  // Under autocast the bias joins the product's (narrow) dtype, as linear's bias does (and
  // nn.Linear's under torch.autocast): the (..., H, T, out) activations stay narrow instead of
  // being widened to add an (H, 1, out) bias. Its gradient is summed in the narrow dtype and cast
  // back, as linear's is.
  const bool narrow = autocast_state().has_value() && y.dtype() != bias_.dtype();
  return y + (narrow ? to_dtype(bias_, y.dtype()) : bias_);
}

HeadRMSNorm::HeadRMSNorm(int64_t heads, int64_t dim, double eps) : eps_(eps) {
  GRADUS_CHECK(heads > 0 && dim > 0, "HeadRMSNorm", "heads and dim must be positive, found {}, {}",
               heads, dim);
  weight_ = register_parameter("weight", Tensor::ones({heads, 1, dim}));
}

Tensor HeadRMSNorm::forward(const Tensor& x) const {
  GRADUS_CHECK(x.dim() >= 3 && x.size(-3) == weight_.size(0) && x.size(-1) == weight_.size(2),
               "HeadRMSNorm", "expected x of shape (..., {}, T, {}) but found {}", weight_.size(0),
               weight_.size(2), x.describe());
  return rms_norm(x, Tensor(), eps_) * weight_;
}

}  // namespace gradus::graph
