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
  };
  return kFields;
}

#undef GRADUS_INT_FIELD
#undef GRADUS_DOUBLE_FIELD
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
