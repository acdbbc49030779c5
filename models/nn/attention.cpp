#include "models/nn/attention.h"

#include <cmath>
#include <map>
#include <mutex>

#include "autodiff/ops/dropout.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/mask.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/rope.h"
#include "autodiff/ops/softmax.h"
#include "autodiff/ops/view.h"
#include "core/error.h"

namespace gradus {

namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, AttentionFactory> factories;
  std::map<std::string, ChannelMapFactory> maps;  // kinds with channel maps only
};

// Function-local so that registrars in any translation unit find it constructed.
Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

void register_attention_kind(const std::string& name, AttentionFactory factory) {
  register_attention_kind(name, std::move(factory), nullptr);
}

void register_attention_kind(const std::string& name, AttentionFactory factory,
                             ChannelMapFactory maps) {
  GRADUS_CHECK(!name.empty(), "register_attention_kind", "the name must not be empty");
  GRADUS_CHECK(factory != nullptr, "register_attention_kind", "kind '{}' has no factory", name);
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  GRADUS_CHECK(r.factories.count(name) == 0, "register_attention_kind",
               "kind '{}' is already registered", name);
  r.factories.emplace(name, std::move(factory));
  if (maps) r.maps.emplace(name, std::move(maps));
}

std::shared_ptr<ChannelMap> make_channel_map(const ModelConfig& config, ChannelMapSite site,
                                             int64_t layer_index) {
  ChannelMapFactory factory;
  {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    auto it = r.maps.find(config.attention_kind);
    if (it != r.maps.end()) factory = it->second;
  }
  return factory ? factory(config, site, layer_index) : nullptr;
}

bool has_attention_kind(const std::string& name) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  return r.factories.count(name) != 0;
}

std::vector<std::string> attention_kinds() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::vector<std::string> names;
  for (const auto& [name, f] : r.factories) names.push_back(name);
  return names;
}

std::shared_ptr<AttentionKind> make_attention(const ModelConfig& config, int64_t layer_index,
                                              Generator& init) {
  AttentionFactory factory;
  {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    auto it = r.factories.find(config.attention_kind);
    if (it != r.factories.end()) factory = it->second;
  }
  GRADUS_CHECK(factory != nullptr, "make_attention",
               "attention kind '{}' is not registered; registered kinds: {}", config.attention_kind,
               fmt::join(attention_kinds(), ", "));
  std::shared_ptr<AttentionKind> attn = factory(config, layer_index, init);
  GRADUS_CHECK(attn != nullptr, "make_attention", "the factory of kind '{}' returned null",
               config.attention_kind);
  return attn;
}

CausalSelfAttention::CausalSelfAttention(int64_t hidden_size, int64_t num_heads, double rope_theta,
                                         double dropout, Generator& gen)
    : hidden_size_(hidden_size),
      num_heads_(num_heads),
      head_dim_(num_heads > 0 ? hidden_size / num_heads : 0),
      rope_theta_(rope_theta),
      dropout_(dropout) {
  const char* where = "CausalSelfAttention";
  GRADUS_CHECK(hidden_size > 0 && num_heads > 0 && hidden_size % num_heads == 0, where,
               "hidden_size ({}) must be a positive multiple of num_heads ({})", hidden_size,
               num_heads);
  GRADUS_CHECK(head_dim_ % 2 == 0, where, "the head dim {} / {} = {} must be even for RoPE",
               hidden_size, num_heads, head_dim_);
  GRADUS_CHECK(dropout >= 0 && dropout < 1, where, "dropout must be in [0, 1), found {}", dropout);
  q_proj_ =
      register_module("q_proj", std::make_shared<Linear>(hidden_size, hidden_size, false, gen));
  k_proj_ =
      register_module("k_proj", std::make_shared<Linear>(hidden_size, hidden_size, false, gen));
  v_proj_ =
      register_module("v_proj", std::make_shared<Linear>(hidden_size, hidden_size, false, gen));
  o_proj_ =
      register_module("o_proj", std::make_shared<Linear>(hidden_size, hidden_size, false, gen));
}

CausalSelfAttention::CausalSelfAttention(const ModelConfig& config, Generator& gen)
    : CausalSelfAttention(config.hidden_size, config.num_attention_heads, config.rope_theta,
                          config.attention_dropout, gen) {}

Tensor CausalSelfAttention::forward(const Tensor& x, int64_t position_offset) {
  GRADUS_CHECK(x.dim() == 3 && x.size(2) == hidden_size_, "CausalSelfAttention",
               "expected x of shape (B, T, {}) but found {}", hidden_size_, x.describe());
  const int64_t B = x.size(0), T = x.size(1), H = num_heads_, D = head_dim_;
  // (B, T, C) -> (B, H, T, D): a view; rope and matmul take the strided layout as it is.
  auto heads = [&](const Tensor& t) { return transpose(reshape(t, {B, T, H, D}), 1, 2); };
  Tensor q = rope(heads(q_proj_->forward(x)), rope_theta_, position_offset);
  Tensor k = rope(heads(k_proj_->forward(x)), rope_theta_, position_offset);
  Tensor v = heads(v_proj_->forward(x));
  // Scaling q (B·H·T·D elements) instead of the scores (B·H·T·T) is the same product, cheaper
  // whenever T > D.
  q = q * (1.0 / std::sqrt(static_cast<double>(D)));
  Tensor scores = matmul(q, transpose(k, -2, -1));  // (B, H, T, T)
  Tensor p = softmax(causal_masked_fill(scores), -1);
  p = gradus::dropout(p, dropout_, *rng(), is_training());
  Tensor out = matmul(p, v);                           // (B, H, T, D)
  out = reshape(transpose(out, 1, 2), {B, T, H * D});  // (B, T, C)
  return o_proj_->forward(out);
}

namespace {
const AttentionKindRegistrar kStd("std", [](const ModelConfig& config, int64_t /*layer_index*/,
                                            Generator& init) {
  return std::make_shared<CausalSelfAttention>(config, init);
});
}  // namespace

}  // namespace gradus
