// Embedding: a table of vectors looked up by integer ids (torch.nn.Embedding).
#pragma once

#include <cstdint>

#include "models/nn/module.h"

namespace gradus {

class Embedding : public Module {
 public:
  // weight: (num_embeddings, dim) drawn from N(0, 1), as torch.nn.Embedding initialises it. f32.
  Embedding(int64_t num_embeddings, int64_t dim, Generator& gen);
  // Wraps an existing (num_embeddings, dim) table.
  explicit Embedding(Tensor weight);

  // ids: (...) i64, each in [0, num_embeddings) -> (..., dim)
  Tensor forward(const Tensor& ids) const;

  const Tensor& weight() const { return weight_; }
  int64_t num_embeddings() const { return weight_.size(0); }
  int64_t dim() const { return weight_.size(1); }

 private:
  Tensor weight_;
};

}  // namespace gradus
