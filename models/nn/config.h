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
  // ---- Gradus keys of the graded kinds "lgt" and "egt" (models/graded, docs/graded.md); other
  // kinds ignore them ----
  bool graded_learnable = false;           // grades are parameters (else fixed at graded_q_init)
  bool graded_per_head = false;            // attention: a grade vector per head (else per layer)
  std::string graded_q_init = "identity";  // "identity", "A" (every grade A), "A..B" (a ramp)
  double graded_q_min = 1e-3;              // grades are clamped to [q_min, q_max]
  double graded_q_max = 8.0;
  double graded_base = 2.0;                // EGT's lambda (>= 1): s_i = lambda^q_i
  bool graded_learn_base = false;          // egt: lambda = 1 + softplus(rho) is a parameter
  bool graded_monotone = false;            // ordering prior: q_i = q_min + sum_{j<=i} softplus(d_j)
  std::string graded_norm = "none";        // "none" | "rms": s / sqrt(mean s^2)
  int64_t graded_score_power = 2;          // 2: (Q Phi)(K Phi)^T; 1: (Q Phi) K^T
  bool graded_values = false;              // V Phi as well
  bool graded_embedding = true;            // X0 = E[t] Phi_emb
  bool graded_ffn = true;                  // mlp(Phi_in Norm(X))
  bool graded_folded = false;  // the initial Phi absorbed into the weights; no grading at run time
  // ---- Gradus keys of the graph-aware kinds "gin" and "pna" (models/graph,
  // docs/graph_attention.md); other kinds ignore them ----
  double graph_mlp_multiplier = 0.5;  // gamma: the per-head MLP's hidden width floor(gamma d_h)
  double graph_temperature = 1.0;     // T: softmax adjacencies use softmax(scores / T)
  double graph_threshold = 0.2;       // tau of the threshold modes
  double graph_beta = 10.0;           // beta of sharp_softplus and sigmoid
  double graph_topk_fraction = 0.1;   // topk keeps max(1, floor(fraction L)) entries per row
  bool gin_sharpening = true;         // a learnable alpha per layer: softmax(alpha scores)
  std::string gin_self_term = "eps";  // "eps" (code): eps V + A V; "1+eps" (paper)
  bool gin_o_proj = false;            // an output projection after the heads
  std::string gin_threshold_mode = "none";  // none|relu|sharp_softplus|sigmoid|binary|topk
  double gin_mlp_dropout = 0.1;             // dropout after the per-head MLP's first linear
  std::string pna_adjacency = "relu";       // "relu": relu(scores); "softmax": softmax(scores / T)
  std::string pna_threshold_mode = "sharp_softplus";  // as gin_threshold_mode
  std::string pna_aggregators = "sum,mean,max,var";   // of sum, mean, max, min, var, std
  std::string pna_scalers = "identity";  // of identity, amplification, attenuation
  double pna_delta = 0.0;  // delta of the degree scalers; 0: the batch's mean log(deg + 1)

  int64_t head_dim() const { return hidden_size / num_attention_heads; }

  // Throws gradus::Error naming the key (and the value found) when a value is out of range:
  // sizes must be positive, hidden_size divisible by num_attention_heads, the head dim even,
  // rms_norm_eps and rope_theta positive and finite, attention_dropout in [0, 1), attention_kind
  // registered; the graded_* and graph keys within their ranges and choices.
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

// graded_q_init parsed: "identity" (the kind's identity grades: 1 for lgt, 0 for egt), "A" (every
// grade A) or "A..B" (channel i of n starts at A + (B - A) i / (n - 1)). Throws gradus::Error
// naming graded_q_init and the text otherwise.
struct GradeInit {
  bool identity = true;
  double start = 0.0, end = 0.0;
  double at(int64_t i, int64_t n) const {
    return n <= 1 ? start : start + (end - start) * static_cast<double>(i) / static_cast<double>(n - 1);
  }
};
GradeInit parse_grade_init(const std::string& text);

}  // namespace gradus
