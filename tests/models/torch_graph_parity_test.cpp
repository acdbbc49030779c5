// Parity of the graph-aware attention kinds "pna" and "gin" with an independent PyTorch
// implementation: tests/fixtures/torch_graph_parity.safetensors (written by
// scripts/make-torch-graph-fixtures from scripts/gradus_torch.py's decoder with
// bench/torch_graph_attention.py's PNAAttention / GINAttention, all in float64) holds, per kind,
// the initial weights under Gradus's names and layouts, a batch, the logits, the loss and every
// parameter's gradient. Gradus builds the model from the fixture's metadata, loads the weights,
// runs in f64 and must reproduce every tensor, once with the default fused paths (PNA's streaming
// pna_moments op, the fused attention, loss and SwiGLU) and once with the composites. Each
// comparison prints how much of its tolerance it used. docs/parity.md explains the tolerance.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/tape.h"
#include "core/random.h"
#include "models/checkpoint/checkpoint.h"
#include "models/graph/pna_attention.h"
#include "models/io/safetensors.h"
#include "models/nn/attention.h"
#include "models/nn/feed_forward.h"
#include "models/nn/lm.h"

namespace gradus {
namespace {

namespace fs = std::filesystem;

const fs::path kRepo = fs::path(__FILE__).parent_path().parent_path().parent_path();
const fs::path kFixture = kRepo / "tests" / "fixtures" / "torch_graph_parity.safetensors";
const std::vector<std::string> kKinds = {"pna", "gin"};

// Both sides run in float64 and compute the same functions in different orders (PyTorch: a loop
// over heads, an expanded (B, L, L, d_h) max, dense adjacencies; Gradus: batched heads, the
// streaming pna_moments op or the composites, fused or composite attention, loss and SwiGLU).
// Rounding alone separates them by about 1e-15 of a tensor's scale; any difference of semantics
// (an aggregator, the degree clamp, a feature block's position, a transposed weight) shows at
// 1e-4 or more in this model. 1e-10 of the scale lies between with room on both sides.
constexpr double kRel = 1e-10;

// Why the fixture cannot be used, or "" when it exists.
std::string fixture_missing() {
  if (fs::exists(kFixture)) return "";
  return "missing " + kFixture.string() +
         ": write it with `/usr/bin/python3 scripts/make-torch-graph-fixtures` (needs PyTorch)";
}

// One kind's part of the fixture: the tensors named "<kind>.*" and the metadata "<kind>.<key>".
struct KindFixture {
  ModelConfig config;
  std::vector<std::pair<std::string, Tensor>> weights;  // Gradus name -> initial value
  std::map<std::string, Tensor> grads;                  // Gradus name -> d loss / d parameter
  Tensor input_ids, targets, logits, loss;
};

const std::map<std::string, KindFixture>& fixtures() {
  static const std::map<std::string, KindFixture> all = [] {
    const SafetensorsFile file = load_safetensors(kFixture.string());
    std::map<std::string, KindFixture> out;
    for (const std::string& kind : kKinds) {
      const std::string prefix = kind + ".";
      auto strip = [&](const std::string& name) -> std::string {
        return name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : std::string();
      };
      std::map<std::string, std::string> keys;
      for (const auto& [key, value] : file.metadata)
        if (const std::string k = strip(key); !k.empty()) keys[k] = value;
      KindFixture f;
      f.config = ModelConfig::from_map(keys);  // unknown keys under the prefix are errors
      for (const auto& [name, t] : file.tensors) {
        const std::string rest = strip(name);
        if (rest.empty()) continue;
        if (rest.rfind("grad.", 0) == 0)
          f.grads.emplace(rest.substr(5), t);
        else if (rest == "input_ids")
          f.input_ids = t;
        else if (rest == "targets")
          f.targets = t;
        else if (rest == "logits")
          f.logits = t;
        else if (rest == "loss")
          f.loss = t;
        else
          f.weights.emplace_back(rest, t);
      }
      GRADUS_CHECK(
          f.input_ids.defined() && f.targets.defined() && f.logits.defined() && f.loss.defined(),
          "torch_graph_parity", "{}: kind '{}' lacks {}.input_ids, targets, logits or loss",
          kFixture.string(), kind, kind);
      out.emplace(kind, std::move(f));
    }
    return out;
  }();
  return all;
}

// Restores the process-wide switches however the test ends.
struct FusedPathsGuard {
  bool attention = fused_attention_enabled(), loss = fused_loss_enabled(),
       swiglu = fused_swiglu_enabled();
  ~FusedPathsGuard() {
    set_fused_attention(attention);
    set_fused_loss(loss);
    set_fused_swiglu(swiglu);
  }
};

double scale_of(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m > 0 ? m : 1.0;
}

// |got - want| <= kRel * max|want| element by element; prints max |diff|, relative to the scale,
// and the fraction of the tolerance used.
// Returns the fraction of the tolerance used.
double compare(const std::string& what, const Tensor& got, const Tensor& want) {
  EXPECT_EQ(got.shape(), want.shape()) << what;
  if (got.shape() != want.shape()) return 0;
  const std::vector<double> g = got.to_vector(), w = want.to_vector();
  const double tol = kRel * scale_of(w);
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double d = std::abs(g[i] - w[i]);
    if (!(d <= worst)) worst = d, at = i;  // NaN counts as worst
  }
  fmt::print("  {:<52} max|diff| {:9.3e}  relative {:9.3e}  of the tolerance {:8.1e}\n", what,
             worst, worst / scale_of(w), worst / tol);
  EXPECT_LE(worst, tol) << what << ": element " << at << " is " << g[at] << ", PyTorch has "
                        << w[at];
  return worst / tol;
}

std::shared_ptr<DecoderLM> fixture_model(const KindFixture& f) {
  Generator init(0);
  auto lm = std::make_shared<DecoderLM>(f.config, init);
  lm->to(DType::f64);
  load_parameters(*lm, f.weights, "fixture '" + kFixture.string() + "'");
  lm->train();  // as PyTorch ran it (no dropout in the fixture's config)
  return lm;
}

void check_against_torch(const std::string& kind, bool fused) {
  const std::string why = fixture_missing();
  ASSERT_TRUE(why.empty()) << why;
  const KindFixture& f = fixtures().at(kind);
  FusedPathsGuard guard;
  set_fused_attention(fused);
  set_fused_loss(fused);
  set_fused_swiglu(fused);

  std::shared_ptr<DecoderLM> lm = fixture_model(f);
  fmt::print(
      "{} in f64, {} paths, against PyTorch f64 (tolerance {:.0e} of each tensor's scale):\n", kind,
      fused ? "fused" : "composite", kRel);
  double most = compare("logits", lm->forward(f.input_ids), f.logits);
  Tensor loss = lm->loss(f.input_ids, f.targets);
  most = std::max(most, compare("loss", loss, f.loss));
  backward(loss);
  for (const auto& [name, p] : lm->named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    auto it = f.grads.find(name);
    ASSERT_NE(it, f.grads.end()) << "the fixture has no " << kind << ".grad." << name;
    most = std::max(most, compare("grad." + name, p.grad(), it->second));
  }
  fmt::print("  at most {:.1e} of the tolerance used\n", most);

  if (kind == "pna") {  // the path compared is the one asked for
    for (int64_t l = 0; l < f.config.num_hidden_layers; ++l) {
      auto pna = std::dynamic_pointer_cast<graph::PnaAttention>(lm->model()->layer(l)->self_attn());
      ASSERT_NE(pna, nullptr);
      EXPECT_EQ(pna->last_forward_streamed(), fused) << "layer " << l;
    }
  }
}

TEST(TorchGraphParity, FixtureCoversEveryParameter) {
  const std::string why = fixture_missing();
  ASSERT_TRUE(why.empty()) << why;
  for (const std::string& kind : kKinds) {
    SCOPED_TRACE(kind);
    const KindFixture& f = fixtures().at(kind);
    EXPECT_EQ(f.config.attention_kind, kind);
    EXPECT_EQ(f.config.attention_dropout, 0.0);
    EXPECT_EQ(f.logits.dtype(), DType::f64);
    Generator init(0);
    DecoderLM lm(f.config, init);
    const auto params = lm.named_parameters();
    EXPECT_EQ(f.weights.size(), params.size());
    EXPECT_EQ(f.grads.size(), params.size());
    for (const auto& [name, p] : params) {
      auto w = std::find_if(f.weights.begin(), f.weights.end(),
                            [&](const auto& e) { return e.first == name; });
      ASSERT_NE(w, f.weights.end()) << name;
      EXPECT_EQ(w->second.shape(), p.shape()) << name;
      ASSERT_TRUE(f.grads.count(name)) << name;
      EXPECT_EQ(f.grads.at(name).shape(), p.shape()) << name;
    }
  }
  // The options the PyTorch modules implement (docs/graph_attention.md's defaults).
  const ModelConfig& pna = fixtures().at("pna").config;
  EXPECT_EQ(pna.pna_adjacency, "relu");
  EXPECT_EQ(pna.pna_threshold_mode, "sharp_softplus");
  EXPECT_EQ(pna.pna_aggregators, "sum,mean,max,var");
  const ModelConfig& gin = fixtures().at("gin").config;
  EXPECT_TRUE(gin.gin_sharpening);
  EXPECT_EQ(gin.gin_threshold_mode, "none");
  EXPECT_EQ(gin.gin_mlp_dropout, 0.0);
}

TEST(TorchGraphParity, PnaFusedPaths) { check_against_torch("pna", true); }
TEST(TorchGraphParity, PnaCompositePaths) { check_against_torch("pna", false); }
TEST(TorchGraphParity, GinFusedPaths) { check_against_torch("gin", true); }
TEST(TorchGraphParity, GinCompositePaths) { check_against_torch("gin", false); }

}  // namespace
}  // namespace gradus
