// graph::graph_report (models/graph/diagnostics.h): the learned GIN sharpening alpha per layer and
// eps per head, PNA's delta, and null for kinds without graph parameters.
#include <gtest/gtest.h>

#include "models/graph/diagnostics.h"
#include "models/graph/gin_attention.h"
#include "models/graph/pna_attention.h"

namespace gradus::graph {
namespace {

ModelConfig tiny(const std::string& kind) {
  ModelConfig c;
  c.vocab_size = 7;
  c.hidden_size = 8;
  c.intermediate_size = 12;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 2;
  c.max_position_embeddings = 8;
  c.attention_kind = kind;
  return c;
}

TEST(GraphReport, GinReportsEachLayersAlphaAndEachHeadsEps) {
  Generator gen(0);
  DecoderLM lm(tiny("gin"), gen);
  // Give every layer and head its own value, so a mix-up of layers or heads shows.
  for (size_t l = 0; l < 3; ++l) {
    auto gin = std::dynamic_pointer_cast<GinAttention>(lm.model()->layer(l)->self_attn());
    ASSERT_TRUE(gin);
    raw_copy_(gin->sharpening(), Tensor::full({}, 1.0 + 0.25 * static_cast<double>(l)));
    raw_copy_(gin->eps(), Tensor::from_vector(
                              std::vector<double>{0.1 * static_cast<double>(l), -0.5}, {2, 1, 1}));
  }
  const nlohmann::json r = graph_report(lm);
  ASSERT_TRUE(r.is_object()) << r.dump();
  EXPECT_EQ(r["kind"], "gin");
  ASSERT_EQ(r["alpha"].size(), 3u);
  ASSERT_EQ(r["eps"].size(), 3u);
  for (size_t l = 0; l < 3; ++l) {
    EXPECT_DOUBLE_EQ(r["alpha"][l].get<double>(), 1.0 + 0.25 * static_cast<double>(l));
    ASSERT_EQ(r["eps"][l].size(), 2u);
    EXPECT_NEAR(r["eps"][l][0].get<double>(), 0.1 * static_cast<double>(l), 1e-7);
    EXPECT_NEAR(r["eps"][l][1].get<double>(), -0.5, 1e-7);
  }
}

TEST(GraphReport, GinStartsAtAlphaOneAndEpsZero) {
  Generator gen(3);
  DecoderLM lm(tiny("gin"), gen);
  const nlohmann::json r = graph_report(lm);
  for (const auto& a : r["alpha"]) EXPECT_EQ(a.get<double>(), 1.0);
  for (const auto& layer : r["eps"])
    for (const auto& e : layer) EXPECT_EQ(e.get<double>(), 0.0);
}

TEST(GraphReport, GinWithoutSharpeningHasNoAlpha) {
  ModelConfig c = tiny("gin");
  c.gin_sharpening = false;
  Generator gen(0);
  DecoderLM lm(c, gen);
  const nlohmann::json r = graph_report(lm);
  EXPECT_FALSE(r.contains("alpha")) << r.dump();
  EXPECT_EQ(r["eps"].size(), 3u);
}

TEST(GraphReport, PnaReportsTheDeltaOfItsLastForward) {
  ModelConfig c = tiny("pna");
  c.pna_scalers = "identity,amplification";  // delta is used only by the degree scalers
  Generator gen(0);
  DecoderLM lm(c, gen);
  nlohmann::json r = graph_report(lm);
  EXPECT_EQ(r["kind"], "pna");
  ASSERT_EQ(r["delta"].size(), 3u);
  for (const auto& d : r["delta"]) EXPECT_EQ(d.get<double>(), 0.0);  // no forward yet
  Tensor ids =
      Tensor::from_vector({1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3}, {2, 8}, DType::i64);
  lm.forward(ids);
  r = graph_report(lm);
  for (size_t l = 0; l < 3; ++l) {
    auto pna = std::dynamic_pointer_cast<PnaAttention>(lm.model()->layer(l)->self_attn());
    EXPECT_GT(r["delta"][l].get<double>(), 0.0);
    EXPECT_EQ(r["delta"][l].get<double>(), pna->last_delta());
  }
}

TEST(GraphReport, PnaWithoutScalersReportsOnlyItsKind) {
  Generator gen(0);
  DecoderLM lm(tiny("pna"), gen);
  EXPECT_EQ(graph_report(lm), nlohmann::json({{"kind", "pna"}}));
}

TEST(GraphReport, OtherKindsReportNull) {
  Generator gen(0);
  DecoderLM lm(tiny("std"), gen);
  EXPECT_TRUE(graph_report(lm).is_null());
}

}  // namespace
}  // namespace gradus::graph
