#include "models/nn/attention.h"

#include <cmath>
#include <map>
#include <mutex>

#include "autodiff/ops/attention.h"
#include "autodiff/ops/dropout.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/mask.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/softmax.h"
#include "autodiff/ops/view.h"
#include "core/env_switch.h"
#include "core/error.h"
#include "models/nn/attention_heads.h"

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

namespace {
EnvSwitch& fused_attention_switch() {
  static EnvSwitch on("GRADUS_FUSED_ATTENTION");
  return on;
}
}  // namespace

void set_fused_attention(bool on) { fused_attention_switch().set(on); }
bool fused_attention_enabled() { return fused_attention_switch().on(); }

Tensor causal_softmax_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                                double dropout, Generator& gen, bool training) {
  const bool dropout_active = training && dropout > 0;
  if (fused_attention_enabled() && !dropout_active)
    return scaled_dot_product_attention(q, k, v, /*causal=*/true, scale);
  // Scaling q (B·H·T·D elements) instead of the scores (B·H·T·T) is the same product, cheaper
  // whenever T > D.
  Tensor scores = matmul(q * scale, transpose(k, -2, -1));  // (B, H, T, T)
  Tensor p = softmax(causal_masked_fill(scores), -1);
  p = gradus::dropout(p, dropout, gen, training);
  return matmul(p, v);  // (B, H, T, D)
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
  q_proj_ = add_projection(*this, "q_proj", hidden_size, gen);
  k_proj_ = add_projection(*this, "k_proj", hidden_size, gen);
  v_proj_ = add_projection(*this, "v_proj", hidden_size, gen);
  o_proj_ = add_projection(*this, "o_proj", hidden_size, gen);
}

CausalSelfAttention::CausalSelfAttention(const ModelConfig& config, Generator& gen)
    : CausalSelfAttention(config.hidden_size, config.num_attention_heads, config.rope_theta,
                          config.attention_dropout, gen) {}

Tensor CausalSelfAttention::forward(const Tensor& x, int64_t position_offset) {
  check_attention_input("CausalSelfAttention", x, hidden_size_);
  Tensor q = rope_heads(q_proj_->forward(x), num_heads_, rope_theta_, position_offset);
  Tensor k = rope_heads(k_proj_->forward(x), num_heads_, rope_theta_, position_offset);
  Tensor v = split_heads(v_proj_->forward(x), num_heads_);  // (B, H, T, D)
  Tensor out = causal_softmax_attention(q, k, v, 1.0 / std::sqrt(static_cast<double>(head_dim_)),
                                        dropout_, *rng(), is_training());  // (B, H, T, D)
  return o_proj_->forward(merge_heads(out));                               // (B, T, C)
}

namespace {
const AttentionKindRegistrar kStd("std", [](const ModelConfig& config, int64_t /*layer_index*/,
                                            Generator& init) {
  return std::make_shared<CausalSelfAttention>(config, init);
});
}  // namespace

}  // namespace gradus
