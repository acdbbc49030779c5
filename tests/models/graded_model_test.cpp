// Graded transformers in the decoder (models/graded, attention kinds "lgt" and "egt"): identity
// settings reproduce "std" bit for bit, the folded baseline computes the graded model's function
// at initialisation, learnable grades are named parameters, checkpoints round-trip.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "autodiff/ops/elementwise.h"
#include "autodiff/tape.h"
#include "core/random.h"
#include "models/checkpoint/checkpoint.h"
#include "models/graded/graded_attention.h"
#include "models/graded/graded_channel_map.h"
#include "models/graded/grading.h"
#include "models/graded/sequence_model.h"
#include "models/nn/lm.h"
#include "support/expect_error.h"

namespace gradus::graded {
namespace {

ModelConfig tiny(const std::string& kind) {
  ModelConfig c;
  c.vocab_size = 23;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.max_position_embeddings = 8;
  c.attention_kind = kind;
  return c;
}

Tensor ids(std::vector<float> v) {
  return raw_to_dtype(Tensor::from_vector(v, {2, 4}), DType::i64);
}
const Tensor& sample_ids() {
  static const Tensor t = ids({1, 5, 7, 22, 0, 3, 3, 9});
  return t;
}
const Tensor& sample_targets() {
  static const Tensor t = ids({5, 7, 22, 0, 3, 3, 9, 11});
  return t;
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  std::vector<float> x = a.to_float_vector(), y = b.to_float_vector();
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

TEST(GradedModel, IdentitySettingsReproduceStdBitForBit) {
  struct Setting {
    const char* kind;
    const char* q_init;
    double base;
  };
  for (Setting s : {Setting{"lgt", "identity", 2}, Setting{"egt", "identity", 2},
                    Setting{"egt", "0.5..3", 1}}) {
    ModelConfig gc = tiny(s.kind);
    gc.graded_q_init = s.q_init;
    gc.graded_base = s.base;
    gc.graded_per_head = true;
    gc.graded_values = true;
    Generator g1(7), g2(7);
    DecoderLM std_lm(tiny("std"), g1), graded_lm(gc, g2);
    EXPECT_TRUE(bit_equal(std_lm.forward(sample_ids()), graded_lm.forward(sample_ids()))) << s.kind;
    backward(std_lm.loss(sample_ids(), sample_targets()));
    backward(graded_lm.loss(sample_ids(), sample_targets()));
    auto a = std_lm.named_parameters(), b = graded_lm.named_parameters();
    ASSERT_EQ(a.size(), b.size());  // fixed grades add no parameters
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].first, b[i].first);
      EXPECT_TRUE(bit_equal(a[i].second.grad(), b[i].second.grad())) << a[i].first;
    }
  }
}

TEST(GradedModel, GradingChangesTheFunctionAndFoldingKeepsIt) {
  for (const char* kind : {"lgt", "egt"}) {
    for (int64_t power : {1, 2}) {
      ModelConfig gc = tiny(kind);
      gc.graded_q_init = std::string(kind) == "lgt" ? "0.5..2" : "0..1.5";
      gc.graded_per_head = true;
      gc.graded_score_power = power;
      gc.graded_values = power == 2;
      ModelConfig fc = gc;
      fc.graded_folded = true;
      Generator g0(3), g1(3), g2(3);
      DecoderLM std_lm(tiny("std"), g0), graded_lm(gc, g1), folded(fc, g2);
      NoGradGuard no_grad;
      std::vector<float> s = std_lm.forward(sample_ids()).to_float_vector();
      std::vector<float> g = graded_lm.forward(sample_ids()).to_float_vector();
      std::vector<float> f = folded.forward(sample_ids()).to_float_vector();
      double diff_std = 0, diff_fold = 0;
      for (size_t i = 0; i < g.size(); ++i) {
        diff_std = std::max(diff_std, std::fabs(static_cast<double>(g[i] - s[i])));
        diff_fold = std::max(diff_fold, std::fabs(static_cast<double>(g[i] - f[i])));
      }
      EXPECT_GT(diff_std, 1e-2) << kind;   // grading changes the function
      EXPECT_LT(diff_fold, 1e-4) << kind;  // folding reproduces it (up to rounding)
      // The folded baseline is an ungraded model: std's parameters, no grading left.
      EXPECT_EQ(folded.num_parameters(), std_lm.num_parameters());
      EXPECT_TRUE(find_gradings(folded).empty());
      EXPECT_FALSE(find_gradings(graded_lm).empty());
    }
  }
}

TEST(GradedModel, LearnableGradesAreNamedParametersAtEverySite) {
  ModelConfig c = tiny("egt");
  c.graded_learnable = true;
  c.graded_per_head = true;
  c.graded_learn_base = true;
  c.graded_q_init = "0.1..1";
  Generator gen(0);
  DecoderLM lm(c, gen);
  std::vector<std::string> names;
  for (const auto& [n, p] : lm.named_parameters())
    if (n.find("grading") != std::string::npos) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{
                       "model.layers.0.self_attn.grading.theta",
                       "model.layers.0.self_attn.grading.rho",
                       "model.layers.0.mlp_input_map.grading.theta",
                       "model.layers.0.mlp_input_map.grading.rho",
                       "model.layers.1.self_attn.grading.theta",
                       "model.layers.1.self_attn.grading.rho",
                       "model.layers.1.mlp_input_map.grading.theta",
                       "model.layers.1.mlp_input_map.grading.rho",
                       "model.embed_map.grading.theta",
                       "model.embed_map.grading.rho",
                   }));
  EXPECT_EQ(lm.parameter("model.layers.0.self_attn.grading.theta").shape(), (Shape{2, 8}));
  EXPECT_EQ(grade_parameters(lm).size(), names.size());
  // Every grade parameter receives a gradient.
  backward(lm.loss(sample_ids(), sample_targets()));
  for (const Tensor& p : grade_parameters(lm)) EXPECT_TRUE(p.grad().defined());
  // Sites can be switched off.
  c.graded_embedding = c.graded_ffn = false;
  Generator gen2(0);
  DecoderLM only_attention(c, gen2);
  EXPECT_EQ(grade_parameters(only_attention).size(), 4u);
}

TEST(GradedModel, CheckpointRoundTrip) {
  ModelConfig c = tiny("lgt");
  c.graded_learnable = true;
  c.graded_q_init = "0.5..2";
  Generator gen(4);
  DecoderLM lm(c, gen);
  {
    NoGradGuard no_grad;  // move the grades away from their initial values
    Tensor th = lm.parameter("model.layers.1.self_attn.grading.theta");
    raw_copy_(th, th * 1.5);
  }
  const std::string path = (std::filesystem::temp_directory_path() /
                            fmt::format("gradus_graded_{}.safetensors", ::getpid()))
                               .string();
  save_model(path, lm);
  auto loaded = load_model(path);
  std::filesystem::remove(path);
  EXPECT_EQ(loaded->config(), c);
  lm.eval();
  NoGradGuard no_grad;
  EXPECT_TRUE(bit_equal(lm.forward(sample_ids()), loaded->forward(sample_ids())));
}

TEST(GradedModel, ConfigErrorsNameTheKey) {
  ModelConfig c = tiny("lgt");
  c.graded_learn_base = true;
  Generator gen(0);
  testing::expect_error([&] { DecoderLM lm(c, gen); },
                        {"attention kind \"lgt\"", "model.graded_learn_base"});
  ModelConfig tied = tiny("egt");
  tied.graded_q_init = "0..1";
  tied.graded_folded = tied.tie_word_embeddings = true;
  testing::expect_error([&] { DecoderLM lm(tied, gen); }, {"graded_folded", "tie_word_embeddings"});
  ModelConfig norm = tiny("egt");
  norm.graded_norm = "l2";
  testing::expect_error([&] { norm.validate(); }, {"graded_norm", "\"l2\""});
  EXPECT_NO_THROW(ModelConfig::from_map(tiny("egt").to_map()));
}

TEST(GradedModel, SequenceModelFoldsIntoItsInputProjection) {
  ModelConfig c = tiny("egt");
  c.graded_q_init = "0..2";
  ModelConfig fc = c;
  fc.graded_folded = true;
  Generator g1(5), g2(5);
  SequenceModel graded_net(c, 3, 2, g1), folded(fc, 3, 2, g2);
  Generator data(9);
  Tensor x = rand_normal({2, 5, 3}, data);
  NoGradGuard no_grad;
  std::vector<float> a = graded_net.forward(x).to_float_vector(),
                     b = folded.forward(x).to_float_vector();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4);
  EXPECT_EQ(graded_net.forward(x).shape(), (Shape{2, 5, 2}));
}

}  // namespace
}  // namespace gradus::graded
