#include "models/nn/config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <vector>

#include "core/error.h"
#include "core/text.h"
#include "models/nn/attention.h"

namespace gradus {

namespace {

constexpr const char* kWhere = "ModelConfig";

int64_t parse_int(const std::string& key, const std::string& text) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  GRADUS_CHECK(ec == std::errc() && end == text.data() + text.size() && !text.empty(), kWhere,
               "{} must be an integer, found '{}'", key, text);
  return v;
}

double parse_double(const std::string& key, const std::string& text) {
  char* end = nullptr;
  double v = text.empty() ? 0.0 : std::strtod(text.c_str(), &end);
  GRADUS_CHECK(!text.empty() && end == text.c_str() + text.size(), kWhere,
               "{} must be a number, found '{}'", key, text);
  return v;
}

bool parse_bool(const std::string& key, const std::string& text) {
  GRADUS_CHECK(text == "true" || text == "false", kWhere, "{} must be true or false, found '{}'",
               key, text);
  return text == "true";
}

// One entry per key: how to write it and how to read it.
struct Field {
  const char* key;
  std::function<std::string(const ModelConfig&)> write;
  std::function<void(ModelConfig&, const std::string&)> read;
};

#define GRADUS_INT_FIELD(name)                                                                    \
  Field {                                                                                         \
#name, [](const ModelConfig&                                                                  \
                  c) { return std::to_string(c.name); },                                          \
                                                      [](ModelConfig & c,                         \
                                                         const std::string&                       \
                                                             s) { c.name = parse_int(#name, s); } \
  }
#define GRADUS_DOUBLE_FIELD(name)                                                                    \
  Field {                                                                                            \
#name,                                                                                           \
        [](const ModelConfig&                                                                        \
               c) { return fmt::format("{}", c.name); },                                             \
                                                      [](ModelConfig & c,                            \
                                                         const std::string&                          \
                                                             s) { c.name = parse_double(#name, s); } \
  }

// Fields of the later keys, from a member pointer.
Field bool_field(const char* key, bool ModelConfig::*m) {
  return Field{key, [m](const ModelConfig& c) { return std::string(c.*m ? "true" : "false"); },
               [key, m](ModelConfig& c, const std::string& s) { c.*m = parse_bool(key, s); }};
}
Field int_field(const char* key, int64_t ModelConfig::*m) {
  return Field{key, [m](const ModelConfig& c) { return std::to_string(c.*m); },
               [key, m](ModelConfig& c, const std::string& s) { c.*m = parse_int(key, s); }};
}
Field double_field(const char* key, double ModelConfig::*m) {
  return Field{key, [m](const ModelConfig& c) { return fmt::format("{}", c.*m); },
               [key, m](ModelConfig& c, const std::string& s) { c.*m = parse_double(key, s); }};
}
Field string_field(const char* key, std::string ModelConfig::*m) {
  return Field{key, [m](const ModelConfig& c) { return c.*m; },
               [m](ModelConfig& c, const std::string& s) { c.*m = s; }};
}

const std::vector<Field>& fields() {
  static const std::vector<Field> kFields = {
      GRADUS_INT_FIELD(vocab_size),
      GRADUS_INT_FIELD(hidden_size),
      GRADUS_INT_FIELD(intermediate_size),
      GRADUS_INT_FIELD(num_hidden_layers),
      GRADUS_INT_FIELD(num_attention_heads),
      GRADUS_DOUBLE_FIELD(rms_norm_eps),
      GRADUS_DOUBLE_FIELD(rope_theta),
      GRADUS_INT_FIELD(max_position_embeddings),
      Field{"tie_word_embeddings",
            [](const ModelConfig& c) {
              return std::string(c.tie_word_embeddings ? "true" : "false");
            },
            [](ModelConfig& c, const std::string& s) {
              c.tie_word_embeddings = parse_bool("tie_word_embeddings", s);
            }},
      GRADUS_DOUBLE_FIELD(attention_dropout),
      Field{"attention_kind", [](const ModelConfig& c) { return c.attention_kind; },
            [](ModelConfig& c, const std::string& s) { c.attention_kind = s; }},
      bool_field("graded_learnable", &ModelConfig::graded_learnable),
      bool_field("graded_per_head", &ModelConfig::graded_per_head),
      string_field("graded_q_init", &ModelConfig::graded_q_init),
      double_field("graded_q_min", &ModelConfig::graded_q_min),
      double_field("graded_q_max", &ModelConfig::graded_q_max),
      double_field("graded_base", &ModelConfig::graded_base),
      bool_field("graded_learn_base", &ModelConfig::graded_learn_base),
      bool_field("graded_monotone", &ModelConfig::graded_monotone),
      string_field("graded_norm", &ModelConfig::graded_norm),
      int_field("graded_score_power", &ModelConfig::graded_score_power),
      bool_field("graded_values", &ModelConfig::graded_values),
      bool_field("graded_embedding", &ModelConfig::graded_embedding),
      bool_field("graded_ffn", &ModelConfig::graded_ffn),
      bool_field("graded_folded", &ModelConfig::graded_folded),
      double_field("graph_mlp_multiplier", &ModelConfig::graph_mlp_multiplier),
      double_field("graph_temperature", &ModelConfig::graph_temperature),
      double_field("graph_threshold", &ModelConfig::graph_threshold),
      double_field("graph_beta", &ModelConfig::graph_beta),
      double_field("graph_topk_fraction", &ModelConfig::graph_topk_fraction),
      bool_field("gin_sharpening", &ModelConfig::gin_sharpening),
      string_field("gin_self_term", &ModelConfig::gin_self_term),
      bool_field("gin_o_proj", &ModelConfig::gin_o_proj),
      string_field("gin_threshold_mode", &ModelConfig::gin_threshold_mode),
      double_field("gin_mlp_dropout", &ModelConfig::gin_mlp_dropout),
      string_field("pna_adjacency", &ModelConfig::pna_adjacency),
      string_field("pna_threshold_mode", &ModelConfig::pna_threshold_mode),
      string_field("pna_aggregators", &ModelConfig::pna_aggregators),
      string_field("pna_scalers", &ModelConfig::pna_scalers),
      double_field("pna_delta", &ModelConfig::pna_delta),
  };
  return kFields;
}

#undef GRADUS_INT_FIELD
#undef GRADUS_DOUBLE_FIELD
// `text` as a non-empty comma-separated list of distinct names from `allowed` ("sum,mean,max").
void check_name_list(const char* key, const std::string& text,
                     const std::vector<std::string>& allowed) {
  std::vector<std::string> seen;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string name =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    GRADUS_CHECK(std::find(allowed.begin(), allowed.end(), name) != allowed.end(), kWhere,
                 "{} must be a comma-separated list of {}, found \"{}\" (\"{}\" is not one)", key,
                 fmt::join(allowed, ", "), text, name);
    GRADUS_CHECK(std::find(seen.begin(), seen.end(), name) == seen.end(), kWhere,
                 "{} lists \"{}\" twice in \"{}\"", key, name, text);
    seen.push_back(name);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
}

void check_choice(const char* key, const std::string& value,
                  const std::vector<std::string>& allowed) {
  GRADUS_CHECK(std::find(allowed.begin(), allowed.end(), value) != allowed.end(), kWhere,
               "{} must be one of {}, found \"{}\"", key, fmt::join(allowed, ", "), value);
}

void check_positive(const char* key, int64_t v) {
  GRADUS_CHECK(v > 0, kWhere, "{} must be positive, found {}", key, v);
}

}  // namespace

void ModelConfig::validate() const {
  check_positive("vocab_size", vocab_size);
  check_positive("hidden_size", hidden_size);
  check_positive("intermediate_size", intermediate_size);
  check_positive("num_hidden_layers", num_hidden_layers);
  check_positive("num_attention_heads", num_attention_heads);
  check_positive("max_position_embeddings", max_position_embeddings);
  GRADUS_CHECK(hidden_size % num_attention_heads == 0, kWhere,
               "hidden_size ({}) must be divisible by num_attention_heads ({})", hidden_size,
               num_attention_heads);
  GRADUS_CHECK(head_dim() % 2 == 0, kWhere,
               "the head dim hidden_size / num_attention_heads = {} / {} = {} must be even (RoPE "
               "rotates channel pairs)",
               hidden_size, num_attention_heads, head_dim());
  GRADUS_CHECK(std::isfinite(rms_norm_eps) && rms_norm_eps > 0, kWhere,
               "rms_norm_eps must be positive and finite, found {}", rms_norm_eps);
  GRADUS_CHECK(std::isfinite(rope_theta) && rope_theta > 0, kWhere,
               "rope_theta must be positive and finite, found {}", rope_theta);
  GRADUS_CHECK(attention_dropout >= 0 && attention_dropout < 1, kWhere,
               "attention_dropout must be in [0, 1), found {}", attention_dropout);
  GRADUS_CHECK(std::isfinite(graded_q_min) && graded_q_min > 0, kWhere,
               "graded_q_min must be positive and finite, found {}", graded_q_min);
  GRADUS_CHECK(std::isfinite(graded_q_max) && graded_q_max > graded_q_min, kWhere,
               "graded_q_max must be finite and above graded_q_min ({}), found {}", graded_q_min,
               graded_q_max);
  GRADUS_CHECK(std::isfinite(graded_base) && graded_base >= 1, kWhere,
               "graded_base must be a finite number >= 1, found {}", graded_base);
  GRADUS_CHECK(graded_norm == "none" || graded_norm == "rms", kWhere,
               "graded_norm must be \"none\" or \"rms\", found \"{}\"", graded_norm);
  GRADUS_CHECK(graded_score_power == 1 || graded_score_power == 2, kWhere,
               "graded_score_power must be 1 or 2, found {}", graded_score_power);
  parse_grade_init(graded_q_init);
  GRADUS_CHECK(std::isfinite(graph_mlp_multiplier) && graph_mlp_multiplier > 0 &&
                   static_cast<int64_t>(graph_mlp_multiplier * static_cast<double>(head_dim())) >= 1,
               kWhere,
               "graph_mlp_multiplier must be positive with floor(multiplier x head dim {}) >= 1, "
               "found {}",
               head_dim(), graph_mlp_multiplier);
  GRADUS_CHECK(std::isfinite(graph_temperature) && graph_temperature > 0, kWhere,
               "graph_temperature must be positive and finite, found {}", graph_temperature);
  GRADUS_CHECK(std::isfinite(graph_threshold) && graph_threshold >= 0, kWhere,
               "graph_threshold must be finite and >= 0, found {}", graph_threshold);
  GRADUS_CHECK(std::isfinite(graph_beta) && graph_beta > 0, kWhere,
               "graph_beta must be positive and finite, found {}", graph_beta);
  GRADUS_CHECK(graph_topk_fraction > 0 && graph_topk_fraction <= 1, kWhere,
               "graph_topk_fraction must be in (0, 1], found {}", graph_topk_fraction);
  check_choice("gin_self_term", gin_self_term, {"eps", "1+eps"});
  const std::vector<std::string> modes = {"none", "relu", "sharp_softplus", "sigmoid", "binary",
                                          "topk"};
  check_choice("gin_threshold_mode", gin_threshold_mode, modes);
  GRADUS_CHECK(gin_mlp_dropout >= 0 && gin_mlp_dropout < 1, kWhere,
               "gin_mlp_dropout must be in [0, 1), found {}", gin_mlp_dropout);
  check_choice("pna_adjacency", pna_adjacency, {"relu", "softmax"});
  check_choice("pna_threshold_mode", pna_threshold_mode, modes);
  check_name_list("pna_aggregators", pna_aggregators, {"sum", "mean", "max", "min", "var", "std"});
  check_name_list("pna_scalers", pna_scalers, {"identity", "amplification", "attenuation"});
  GRADUS_CHECK(std::isfinite(pna_delta) && pna_delta >= 0, kWhere,
               "pna_delta must be finite and >= 0 (0: the batch's mean log(deg + 1)), found {}",
               pna_delta);
  GRADUS_CHECK(has_attention_kind(attention_kind), kWhere,
               "attention_kind '{}' is not registered; registered kinds: {}", attention_kind,
               fmt::join(attention_kinds(), ", "));
}

std::map<std::string, std::string> ModelConfig::to_map() const {
  std::map<std::string, std::string> out;
  for (const Field& f : fields()) out[f.key] = f.write(*this);
  return out;
}

ModelConfig ModelConfig::from_map(const std::map<std::string, std::string>& map,
                                  bool allow_unknown) {
  ModelConfig c;
  for (const auto& [key, value] : map) {
    const Field* field = nullptr;
    const Field* nearest = nullptr;
    size_t best = SIZE_MAX;
    for (const Field& f : fields()) {
      if (key == f.key) field = &f;
      size_t d = edit_distance(key, f.key);
      if (d < best) best = d, nearest = &f;
    }
    if (field == nullptr) {
      GRADUS_CHECK(allow_unknown, kWhere, "unknown key '{}' (did you mean '{}'?)", key,
                   nearest->key);
      continue;
    }
    field->read(c, value);
  }
  c.validate();
  return c;
}

GradeInit parse_grade_init(const std::string& text) {
  GradeInit g;
  if (text == "identity") return g;
  auto number = [&](const std::string& part, double& out) {
    char* end = nullptr;
    out = part.empty() ? 0.0 : std::strtod(part.c_str(), &end);
    return !part.empty() && end == part.c_str() + part.size() && std::isfinite(out);
  };
  size_t dots = text.find("..");
  bool ok = dots == std::string::npos
                ? number(text, g.start) && (g.end = g.start, true)
                : number(text.substr(0, dots), g.start) && number(text.substr(dots + 2), g.end);
  GRADUS_CHECK(ok, kWhere,
               "graded_q_init must be \"identity\", a number \"A\" or a ramp \"A..B\", found "
               "\"{}\"",
               text);
  g.identity = false;
  return g;
}

ModelConfig ModelConfig::preset(const std::string& name) {
  ModelConfig c;
  if (name == "small") return c;  // the defaults
  if (name == "medium") {
    c.vocab_size = 50304;
    c.hidden_size = 768;
    c.num_attention_heads = 12;
    c.intermediate_size = 2048;
    c.num_hidden_layers = 12;
    c.max_position_embeddings = 1024;
    return c;
  }
  GRADUS_FAIL(kWhere, "unknown preset '{}' (expected small or medium)", name);
}

}  // namespace gradus
