// DecoderLM::loss with the fused head and loss (linear_cross_entropy) against the composite
// cross_entropy(forward(ids)) (set_fused_loss(false)), and the MLP with the fused SwiGLU gate
// against silu then mul (set_fused_swiglu(false)): loss and every parameter's gradient agree in
// f64 with an untied and a tied head, and for a graded and a graph kind; the fused residual add and
// norm (add_rms_norm) gives the composite's bits for every kind. (The memory the chunks
// save is measured by LinearCrossEntropy.ChunksKeepTheLogitsOutOfMemory and, for the medium model,
// in docs/benchmarks.md.)
#include <cmath>
#include <string>

#include "autodiff/ops/norm.h"
#include "autodiff/tape.h"
#include "core/random.h"
#include "models/nn/feed_forward.h"
#include "models/nn/lm.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

ModelConfig tiny(const std::string& kind, bool tied) {
  ModelConfig c;
  c.vocab_size = 37;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.max_position_embeddings = 32;
  c.attention_kind = kind;
  c.tie_word_embeddings = tied;
  return c;
}

// Restores the process-wide switches however the test ends.
struct FusedSwitchesGuard {
  bool loss = fused_loss_enabled(), swiglu = fused_swiglu_enabled(), norm = fused_norm_enabled();
  ~FusedSwitchesGuard() {
    set_fused_loss(loss);
    set_fused_swiglu(swiglu);
    set_fused_norm(norm);
  }
};

struct Step {
  double loss = 0;
  std::vector<std::vector<double>> grads;
};

Step step(const ModelConfig& c, bool fused_loss, bool fused_swiglu, int64_t T = 20) {
  set_fused_loss(fused_loss);
  set_fused_swiglu(fused_swiglu);
  Generator gen(5);
  DecoderLM lm(c, gen);
  lm.to(DType::f64);
  Generator data(9);
  auto tokens = [&] {  // uniform ids in [0, vocab)
    Tensor u = rand_uniform({3, T}, data, DType::f64, 0.0, static_cast<double>(c.vocab_size));
    std::vector<double> v = u.to_vector();
    for (double& x : v) x = std::floor(x);
    return Tensor::from_vector(v, {3, T}, DType::i64);
  };
  Tensor ids = tokens(), targets = tokens();
  Tensor loss = lm.loss(ids, targets);
  backward(loss);
  Step out{loss.item(), {}};
  for (const Tensor& p : lm.parameters()) out.grads.push_back(p.grad().to_vector());
  return out;
}

void expect_same_step(const Step& a, const Step& b) {
  EXPECT_NEAR(a.loss, b.loss, 1e-12 * std::abs(b.loss));
  ASSERT_EQ(a.grads.size(), b.grads.size());
  for (size_t i = 0; i < a.grads.size(); ++i) {
    ASSERT_EQ(a.grads[i].size(), b.grads[i].size());
    for (size_t j = 0; j < a.grads[i].size(); ++j)
      ASSERT_NEAR(a.grads[i][j], b.grads[i][j], 1e-11 * (1 + std::abs(b.grads[i][j])))
          << "parameter " << i << " element " << j;
  }
}

TEST(FusedLossModel, GivesTheCompositesLossAndGradients) {
  FusedSwitchesGuard guard;
  for (const char* kind : {"std", "lgt", "gin"})
    for (bool tied : {false, true}) {
      SCOPED_TRACE(std::string(kind) + (tied ? " tied" : " untied"));
      expect_same_step(step(tiny(kind, tied), true, true), step(tiny(kind, tied), false, true));
    }
}

TEST(FusedSwigluModel, GivesTheCompositesLossAndGradients) {
  FusedSwitchesGuard guard;
  for (const char* kind : {"std", "pna"}) {
    SCOPED_TRACE(kind);
    expect_same_step(step(tiny(kind, false), true, true), step(tiny(kind, false), true, false));
  }
}

// The residual add and post-attention norm in one kernel (add_rms_norm) against x + attention then
// rms_norm (set_fused_norm(false)): the same bits for every kind (the kernel rounds the sum as the
// add stores it and runs the norm's own row code on it).
TEST(FusedNormModel, GivesTheCompositesBits) {
  FusedSwitchesGuard guard;
  for (const char* kind : {"std", "lgt", "egt", "gin", "pna"}) {
    SCOPED_TRACE(kind);
    set_fused_norm(true);
    const Step fused = step(tiny(kind, false), true, true);
    set_fused_norm(false);
    const Step composite = step(tiny(kind, false), true, true);
    EXPECT_EQ(fused.loss, composite.loss);
    EXPECT_EQ(fused.grads, composite.grads);
  }
}

}  // namespace
}  // namespace gradus
