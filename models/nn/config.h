// ModelConfig: the hyper-parameters of the decoder-only language model, under the keys of Hugging
// Face's LlamaConfig (so a checkpoint's safetensors __metadata__ reads as a Llama configuration),
// plus Gradus's own keys (attention_kind). Defaults are the `small` workload of the benchmarks.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace gradus {

struct ModelConfig {
  // ---- Hugging Face LlamaConfig keys ----
  int64_t vocab_size = 256;
  int64_t hidden_size = 256;        // C, the residual stream width
  int64_t intermediate_size = 688;  // F, the SwiGLU feed-forward width
  int64_t num_hidden_layers = 4;
  int64_t num_attention_heads = 4;  // H; the head dim is hidden_size / H and must be even (RoPE)
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 128;  // the longest sequence (position_offset + T) accepted
  bool tie_word_embeddings = false;       // lm_head.weight is model.embed_tokens.weight
  double attention_dropout = 0.0;         // on the attention probabilities, while training
  // ---- Gradus keys ----
  std::string attention_kind = "std";  // a name registered with register_attention_kind

  int64_t head_dim() const { return hidden_size / num_attention_heads; }

  // Throws gradus::Error naming the key (and the value found) when a value is out of range:
  // sizes must be positive, hidden_size divisible by num_attention_heads, the head dim even,
  // rms_norm_eps and rope_theta positive and finite, attention_dropout in [0, 1), attention_kind
  // registered.
  void validate() const;

  // Every key as a string ("256", "1e-05", "true"; doubles in their shortest round-trip form):
  // the safetensors __metadata__ form.
  std::map<std::string, std::string> to_map() const;
  // Parses what to_map() wrote and validates. A missing key keeps its default; a value that does
  // not parse as the key's type is an error naming the key. Unknown keys are errors (naming the
  // closest known key) unless allow_unknown is set, for metadata that carries other entries too.
  static ModelConfig from_map(const std::map<std::string, std::string>& map,
                              bool allow_unknown = false);

  // The canonical language-model workloads of the benchmarks: "small" and "medium" (vocab, width,
  // heads, feed-forward width, layers, and max_position_embeddings = the benchmark's sequence).
  static ModelConfig preset(const std::string& name);

  friend bool operator==(const ModelConfig&, const ModelConfig&) = default;
};

}  // namespace gradus
