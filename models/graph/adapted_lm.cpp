#include "models/graph/adapted_lm.h"

#include <algorithm>
#include <cmath>

#include "autodiff/ops/cross_entropy.h"
#include "autodiff/ops/dropout.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/mask.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/rope.h"
#include "autodiff/ops/softmax.h"
#include "autodiff/ops/swiglu.h"
#include "autodiff/ops/view.h"
#include "core/error.h"
#include "models/nn/feed_forward.h"

namespace gradus::graph {

namespace {

std::string thousands(int64_t n) {
  std::string s = std::to_string(n), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

const std::vector<std::string> kLayerLinears = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                "gate_proj", "up_proj", "down_proj"};

std::shared_ptr<Linear> base_linear(const DecoderBlock& block, const std::string& name) {
  auto attn = std::dynamic_pointer_cast<CausalSelfAttention>(block.self_attn());
  if (name == "q_proj") return attn->q_proj();
  if (name == "k_proj") return attn->k_proj();
  if (name == "v_proj") return attn->v_proj();
  if (name == "o_proj") return attn->o_proj();
  if (name == "gate_proj") return block.mlp()->gate_proj();
  if (name == "up_proj") return block.mlp()->up_proj();
  return block.mlp()->down_proj();
}

}  // namespace

AdaptedLM::AdaptedLM(std::shared_ptr<DecoderLM> base, const AdapterOptions& options, Generator& gen)
    : base_(std::move(base)), options_(options) {
  constexpr const char* kWhere = "AdaptedLM";
  GRADUS_CHECK(base_ != nullptr, kWhere, "the base model is null");
  const ModelConfig& c = base_->config();
  GRADUS_CHECK(c.attention_kind == "std", kWhere,
               "adapters need a base with \"std\" attention (its probabilities and "
               "projections), found attention_kind \"{}\"",
               c.attention_kind);
  GRADUS_CHECK(base_->model()->embed_map() == nullptr, kWhere,
               "the base has a channel map; adapters support plain decoders only");
  base_->set_requires_grad(false);
  const int64_t L = c.num_hidden_layers;
  const DType dt = base_->model()->embed_tokens()->weight().dtype();
  if (options_.lora) {
    const LoraOptions& o = *options_.lora;
    check_lora_targets(o.targets);
    auto wants = [&](const std::string& n) {
      return std::find(o.targets.begin(), o.targets.end(), n) != o.targets.end();
    };
    auto lora_list = register_module("lora", std::make_shared<ModuleList>());
    for (int64_t l = 0; l < L; ++l)
      for (const std::string& n : kLayerLinears) {
        if (!wants(n)) continue;
        auto m = std::make_shared<LoraLinear>(base_linear(*base_->model()->layer(l), n), o.rank,
                                              o.alpha, o.dropout, gen);
        lora_list->push_back(m);
        lora_[fmt::format("layers.{}.{}", l, n)] = m;
      }
    if (wants("lm_head")) {
      auto m = std::make_shared<LoraLinear>(base_->lm_head(), o.rank, o.alpha, o.dropout, gen);
      lora_list->push_back(m);
      lora_["lm_head"] = m;
    }
  }
  if (options_.sparse_gin) {
    auto gin_list = register_module("sparse_gin", std::make_shared<ModuleList>());
    for (int64_t l = 0; l < L; ++l)
      gin_.push_back(gin_list->push_back(
          std::make_shared<SparseGinLayer>(c.hidden_size, l, L, *options_.sparse_gin, gen)));
  }
  if (dt != DType::f32) to(dt);
  set_rng(std::make_shared<Generator>(gen.seed, (uint64_t{1} << 62) + (uint64_t{1} << 61)));
}

Tensor AdaptedLM::linear(int64_t layer, const std::string& name, const Tensor& x) const {
  auto it = lora_.find(fmt::format("layers.{}.{}", layer, name));
  if (it != lora_.end()) return it->second->forward(x);
  return base_linear(*base_->model()->layer(layer), name)->forward(x);
}

Tensor AdaptedLM::forward(const Tensor& ids, const Tensor& lengths) {
  const ModelConfig& c = base_->config();
  GRADUS_CHECK(ids.defined() && ids.dim() == 2 && ids.dtype() == DType::i64, "AdaptedLM",
               "expected ids of shape (B, T) and dtype i64 but found {}",
               ids.defined() ? ids.describe() : std::string("undefined"));
  GRADUS_CHECK(ids.size(1) <= c.max_position_embeddings, "AdaptedLM",
               "{} tokens exceed max_position_embeddings ({})", ids.size(1),
               c.max_position_embeddings);
  const int64_t B = ids.size(0), T = ids.size(1), H = c.num_attention_heads, D = c.head_dim();
  densities_.clear();
  Tensor h = base_->model()->embed_tokens()->forward(ids);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const DecoderBlock& block = *base_->model()->layer(l);
    auto attn = std::dynamic_pointer_cast<CausalSelfAttention>(block.self_attn());
    // CausalSelfAttention::forward, op for op; Sparse-GIN keeps the probabilities p for its graph
    // (the composite), without it the attention is the same call as the base model's.
    Tensor x = block.input_layernorm()->forward(h);
    auto heads = [&](const Tensor& t) { return transpose(reshape(t, {B, T, H, D}), 1, 2); };
    Tensor q = rope(heads(linear(l, "q_proj", x)), c.rope_theta, 0);
    Tensor k = rope(heads(linear(l, "k_proj", x)), c.rope_theta, 0);
    Tensor v = heads(linear(l, "v_proj", x));
    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    Tensor p, attended;  // p: (B, H, T, T) with Sparse-GIN only; attended: (B, H, T, D)
    if (gin_.empty()) {
      attended =
          causal_softmax_attention(q, k, v, scale, attn->dropout(), *attn->rng(), is_training());
    } else {
      p = softmax(causal_masked_fill(matmul(q * scale, transpose(k, -2, -1))), -1);
      attended = matmul(gradus::dropout(p, attn->dropout(), *attn->rng(), is_training()), v);
    }
    Tensor out = reshape(transpose(attended, 1, 2), {B, T, H * D});
    h = h + linear(l, "o_proj", out);
    if (!gin_.empty()) {
      SparseAdjacency adj = build_sparse_adjacency(p, *options_.sparse_gin, lengths);
      densities_.push_back(adj.density);
      h = h + gin_[static_cast<size_t>(l)]->forward(h, adj);
    }
    Tensor y = block.post_attention_layernorm()->forward(h);
    Tensor gate = linear(l, "gate_proj", y), up = linear(l, "up_proj", y);  // as SwiGLU::forward
    Tensor mlp =
        linear(l, "down_proj", fused_swiglu_enabled() ? swiglu(gate, up) : silu(gate) * up);
    h = h + mlp;
  }
  h = base_->model()->norm()->forward(h);
  auto head = lora_.find("lm_head");
  return head != lora_.end() ? head->second->forward(h) : base_->lm_head()->forward(h);
}

Tensor AdaptedLM::loss(const Tensor& ids, const Tensor& targets) {
  return cross_entropy(forward(ids), targets);
}

std::vector<double> AdaptedLM::gates() const {
  std::vector<double> out;
  for (const auto& g : gin_) out.push_back(g->gate().item());
  return out;
}

std::string AdaptedLM::parameter_report() const {
  int64_t lora = 0, gin = 0;
  for (const auto& [name, m] : lora_) lora += m->num_parameters();
  for (const auto& g : gin_) gin += g->num_parameters();
  const int64_t trainable = num_parameters(), frozen = base_->num_parameters();
  return fmt::format(
      "trainable {} of {} ({:.3f}%): LoRA {}, Sparse-GIN {}; frozen base {}", thousands(trainable),
      thousands(trainable + frozen),
      100.0 * static_cast<double>(trainable) / static_cast<double>(trainable + frozen),
      thousands(lora), thousands(gin), thousands(frozen));
}

}  // namespace gradus::graph
