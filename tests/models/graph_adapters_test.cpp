// Adapters on a frozen decoder (models/graph): the adapted forward without adapters is the base's,
// bit for bit; LoRA starts as the identity update, counts its parameters and matches a budget;
// Sparse-GIN's graph modes (intended, as released, identity, sigmoid), its gates, fixed lambda,
// message passing (or none), gradchecks, and both adapters training with the base frozen.
#include <cmath>
#include <string>

#include "autodiff/ops/reduce.h"
#include "models/graph/adapted_lm.h"
#include "models/optim/adam.h"
#include "support/expect_error.h"
#include "support/gradcheck_util.h"

namespace gradus::graph {
namespace {

using testing::expect_error;
using testing::randn_leaf;

ModelConfig tiny() {
  ModelConfig c;
  c.vocab_size = 11;
  c.hidden_size = 8;
  c.intermediate_size = 12;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 2;
  c.max_position_embeddings = 8;
  return c;
}

Tensor ids_of(std::vector<double> v, int64_t B, int64_t T) {
  return Tensor::from_vector(v, {B, T}, DType::i64);
}

Tensor some_ids() { return ids_of({1, 4, 2, 7, 3, 9, 0, 5, 6, 2, 8, 1, 10, 3, 4, 2}, 2, 8); }

std::shared_ptr<DecoderLM> base_model(uint64_t seed = 1) {
  Generator gen(seed);
  return std::make_shared<DecoderLM>(tiny(), gen);
}

TEST(AdaptedLM, WithoutAdaptersIsTheBaseBitForBit) {
  auto base = base_model();
  Generator gen(2);
  AdaptedLM a(base, {}, gen);
  EXPECT_EQ(a.num_parameters(), 0);
  EXPECT_EQ(a.forward(some_ids()).to_vector(), base->forward(some_ids()).to_vector());
}

TEST(Lora, StartsAsTheBaseAndCountsItsParameters) {
  auto base = base_model();
  Generator gen(3);
  LoraOptions o;
  o.rank = 2;
  o.targets = {"q_proj", "v_proj", "down_proj", "lm_head"};
  AdaptedLM a(base, {.lora = o}, gen);
  // B = 0: the update is exactly zero at the start.
  EXPECT_EQ(a.forward(some_ids()).to_vector(), base->forward(some_ids()).to_vector());
  const ModelConfig c = tiny();
  // q, v: r (C + C); down: r (F + C); lm_head: r (C + V).
  const int64_t want = 3 * 2 * (8 + 8 + 8 + 8 + 12 + 8) + 2 * (8 + 11);
  EXPECT_EQ(a.num_parameters(), want);
  EXPECT_EQ(lora_parameter_count(c, o.targets, 2), want);
  for (const Tensor& p : base->parameters()) EXPECT_FALSE(p.requires_grad());
  EXPECT_EQ(a.parameter("lora.0.lora_A").shape(), (Shape{2, 8}));
  EXPECT_EQ(a.parameter("lora.0.lora_B").shape(), (Shape{8, 2}));
  expect_error(
      [&] {
        check_lora_targets({"q_proj", "qkv"});
      },
      {"LoRA", "target \"qkv\"", "q_proj, k_proj"});
}

TEST(Lora, RankMatchingPicksTheClosestCount) {
  const ModelConfig c = tiny();
  const std::vector<std::string> all = LoraOptions().targets;
  const int64_t per_rank = lora_parameter_count(c, all, 1);  // 3 layers x (4 x 16 + 3 x 20) = 372
  EXPECT_EQ(per_rank, 372);
  EXPECT_EQ(lora_rank_matching(c, all, 372 * 5), 5);
  EXPECT_EQ(lora_rank_matching(c, all, 372 * 5 + 185), 5);
  EXPECT_EQ(lora_rank_matching(c, all, 372 * 5 + 187), 6);
  EXPECT_EQ(lora_rank_matching(c, all, 10), 1);
}

TEST(SparseGin, GatesStartLinearFromZeroAndCountParameters) {
  auto base = base_model();
  Generator gen(4);
  SparseGinOptions o;
  o.rank = 3;
  AdaptedLM a(base, {.sparse_gin = o}, gen);
  EXPECT_EQ(a.gates(), (std::vector<double>{0.0, 0.25, 0.5}));
  EXPECT_EQ(a.num_parameters(), 3 * sparse_gin_layer_parameters(8, o));
  // C r + r + 1 + 2 (r^2 + r) + 2 + r C + C + C + 1 at C = 8, r = 3.
  EXPECT_EQ(sparse_gin_layer_parameters(8, o), 24 + 3 + 1 + 24 + 2 + 24 + 8 + 8 + 1);
  o.trainable_gate = false;
  Generator gen2(4);
  AdaptedLM fixed(base, {.sparse_gin = o}, gen2);
  EXPECT_EQ(fixed.num_parameters(), 3 * (sparse_gin_layer_parameters(8, o)));
  EXPECT_EQ(fixed.num_parameters() + 3, a.num_parameters());
  EXPECT_EQ(fixed.gates(), (std::vector<double>{0.0, 0.25, 0.5}));
  EXPECT_NE(a.parameter_report().find("Sparse-GIN"), std::string::npos);
}

// The graph modes on attention probabilities of a real (random) model.
TEST(SparseGin, GraphModes) {
  Generator gen(5);
  Tensor logits = rand_normal({2, 2, 6, 6}, gen, DType::f64, 0.0, 2.0);
  std::vector<double> v = logits.to_vector();
  for (int64_t r = 0; r < 24; ++r)
    for (int64_t j = 0; j < 6; ++j)
      if (j > r % 6) v[r * 6 + j] = -INFINITY;
  std::vector<double> p(v.size());
  for (int64_t r = 0; r < 24; ++r) {
    double z = 0;
    for (int64_t j = 0; j < 6; ++j) z += std::exp(v[r * 6 + j]);
    for (int64_t j = 0; j < 6; ++j) p[r * 6 + j] = std::exp(v[r * 6 + j]) / z;
  }
  Tensor probs = Tensor::from_vector(p, {2, 2, 6, 6}, DType::f64);
  auto edges = [](const SparseAdjacency& a) {
    std::vector<std::pair<int64_t, int64_t>> out;
    const std::vector<double> rp = a.graph.row_ptr.to_vector(), col = a.graph.col.to_vector();
    for (int64_t i = 0; i < a.graph.rows; ++i)
      for (auto e = static_cast<int64_t>(rp[i]); e < static_cast<int64_t>(rp[i + 1]); ++e)
        out.emplace_back(i, static_cast<int64_t>(col[e]));
    return out;
  };
  SparseGinOptions o;
  SparseAdjacency intended = build_sparse_adjacency(probs, o);
  const std::vector<double> w = intended.weights.to_vector();
  size_t e = 0;
  int64_t off_diagonal = 0;
  for (auto [i, j] : edges(intended)) {
    const int64_t b = i / 6, ii = i % 6, jj = j - b * 6;
    ASSERT_TRUE(jj >= 0 && jj <= ii) << "edge " << i << " <- " << j;  // causal, same sequence
    const double a =
        std::min(1.0, p[((b * 2 + 0) * 6 + ii) * 6 + jj] + p[((b * 2 + 1) * 6 + ii) * 6 + jj]);
    EXPECT_GT(a, 0.2);
    EXPECT_NEAR(w[e++], a, 1e-15);
    off_diagonal += ii != jj;
  }
  EXPECT_GT(off_diagonal, 0);  // messages pass between tokens
  EXPECT_GT(intended.density, 0.0);
  EXPECT_LE(intended.density, 1.0);

  o.graph = "as_released";
  for (auto [i, j] : edges(build_sparse_adjacency(probs, o))) EXPECT_EQ(i, j);
  o.graph = "identity";
  SparseAdjacency id = build_sparse_adjacency(probs, o);
  EXPECT_EQ(id.graph.nnz(), 12);
  for (auto [i, j] : edges(id)) EXPECT_EQ(i, j);
  EXPECT_EQ(id.weights.to_vector(), std::vector<double>(12, 1.0));
  o.graph = "intended";
  o.adjacency = "sigmoid";
  SparseAdjacency sig = build_sparse_adjacency(probs, o);
  for (double x : sig.weights.to_vector()) EXPECT_GT(x, 0.6);
  // Padding: the second sequence has 3 tokens.
  o.adjacency = "threshold";
  SparseAdjacency padded =
      build_sparse_adjacency(probs, o, Tensor::from_vector({6, 3}, {2}, DType::i64));
  for (auto [i, j] : edges(padded))
    if (i >= 6) {
      EXPECT_TRUE(i % 6 < 3 && j % 6 < 3);
    }
  o.graph = "full";
  expect_error([&] { o.validate(); }, {"graph must be", "\"full\""});
}

// With the intended graph, a token's update depends on earlier tokens; as released (self-loops
// only) it depends on the token alone.
TEST(SparseGin, MessagesPassOnlyWithTheIntendedGraph) {
  Tensor probs = Tensor::full({1, 1, 4, 4}, 0.0, DType::f64);
  std::vector<double> p(16, 0.0);
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j <= i; ++j) p[i * 4 + j] = 1.0 / static_cast<double>(i + 1);
  probs = Tensor::from_vector(p, {1, 1, 4, 4}, DType::f64);
  for (const char* mode : {"intended", "as_released", "identity"}) {
    SCOPED_TRACE(mode);
    SparseGinOptions o;
    o.rank = 3;
    o.graph = mode;
    o.threshold = 0.2;
    Generator gen(6);
    SparseGinLayer layer(4, 2, 3, o, gen);
    layer.to(DType::f64);
    layer.eval();
    SparseAdjacency adj = build_sparse_adjacency(probs, o);
    Generator data(7);
    Tensor h = rand_normal({1, 4, 4}, data, DType::f64);
    Tensor h2 = raw_clone(h);
    raw_copy_(raw_slice(h2, 1, 0, 1), rand_normal({1, 1, 4}, data, DType::f64));  // token 0
    const std::vector<double> y = layer.forward(h, adj).to_vector(),
                              y2 = layer.forward(h2, adj).to_vector();
    bool later_changed = false;
    for (size_t i = 4; i < 16; ++i) later_changed = later_changed || y[i] != y2[i];
    EXPECT_EQ(later_changed, std::string(mode) == "intended");
  }
}

TEST(SparseGin, GradcheckLayerAndAdjacencyWeights) {
  SparseGinOptions o;
  o.rank = 3;
  o.threshold = 0.1;
  Generator gen(8);
  SparseGinLayer layer(4, 1, 3, o, gen);
  layer.to(DType::f64);
  layer.eval();
  Generator g2(9);
  for (const Tensor& t : layer.parameters())
    raw_copy_(t, rand_normal(t.shape(), g2, DType::f64, t.numel() == 1 ? 0.4 : 0.0, 0.5));
  Tensor logits = rand_normal({2, 2, 4, 4}, g2, DType::f64);
  std::vector<double> v = logits.to_vector();
  for (int64_t r = 0; r < 16; ++r) {
    double z = 0;
    for (int64_t j = 0; j <= r % 4; ++j) z += std::exp(v[r * 4 + j]);
    for (int64_t j = 0; j < 4; ++j) v[r * 4 + j] = j <= r % 4 ? std::exp(v[r * 4 + j]) / z : 0.0;
  }
  Tensor probs = Tensor::from_vector(v, {2, 2, 4, 4}, DType::f64);
  probs.set_requires_grad(true);
  std::vector<Tensor> inputs = {randn_leaf({2, 4, 4}, 10), probs};
  for (const Tensor& t : layer.parameters()) inputs.push_back(t);
  EXPECT_GRADCHECK(
      [&](const std::vector<Tensor>& in) {
        return layer.forward(in[0], build_sparse_adjacency(in[1], o));
      },
      inputs);
}

// Fine-tuning on a batch: both adapters lower the loss; the base's weights do not move.
TEST(AdaptedLM, AdaptersTrainAndTheBaseStaysFrozen) {
  for (const char* which : {"lora", "sparse_gin"}) {
    SCOPED_TRACE(which);
    auto base = base_model(11);
    const std::vector<double> before = base->parameters()[3].to_vector();
    Generator gen(12);
    AdapterOptions o;
    if (std::string(which) == "lora") {
      o.lora = LoraOptions{.rank = 4, .alpha = 8, .dropout = 0.0};
    } else {
      o.sparse_gin = SparseGinOptions{.rank = 8, .dropout = 0.0};
    }
    AdaptedLM a(base, o, gen);
    AdamW opt(a.parameters(), 2e-2, 0.0);
    Tensor ids = some_ids();
    Tensor targets = ids_of({4, 2, 7, 3, 9, 0, 5, 6, 2, 8, 1, 10, 3, 4, 2, 1}, 2, 8);
    double first = 0, last = 0;
    for (int step = 0; step < 30; ++step) {
      opt.zero_grad();
      Tensor loss = a.loss(ids, targets);
      backward(loss);
      opt.step();
      (step == 0 ? first : last) = loss.item();
    }
    EXPECT_LT(last, 0.7 * first) << "first " << first << " last " << last;
    EXPECT_EQ(base->parameters()[3].to_vector(), before);
    for (const Tensor& p : base->parameters()) EXPECT_FALSE(p.grad().defined());
  }
}

}  // namespace
}  // namespace gradus::graph
