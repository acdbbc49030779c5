// PNA-Attention with the streaming op (pna_moments) against the same model with the composite
// (set_fused_attention(false)): loss and every parameter's gradient agree in f64 for the
// benchmark's configuration and the other adjacency, thresholds, aggregators and scalers; the
// composite still runs where the adjacency cannot be streamed (topk, attention dropout while
// training); and the streamed step keeps far less memory for its backward.
#include <cmath>
#include <string>

#include "autodiff/tape.h"
#include "core/allocator.h"
#include "core/random.h"
#include "models/graph/pna_attention.h"
#include "models/nn/attention.h"
#include "models/nn/lm.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

ModelConfig tiny_pna() {
  ModelConfig c;
  c.vocab_size = 11;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.max_position_embeddings = 160;
  c.attention_kind = "pna";
  return c;
}

// Restores the process-wide switch however the test ends.
struct FusedAttentionGuard {
  bool saved = fused_attention_enabled();
  ~FusedAttentionGuard() { set_fused_attention(saved); }
};

struct Step {
  double loss = 0;
  std::vector<std::vector<double>> grads;
  bool streamed = false;
  int64_t peak_bytes = 0;  // allocator peak above the start of the step
};

Step step(const ModelConfig& c, bool fused, bool training, int64_t T = 70) {
  set_fused_attention(fused);
  Generator gen(5);
  DecoderLM lm(c, gen);
  lm.to(DType::f64);
  lm.train(training);
  Generator data(9);
  auto tokens = [&] {  // uniform ids in [0, vocab)
    Tensor u = rand_uniform({2, T}, data, DType::f64, 0.0, static_cast<double>(c.vocab_size));
    std::vector<double> v = u.to_vector();
    for (double& x : v) x = std::floor(x);
    return Tensor::from_vector(v, {2, T}, DType::i64);
  };
  Tensor ids = tokens(), targets = tokens();
  Allocator& alloc = allocator_for(DeviceType::cpu);
  const int64_t start = alloc.stats().bytes_in_use;
  alloc.reset_peak();
  Tensor loss = lm.loss(ids, targets);
  backward(loss);
  Step out{loss.item(), {}, false, alloc.stats().peak_bytes_in_use - start};
  // A binary threshold passes no gradient to q_proj and k_proj: the composite leaves theirs
  // undefined, the streamed op gives zeros.
  for (const Tensor& p : lm.parameters())
    out.grads.push_back(p.grad().defined() ? p.grad().to_vector()
                                           : std::vector<double>(p.numel(), 0.0));
  auto pna = std::dynamic_pointer_cast<graph::PnaAttention>(lm.model()->layer(0)->self_attn());
  EXPECT_NE(pna, nullptr);
  if (pna) out.streamed = pna->last_forward_streamed();
  return out;
}

void expect_same_step(const Step& a, const Step& b, double tolerance) {
  EXPECT_NEAR(a.loss, b.loss, tolerance * std::abs(b.loss));
  ASSERT_EQ(a.grads.size(), b.grads.size());
  for (size_t i = 0; i < a.grads.size(); ++i) {
    ASSERT_EQ(a.grads[i].size(), b.grads[i].size());
    for (size_t j = 0; j < a.grads[i].size(); ++j)
      ASSERT_NEAR(a.grads[i][j], b.grads[i][j], tolerance * 10 * (1 + std::abs(b.grads[i][j])))
          << "parameter " << i << " element " << j;
  }
}

TEST(PnaStreaming, GivesTheCompositesLossAndGradients) {
  FusedAttentionGuard guard;
  struct Case {
    const char *adjacency, *mode, *aggregators, *scalers;
    double delta;
  };
  for (const Case& k : {
           // the benchmark's configuration (the defaults): relu, sharp softplus, sum/mean/max/var
           Case{"relu", "sharp_softplus", "sum,mean,max,var", "identity", 0.0},
           Case{"softmax", "relu", "mean,min,std", "identity,amplification,attenuation", 0.0},
           Case{"relu", "none", "sum,max,min", "identity,attenuation", 1.3},
           Case{"softmax", "sigmoid", "sum,var", "amplification", 0.0},
           Case{"relu", "binary", "mean,max", "identity", 0.0},
       }) {
    SCOPED_TRACE(fmt::format("{} {} {} {}", k.adjacency, k.mode, k.aggregators, k.scalers));
    ModelConfig c = tiny_pna();
    c.pna_adjacency = k.adjacency;
    c.pna_threshold_mode = k.mode;
    c.pna_aggregators = k.aggregators;
    c.pna_scalers = k.scalers;
    c.pna_delta = k.delta;
    if (std::string(k.adjacency) == "softmax") c.graph_threshold = 0.02;
    const Step streamed = step(c, true, true), composite = step(c, false, true);
    EXPECT_TRUE(streamed.streamed);
    EXPECT_FALSE(composite.streamed);
    expect_same_step(streamed, composite, 1e-12);
  }
}

TEST(PnaStreaming, TopkAndActiveDropoutUseTheComposite) {
  FusedAttentionGuard guard;
  ModelConfig c = tiny_pna();
  c.pna_threshold_mode = "topk";
  const Step topk = step(c, true, true);
  EXPECT_FALSE(topk.streamed);
  expect_same_step(topk, step(c, false, true), 0.0);  // the same ops: bit for bit

  c = tiny_pna();
  c.attention_dropout = 0.2;
  const Step training = step(c, true, true);
  EXPECT_FALSE(training.streamed);
  EXPECT_EQ(training.grads, step(c, false, true).grads);
  EXPECT_TRUE(step(c, true, false).streamed) << "dropout is inactive in evaluation";
}

// The composite keeps several (B, H, T, T) tensors per layer for its backward (the scores' relu,
// the threshold's input, the adjacency for the products and the extrema); the streamed op keeps
// (B, H, T, W) moments. At T = 160 with D = 8 that is the difference between a step dominated by
// the T^2 tensors and one that is not.
TEST(PnaStreaming, KeepsLessMemoryForTheBackward) {
  FusedAttentionGuard guard;
  const ModelConfig c = tiny_pna();
  const Step streamed = step(c, true, true, 160), composite = step(c, false, true, 160);
  // One (B, H, T, T) f64 tensor of this step: 2 * 2 * 160 * 160 * 8 bytes = 0.8 MB.
  const int64_t square = int64_t{2} * 2 * 160 * 160 * 8;
  EXPECT_GT(composite.peak_bytes - streamed.peak_bytes, 4 * square)
      << "streamed " << streamed.peak_bytes << " B, composite " << composite.peak_bytes << " B";
}

}  // namespace
}  // namespace gradus
