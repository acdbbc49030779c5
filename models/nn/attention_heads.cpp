#include "models/nn/attention_heads.h"

#include "autodiff/ops/rope.h"
#include "autodiff/ops/view.h"
#include "core/error.h"

namespace gradus {

Tensor split_heads(const Tensor& t, int64_t num_heads) {
  GRADUS_CHECK(t.dim() == 3 && num_heads > 0 && t.size(2) % num_heads == 0, "split_heads",
               "expected (B, T, H * D) with H = {} but found {}", num_heads, t.describe());
  const int64_t B = t.size(0), T = t.size(1), D = t.size(2) / num_heads;
  return transpose(reshape(t, {B, T, num_heads, D}), 1, 2);
}

Tensor merge_heads(const Tensor& t) {
  GRADUS_CHECK(t.dim() == 4, "merge_heads", "expected (B, H, T, D) but found {}", t.describe());
  const int64_t B = t.size(0), H = t.size(1), T = t.size(2), D = t.size(3);
  return reshape(transpose(t, 1, 2), {B, T, H * D});
}

Tensor merge_heads_first(const Tensor& t, int64_t batch) {
  GRADUS_CHECK(t.dim() == 3 && batch > 0 && t.size(1) % batch == 0, "merge_heads_first",
               "expected (H, B T, D) with B = {} but found {}", batch, t.describe());
  const int64_t H = t.size(0), T = t.size(1) / batch, D = t.size(2);
  return reshape(permute(reshape(t, {H, batch, T, D}), {1, 2, 0, 3}), {batch, T, H * D});
}

Tensor rope_heads(const Tensor& projected, int64_t num_heads, double rope_theta,
                  int64_t position_offset) {
  return rope(split_heads(projected, num_heads), rope_theta, position_offset);
}

void check_attention_input(const char* where, const Tensor& x, int64_t hidden_size) {
  GRADUS_CHECK(x.dim() == 3 && x.size(2) == hidden_size, where,
               "expected x of shape (B, T, {}) but found {}", hidden_size, x.describe());
}

std::shared_ptr<Linear> add_projection(Module& owner, const std::string& name, int64_t hidden_size,
                                       Generator& gen) {
  return owner.register_module(name,
                               std::make_shared<Linear>(hidden_size, hidden_size, false, gen));
}

}  // namespace gradus
