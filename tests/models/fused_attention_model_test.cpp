// The attention kinds with the fused attention op against the same model with the composite
// (matmul, mask, softmax, matmul; set_fused_attention(false)): loss and every parameter's gradient
// agree in f64 for std, lgt (learnable ramp grades), egt and gin; with attention dropout active
// while training both paths are the composite, bit for bit.
#include <cmath>
#include <string>

#include "autodiff/tape.h"
#include "core/random.h"
#include "models/nn/attention.h"
#include "models/nn/lm.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

ModelConfig tiny(const std::string& kind) {
  ModelConfig c;
  c.vocab_size = 11;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.max_position_embeddings = 80;
  c.attention_kind = kind;
  if (kind == "lgt") {
    c.graded_learnable = true;
    c.graded_q_init = "0.5..2";
  }
  return c;
}

// Restores the process-wide switch however the test ends.
struct FusedAttentionGuard {
  bool saved = fused_attention_enabled();
  ~FusedAttentionGuard() { set_fused_attention(saved); }
};

struct LossAndGradients {
  double loss = 0;
  std::vector<std::vector<double>> grads;
};

LossAndGradients loss_and_gradients(const ModelConfig& c, bool fused, bool training) {
  set_fused_attention(fused);
  Generator gen(5);
  DecoderLM lm(c, gen);
  lm.to(DType::f64);
  lm.train(training);
  // 70 positions: more than one 64-row query block of the fused kernels.
  Generator data(9);
  auto tokens = [&] {  // uniform ids in [0, vocab)
    Tensor u = rand_uniform({2, 70}, data, DType::f64, 0.0, static_cast<double>(c.vocab_size));
    std::vector<double> v = u.to_vector();
    for (double& x : v) x = std::floor(x);
    return Tensor::from_vector(v, {2, 70}, DType::i64);
  };
  Tensor ids = tokens(), targets = tokens();
  Tensor loss = lm.loss(ids, targets);
  backward(loss);
  LossAndGradients out{loss.item(), {}};
  for (const Tensor& p : lm.parameters()) out.grads.push_back(p.grad().to_vector());
  return out;
}

TEST(FusedAttentionModel, EveryKindGivesTheCompositesLossAndGradients) {
  FusedAttentionGuard guard;
  for (const char* kind : {"std", "lgt", "egt", "gin"}) {
    SCOPED_TRACE(kind);
    const ModelConfig c = tiny(kind);
    const LossAndGradients fused = loss_and_gradients(c, true, true);
    const LossAndGradients composite = loss_and_gradients(c, false, true);
    EXPECT_NEAR(fused.loss, composite.loss, 1e-12 * std::abs(composite.loss));
    ASSERT_EQ(fused.grads.size(), composite.grads.size());
    for (size_t i = 0; i < fused.grads.size(); ++i) {
      ASSERT_EQ(fused.grads[i].size(), composite.grads[i].size());
      for (size_t j = 0; j < fused.grads[i].size(); ++j)
        ASSERT_NEAR(fused.grads[i][j], composite.grads[i][j],
                    1e-11 * (1 + std::abs(composite.grads[i][j])))
            << "parameter " << i << " element " << j;
    }
  }
}

TEST(FusedAttentionModel, AttentionDropoutWhileTrainingUsesTheComposite) {
  FusedAttentionGuard guard;
  ModelConfig c = tiny("std");
  c.attention_dropout = 0.2;
  const LossAndGradients fused = loss_and_gradients(c, true, true);
  const LossAndGradients composite = loss_and_gradients(c, false, true);
  EXPECT_EQ(fused.loss, composite.loss);
  EXPECT_EQ(fused.grads, composite.grads);
}

}  // namespace
}  // namespace gradus
