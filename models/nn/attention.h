// Attention for the decoder block: the AttentionKind interface, the registry that maps a kind's
// name (ModelConfig::attention_kind) to a factory, and "std", causal softmax multi-head attention.
//
// A new kind (graded, GIN, PNA, hardmax, ...) is a subclass of AttentionKind registered under a
// name, from its own source file:
//   static const AttentionKindRegistrar kGin("gin", [](const ModelConfig& c, int64_t layer,
//                                                     Generator& init) { return ...; });
// and DecoderBlock builds it by name without being touched.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/nn/config.h"
#include "models/nn/linear.h"
#include "models/nn/module.h"

namespace gradus {

// A token-mixing layer of the decoder: each position sees itself and earlier positions only.
class AttentionKind : public Module {
 public:
  // x: (B, T, C) -> (B, T, C). Row t of x is at absolute position position_offset + t (for
  // position encodings); the causal mask is over the T rows given.
  virtual Tensor forward(const Tensor& x, int64_t position_offset = 0) = 0;
};

// Builds the attention of layer `layer_index` (0-based) of a model with `config`; parameters are
// drawn from `init`. The result's parameter names become "model.layers.{i}.self_attn.<name>".
using AttentionFactory = std::function<std::shared_ptr<AttentionKind>(
    const ModelConfig& config, int64_t layer_index, Generator& init)>;

// Throws when `name` is empty or already registered.
void register_attention_kind(const std::string& name, AttentionFactory factory);
bool has_attention_kind(const std::string& name);
std::vector<std::string> attention_kinds();  // sorted
// The kind config.attention_kind; throws naming it and the registered kinds when unknown.
std::shared_ptr<AttentionKind> make_attention(const ModelConfig& config, int64_t layer_index,
                                              Generator& init);

// ---- channel maps: the one hook a kind has outside the attention ----
// A per-channel map x: (..., C) -> (..., C) that a kind may place at two sites of the decoder:
// after the token embedding (DecoderModel: h = map(embed(ids))) and before the feed-forward
// (DecoderBlock: h + mlp(map(post_attention_layernorm(h)))). Graded transformers (models/graded)
// scale those channels by their grades; every other kind has none, and the decoder is unchanged.
class ChannelMap : public Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;
  // Called once when the decoder is built, with the weights that read the map's output, each
  // (rows, C) and used as x W^T or as a lookup table: a fixed diagonal map may absorb itself into
  // them (scale their columns in place) and become the identity, the "folded" baseline of graded
  // transformers. The default absorbs nothing.
  virtual void fold_into(const std::vector<Tensor>& consumers) {}
};
enum class ChannelMapSite { embedding, mlp_input };
// Builds a kind's map for a site (layer_index: the block; -1 for the embedding), or returns null
// for none. Maps draw nothing from the initialisation generator, so a kind with maps initialises
// its other weights exactly as it would without them.
using ChannelMapFactory = std::function<std::shared_ptr<ChannelMap>(
    const ModelConfig& config, ChannelMapSite site, int64_t layer_index)>;
// The map of config.attention_kind at `site`, or null (kinds registered without a map factory).
std::shared_ptr<ChannelMap> make_channel_map(const ModelConfig& config, ChannelMapSite site,
                                             int64_t layer_index);
// Registers `name` with channel maps as well (register_attention_kind without them).
void register_attention_kind(const std::string& name, AttentionFactory factory,
                             ChannelMapFactory maps);

// Registers at static-initialisation time (one per kind, at namespace scope in the kind's file).
struct AttentionKindRegistrar {
  AttentionKindRegistrar(const std::string& name, AttentionFactory factory,
                         ChannelMapFactory maps = nullptr) {
    register_attention_kind(name, std::move(factory), std::move(maps));
  }
};

// The attention of the softmax kinds: q, k, v: (B, H, T, D) -> softmax(mask(q k^T) scale) v,
// (B, H, T, D), with dropout(p) on the probabilities while training. The fused op
// (scaled_dot_product_attention: no (B, H, T, T) probabilities kept for the backward) runs unless
// that dropout is active (it needs the probabilities) or fused attention is switched off; the
// composite (scale q, matmul, causal mask, softmax, dropout, matmul) is the readable reference.
Tensor causal_softmax_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                                double dropout, Generator& gen, bool training);
// On by default; GRADUS_FUSED_ATTENTION=0 in the environment turns it off for the process (to
// measure what the fusion does, or to compare with the reference). Thread-safe.
void set_fused_attention(bool on);
bool fused_attention_enabled();


// "std": causal multi-head softmax attention with RoPE, as Hugging Face LlamaAttention (with
// num_key_value_heads == num_attention_heads). With H heads of d_h = C / H channels:
//   q, k, v = x Wq^T, x Wk^T, x Wv^T            split into heads: (B, H, T, d_h)
//   q, k    = rope(q), rope(k)                   base rope_theta, rotate_half pairing
//   p       = softmax(mask(q k^T / sqrt(d_h)))   positions j > i get -inf before the softmax
//   p       = dropout(p)                         only while training, from rng()
//   out     = concat_heads(p v) Wo^T
// Submodules q_proj, k_proj, v_proj, o_proj (C -> C, no bias), drawn from gen in that order.
class CausalSelfAttention : public AttentionKind {
 public:
  CausalSelfAttention(int64_t hidden_size, int64_t num_heads, double rope_theta, double dropout,
                      Generator& gen);
  CausalSelfAttention(const ModelConfig& config, Generator& gen);

  Tensor forward(const Tensor& x, int64_t position_offset = 0) override;

  int64_t num_heads() const { return num_heads_; }
  int64_t head_dim() const { return head_dim_; }
  double rope_theta() const { return rope_theta_; }
  double dropout() const { return dropout_; }
  const std::shared_ptr<Linear>& q_proj() const { return q_proj_; }
  const std::shared_ptr<Linear>& k_proj() const { return k_proj_; }
  const std::shared_ptr<Linear>& v_proj() const { return v_proj_; }
  const std::shared_ptr<Linear>& o_proj() const { return o_proj_; }

 private:
  int64_t hidden_size_, num_heads_, head_dim_;
  double rope_theta_, dropout_;
  std::shared_ptr<Linear> q_proj_, k_proj_, v_proj_, o_proj_;
};

}  // namespace gradus
