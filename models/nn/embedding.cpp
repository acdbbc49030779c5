#include "models/nn/embedding.h"

#include "autodiff/ops/embedding.h"
#include "core/error.h"
#include "core/random.h"

namespace gradus {

Embedding::Embedding(int64_t num_embeddings, int64_t dim, Generator& gen) {
  GRADUS_CHECK(num_embeddings > 0 && dim > 0, "Embedding",
               "num_embeddings and dim must be positive, found {} and {}", num_embeddings, dim);
  weight_ = register_parameter("weight", rand_normal({num_embeddings, dim}, gen, DType::f32));
}

Embedding::Embedding(Tensor weight) {
  GRADUS_CHECK(weight.defined() && weight.dim() == 2, "Embedding",
               "weight must be (num_embeddings, dim), found {}",
               weight.defined() ? weight.describe() : std::string("undefined"));
  weight_ = register_parameter("weight", weight);
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(weight_, ids); }

}  // namespace gradus
