#include "experiments/lib/descriptor.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "core/text.h"
#include "experiments/lib/json_file.h"
#include "kernels/backend_info.h"
#include "models/graded/graded_attention.h"
#include "models/io/json_depth.h"
#include "models/nn/attention.h"

namespace gradus::experiments {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kSections[] = {"data", "model", "train", "eval", "log"};

bool is_section(const std::string& path) {
  return std::find(std::begin(kSections), std::end(kSections), path) != std::end(kSections);
}

// ---- reading typed values --------------------------------------------------------------------

// An integer, also from a float with an integral value (1e4 is a fine step count).
std::optional<int64_t> as_integer(const json& v) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18)
      return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

std::optional<double> as_number(const json& v) {
  if (!v.is_number()) return std::nullopt;
  double d = v.get<double>();
  if (!std::isfinite(d)) return std::nullopt;
  return d;
}

std::string type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a number";
    default: return "an integer";
  }
}

bool type_matches(const std::string& type, const json& v) {
  if (type == "integer" || type == "number") return v.is_number();
  if (type == "boolean") return v.is_boolean();
  if (type == "string") return v.is_string();
  if (type.starts_with("[")) return v.is_array();
  return true;
}

// The value as JSON (shortened), with its type when that is not the expected one.
std::string shown(const json& v, bool with_type = true) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  if (with_type && !v.is_null()) s += " (" + type_name(v) + ")";
  return s;
}

std::string format_number(double d) { return fmt::format("{}", d); }

// ---- the schema --------------------------------------------------------------------------------

// A field of the schema with its check. `check` returns the normalised value (integers as
// integers) or nullopt when the value is not acceptable; `hint` may add to the message.
struct Rule {
  DescriptorField field;
  std::function<std::optional<json>(const json&)> check;
  std::function<std::string(const json&)> hint;
};

Rule int_rule(std::string path, json def, int64_t lo, std::optional<int64_t> hi, std::string doc) {
  std::string expected = hi        ? fmt::format("an integer in [{}, {}]", lo, *hi)
                         : lo == 1 ? std::string("a positive integer")
                                   : fmt::format("an integer >= {}", lo);
  return {{std::move(path), "integer", expected, std::move(def), std::move(doc)},
          [lo, hi](const json& v) -> std::optional<json> {
            auto i = as_integer(v);
            if (!i || *i < lo || (hi && *i > *hi)) return std::nullopt;
            return json(*i);
          },
          nullptr};
}

// A number in the interval lo..hi; open ends exclude the bound; hi = nullopt means unbounded.
Rule num_rule(std::string path, json def, double lo, bool lo_open, std::optional<double> hi,
              bool hi_open, std::string doc) {
  std::string expected;
  if (!hi) {
    expected = lo == 0 && lo_open
                   ? std::string("a positive number")
                   : fmt::format("a number {} {}", lo_open ? ">" : ">=", format_number(lo));
  } else {
    expected = fmt::format("a number in {}{}, {}{}", lo_open ? "(" : "[", format_number(lo),
                           format_number(*hi), hi_open ? ")" : "]");
  }
  return {{std::move(path), "number", expected, std::move(def), std::move(doc)},
          [=](const json& v) -> std::optional<json> {
            auto d = as_number(v);
            if (!d) return std::nullopt;
            if (lo_open ? !(*d > lo) : !(*d >= lo)) return std::nullopt;
            if (hi && (hi_open ? !(*d < *hi) : !(*d <= *hi))) return std::nullopt;
            return json(*d);
          },
          nullptr};
}

Rule bool_rule(std::string path, bool def, std::string doc) {
  return {{std::move(path), "boolean", "true or false", json(def), std::move(doc)},
          [](const json& v) -> std::optional<json> {
            if (!v.is_boolean()) return std::nullopt;
            return v;
          },
          nullptr};
}

Rule enum_rule(std::string path, std::string def, std::vector<std::string> choices,
               std::string doc) {
  std::vector<std::string> quoted;
  for (const auto& c : choices) quoted.push_back("\"" + c + "\"");
  std::string expected = fmt::format("one of {}", fmt::join(quoted, ", "));
  return {{std::move(path), "string", expected, json(def), std::move(doc)},
          [choices](const json& v) -> std::optional<json> {
            if (!v.is_string()) return std::nullopt;
            if (std::find(choices.begin(), choices.end(), v.get<std::string>()) == choices.end())
              return std::nullopt;
            return v;
          },
          [choices](const json& v) -> std::string {
            if (!v.is_string()) return "";
            std::string m = closest_match(v.get<std::string>(), choices);
            return m.empty() ? "" : fmt::format(" (did you mean \"{}\"?)", m);
          }};
}

Rule string_rule(std::string path, json def, std::string expected,
                 std::function<bool(const std::string&)> ok, std::string doc) {
  return {{std::move(path), "string", std::move(expected), std::move(def), std::move(doc)},
          [ok](const json& v) -> std::optional<json> {
            if (!v.is_string() || !ok(v.get<std::string>())) return std::nullopt;
            return v;
          },
          nullptr};
}

bool non_empty(const std::string& s) { return !s.empty(); }

// A non-empty comma-separated list of distinct names from `allowed` ("sum,mean,max").
bool valid_name_list(const std::string& s, const std::vector<std::string>& allowed) {
  std::vector<std::string> seen;
  std::stringstream ss(s);
  for (std::string name; std::getline(ss, name, ',');) {
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) return false;
    if (std::find(seen.begin(), seen.end(), name) != seen.end()) return false;
    seen.push_back(name);
  }
  return !seen.empty() && s.back() != ',';
}

bool valid_run_name(const std::string& s) {
  if (s.empty() || s[0] == '.' || s.size() > 100) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
  });
}

const std::vector<Rule>& rules() {
  static const std::vector<Rule> kRules = [] {
    const ModelConfig m;
    const TrainSpec t;
    const EvalSpec e;
    const LogSpec l;
    const DataSpec d;
    std::vector<Rule> r;
    // data
    r.push_back(string_rule(
        "data.corpus", json(), "a data set name or a file path", non_empty,
        "Required. \"moby_dick\" (the whole book, fetched by scripts/fetch-data into data/), "
        "\"moby_dick_excerpt\" (the excerpt committed in data-excerpts/), or the path of a text "
        "file (relative to the current directory). Tokens are its bytes."));
    r.push_back(num_rule("data.val_fraction", d.val_fraction, 0, true, 1.0, true,
                         "The share of the tokens, at the end of the text, held out for "
                         "validation."));
    r.push_back(int_rule("data.context", json(), 1, std::nullopt,
                         "T, tokens per training window; at most model.max_position_embeddings, "
                         "which is the default."));
    // model (ModelConfig, Hugging Face LlamaConfig keys)
    r.push_back(int_rule("model.vocab_size", m.vocab_size, 256, std::nullopt,
                         "At least 256, the byte tokenizer's vocabulary."));
    r.push_back(int_rule("model.hidden_size", m.hidden_size, 1, std::nullopt,
                         "C, the width of the residual stream."));
    r.push_back(int_rule("model.intermediate_size", m.intermediate_size, 1, std::nullopt,
                         "F, the SwiGLU feed-forward width."));
    r.push_back(int_rule("model.num_hidden_layers", m.num_hidden_layers, 1, std::nullopt,
                         "Number of decoder blocks."));
    r.push_back(int_rule("model.num_attention_heads", m.num_attention_heads, 1, std::nullopt,
                         "H; hidden_size / H (the head dim) must be a whole, even number."));
    r.push_back(num_rule("model.rms_norm_eps", m.rms_norm_eps, 0, true, std::nullopt, false,
                         "RMSNorm epsilon."));
    r.push_back(
        num_rule("model.rope_theta", m.rope_theta, 0, true, std::nullopt, false, "RoPE base."));
    r.push_back(int_rule("model.max_position_embeddings", m.max_position_embeddings, 1,
                         std::nullopt, "The longest sequence the model accepts."));
    r.push_back(bool_rule("model.tie_word_embeddings", m.tie_word_embeddings,
                          "The output head shares the embedding matrix."));
    r.push_back(num_rule("model.attention_dropout", m.attention_dropout, 0, false, 1.0, true,
                         "Dropout on the attention probabilities while training."));
    r.push_back(string_rule("model.attention_kind", m.attention_kind, "a registered attention kind",
                            non_empty, "The attention of every block (\"std\": causal softmax)."));
    // model: the graded kinds "lgt" and "egt" (docs/graded.md); other kinds ignore these keys
    r.push_back(bool_rule("model.graded_learnable", m.graded_learnable,
                          "Grades are parameters (else fixed at graded_q_init)."));
    r.push_back(bool_rule("model.graded_per_head", m.graded_per_head,
                          "Attention grades per head (else one vector per layer)."));
    r.push_back(string_rule(
        "model.graded_q_init", m.graded_q_init, "\"identity\", a number \"A\" or a ramp \"A..B\"",
        [](const std::string& v) {
          try {
            parse_grade_init(v);
            return true;
          } catch (const Error&) {
            return false;
          }
        },
        "Initial grades: the kind's identity (lgt 1, egt 0), every grade A, or a linear ramp from "
        "A (first channel) to B (last)."));
    r.push_back(num_rule("model.graded_q_min", m.graded_q_min, 0, true, std::nullopt, false,
                         "The smallest grade (LGT stays invertible; learnable q = q_min + "
                         "softplus(theta))."));
    r.push_back(num_rule("model.graded_q_max", m.graded_q_max, 0, true, std::nullopt, false,
                         "The largest grade (a clamp); above graded_q_min."));
    r.push_back(num_rule("model.graded_base", m.graded_base, 1, false, std::nullopt, false,
                         "EGT's base lambda: s_i = lambda^q_i."));
    r.push_back(bool_rule("model.graded_learn_base", m.graded_learn_base,
                          "egt: lambda = 1 + softplus(rho) is a parameter."));
    r.push_back(bool_rule("model.graded_monotone", m.graded_monotone,
                          "Ordering prior: q_i = q_min + sum_{j<=i} softplus(delta_j) (learnable "
                          "grades; the initial ramp must increase)."));
    r.push_back(enum_rule("model.graded_norm", m.graded_norm, {"none", "rms"},
                          "rms: s / sqrt(mean s^2), so that grading keeps the overall scale."));
    r.push_back(int_rule("model.graded_score_power", m.graded_score_power, 1, 2,
                         "2: scores (Q Phi)(K Phi)^T; 1: (Q Phi) K^T."));
    r.push_back(bool_rule("model.graded_values", m.graded_values, "Grade V as well."));
    r.push_back(bool_rule("model.graded_embedding", m.graded_embedding,
                          "Grade the embedding output: X0 = E[t] Phi_emb."));
    r.push_back(bool_rule("model.graded_ffn", m.graded_ffn,
                          "Grade the feed-forward input: mlp(Phi_in Norm(X))."));
    r.push_back(bool_rule("model.graded_folded", m.graded_folded,
                          "The folded baseline: the initial Phi is absorbed into the weights and "
                          "the model runs ungraded."));
    // model: the graph-aware kinds "gin" and "pna" (docs/graph_attention.md); others ignore these
    r.push_back(num_rule("model.graph_mlp_multiplier", m.graph_mlp_multiplier, 0, true,
                         std::nullopt, false,
                         "gamma: the per-head MLP's hidden width is floor(gamma x head dim) (at "
                         "least 1); 0.5 is the paper's best."));
    r.push_back(num_rule("model.graph_temperature", m.graph_temperature, 0, true, std::nullopt,
                         false, "T: softmax adjacencies are softmax(scores / T)."));
    r.push_back(num_rule("model.graph_threshold", m.graph_threshold, 0, false, std::nullopt, false,
                         "tau of the threshold modes."));
    r.push_back(num_rule("model.graph_beta", m.graph_beta, 0, true, std::nullopt, false,
                         "beta of the sharp_softplus and sigmoid threshold modes."));
    r.push_back(num_rule("model.graph_topk_fraction", m.graph_topk_fraction, 0, true, 1.0, false,
                         "The topk threshold mode keeps max(1, floor(fraction x T)) entries per "
                         "row."));
    r.push_back(bool_rule("model.gin_sharpening", m.gin_sharpening,
                          "gin: a learnable sharpening alpha per layer, softmax(alpha scores)."));
    r.push_back(enum_rule("model.gin_self_term", m.gin_self_term, {"eps", "1+eps"},
                          "gin: eps V + A V (the reference code) or (1 + eps) V + A V (the "
                          "paper); eps is learnable per head, from 0."));
    r.push_back(bool_rule("model.gin_o_proj", m.gin_o_proj,
                          "gin: an output projection after the heads (off: the best reported)."));
    const std::vector<std::string> modes = {"none",    "relu",   "sharp_softplus",
                                            "sigmoid", "binary", "topk"};
    r.push_back(enum_rule("model.gin_threshold_mode", m.gin_threshold_mode, modes,
                          "gin: post-processing of the adjacency (then re-masked causally)."));
    r.push_back(num_rule("model.gin_mlp_dropout", m.gin_mlp_dropout, 0, false, 1.0, true,
                         "gin: dropout after the per-head MLP's first linear."));
    r.push_back(enum_rule("model.pna_adjacency", m.pna_adjacency, {"relu", "softmax"},
                          "pna: the adjacency relu(scores) or softmax(scores / T)."));
    r.push_back(enum_rule("model.pna_threshold_mode", m.pna_threshold_mode, modes,
                          "pna: post-processing of the adjacency (then re-masked causally)."));
    r.push_back(string_rule(
        "model.pna_aggregators", m.pna_aggregators,
        "a comma-separated list of distinct sum, mean, max, min, var, std",
        [](const std::string& v) {
          return valid_name_list(v, {"sum", "mean", "max", "min", "var", "std"});
        },
        "pna: the aggregators, in the order the MLP reads them."));
    r.push_back(string_rule(
        "model.pna_scalers", m.pna_scalers,
        "a comma-separated list of distinct identity, amplification, attenuation",
        [](const std::string& v) {
          return valid_name_list(v, {"identity", "amplification", "attenuation"});
        },
        "pna: degree scalers (an ablation): each aggregator is repeated once per scaler."));
    r.push_back(num_rule("model.pna_delta", m.pna_delta, 0, false, std::nullopt, false,
                         "pna: delta of the degree scalers; 0: the batch's mean log(deg + 1)."));
    // train
    r.push_back(enum_rule("train.optimizer", t.optimizer, {"adamw", "adam", "sgd"},
                          "adamw: decoupled weight decay; adam: L2 decay added to the gradient; "
                          "sgd: with momentum."));
    r.push_back(num_rule("train.lr", t.lr, 0, true, std::nullopt, false,
                         "The peak learning rate, reached at the end of the warm-up."));
    r.push_back(num_rule("train.weight_decay", t.weight_decay, 0, false, std::nullopt, false,
                         "Applied to the matrices (embedding, projections, head); never to the "
                         "norm gains."));
    {
      Rule betas{{"train.betas", "[number, number]", "two numbers in [0, 1)",
                  json::array({t.beta1, t.beta2}), "Adam's (beta1, beta2)."},
                 [](const json& v) -> std::optional<json> {
                   if (!v.is_array() || v.size() != 2) return std::nullopt;
                   json out = json::array();
                   for (const json& b : v) {
                     auto d = as_number(b);
                     if (!d || *d < 0 || *d >= 1) return std::nullopt;
                     out.push_back(*d);
                   }
                   return out;
                 },
                 nullptr};
      r.push_back(std::move(betas));
    }
    r.push_back(num_rule("train.eps", t.eps, 0, true, std::nullopt, false,
                         "Adam's epsilon, added after the square root."));
    r.push_back(num_rule("train.momentum", t.momentum, 0, false, 1.0, true,
                         "SGD momentum (used by sgd only)."));
    r.push_back(int_rule("train.warmup_steps", t.warmup_steps, 0, std::nullopt,
                         "Linear warm-up from lr / warmup_steps to lr; at most train.steps."));
    r.push_back(enum_rule("train.schedule", t.schedule, {"cosine", "constant"},
                          "After the warm-up: cosine decay from lr towards min_lr, or constant "
                          "lr."));
    r.push_back(num_rule("train.min_lr", t.min_lr, 0, false, std::nullopt, false,
                         "Where the cosine ends; at most train.lr."));
    r.push_back(int_rule("train.steps", t.steps, 1, std::nullopt, "Optimiser steps."));
    r.push_back(int_rule("train.batch_size", t.batch_size, 1, std::nullopt,
                         "B, windows per step (B x T tokens per step)."));
    r.push_back(num_rule("train.clip_grad_norm", t.clip_grad_norm, 0, false, std::nullopt, false,
                         "Clip the global gradient norm to this value; 0 turns clipping off."));
    r.push_back(enum_rule("train.precision", t.precision, {"f32", "bf16"},
                          "f32, or bf16 mixed precision: products and attention in bf16; norms, "
                          "softmax, the loss, parameters and optimiser state in f32 (GPU only)."));
    r.push_back(num_rule("train.grade_lr_scale", t.grade_lr_scale, 0, false, std::nullopt, false,
                         "The learning rate of grade parameters (graded kinds) relative to "
                         "train.lr; they get no weight decay."));
    // eval
    r.push_back(int_rule("eval.every", e.every, 0, std::nullopt,
                         "Evaluate (and write the checkpoint) every this many steps; 0: only at "
                         "the end. The last step always evaluates."));
    r.push_back(int_rule("eval.batches", e.batches, 0, std::nullopt,
                         "Validation batches (of train.batch_size windows) per evaluation; 0: the "
                         "whole validation split. The evaluation after the last step always "
                         "covers the whole split."));
    // log
    r.push_back(int_rule("log.every", l.every, 1, std::nullopt,
                         "Write a metrics line every this many steps (and at every evaluation)."));
    r.push_back(string_rule("log.name", json(),
                            "a name of letters, digits, '_', '-' or '.' (not starting with '.')",
                            valid_run_name,
                            "The run's name: runs go to <log.dir>/<name>/<timestamp>/. Defaults to "
                            "the descriptor file's name without .json."));
    r.push_back(string_rule("log.dir", l.dir, "a non-empty path", non_empty,
                            "The directory of run directories (relative to the current "
                            "directory)."));
    // top level
    {
      Rule seed{{"seed", "integer", "an integer in [0, 2^64)", json(0),
                 "Fixes the "
                 "initialisation, the training windows and dropout."},
                [](const json& v) -> std::optional<json> {
                  if (v.is_number_unsigned()) return v;
                  auto i = as_integer(v);
                  if (!i || *i < 0) return std::nullopt;
                  return json(static_cast<uint64_t>(*i));
                },
                nullptr};
      r.push_back(std::move(seed));
    }
    r.push_back(enum_rule("device", "cpu", {"cpu", "cuda", "auto"},
                          "Where to train. \"auto\" picks CUDA when this build has it, else the "
                          "CPU."));
    return r;
  }();
  return kRules;
}

const Rule* find_rule(const std::string& path) {
  for (const Rule& r : rules())
    if (r.field.path == path) return &r;
  return nullptr;
}

// The keys that may appear directly under `prefix` ("" for the document).
std::vector<std::string> child_keys(const std::string& prefix) {
  std::vector<std::string> out;
  if (prefix.empty()) {
    for (const char* s : kSections) out.push_back(s);
    for (const Rule& r : rules())
      if (r.field.path.find('.') == std::string::npos) out.push_back(r.field.path);
    return out;
  }
  for (const Rule& r : rules())
    if (r.field.path.starts_with(prefix + "."))
      out.push_back(r.field.path.substr(prefix.size() + 1));
  return out;
}

std::string join_path(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

std::string unknown_key_message(const std::string& prefix, const std::string& key) {
  std::vector<std::string> siblings = child_keys(prefix);
  std::string near = closest_match(key, siblings);
  if (!near.empty())
    return fmt::format("unknown key (did you mean \"{}\"?)", join_path(prefix, near));
  // The key may belong to another section ("model.lr" for "train.lr").
  for (const Rule& r : rules()) {
    const std::string& p = r.field.path;
    size_t dot = p.rfind('.');
    std::string leaf = dot == std::string::npos ? p : p.substr(dot + 1);
    if (leaf == key) return fmt::format("unknown key (did you mean \"{}\"?)", p);
  }
  if (prefix.empty() && is_section(key)) return "unknown key";
  return fmt::format("unknown key; the keys {} are: {}",
                     prefix.empty() ? "of a descriptor" : "of " + prefix,
                     fmt::join(siblings, ", "));
}

// Collects problems while resolving a document.
struct Checker {
  std::vector<DescriptorProblem> problems;
  std::map<std::string, std::string> overridden;  // path -> the --set assignment
  std::set<std::string> invalid;

  void add(const std::string& path, std::string message) {
    // A problem on a path that an override set (or created) says so.
    for (const auto& [p, assignment] : overridden) {
      if (path == p || path.starts_with(p + ".") || path.starts_with(p + "[") ||
          p.starts_with(path + ".")) {
        message += fmt::format(" [from --set {}]", assignment);
        break;
      }
    }
    problems.push_back({path, std::move(message)});
    invalid.insert(path);
  }
  bool ok(std::initializer_list<const char*> paths) const {
    for (const char* p : paths)
      if (invalid.count(p)) return false;
    return true;
  }
};

void check_field(Checker& c, const Rule& rule, const json& value, json& resolved_slot) {
  std::optional<json> normalised = rule.check(value);
  if (normalised) {
    resolved_slot = *normalised;
    return;
  }
  // For an array of numbers, point at the first bad element when the shape is right.
  if (rule.field.type.starts_with("[") && value.is_array() && value.size() == 2) {
    for (size_t i = 0; i < value.size(); ++i) {
      auto d = as_number(value[i]);
      if (!d || *d < 0 || *d >= 1) {
        c.add(fmt::format("{}[{}]", rule.field.path, i),
              fmt::format("expected a number in [0, 1), found {}",
                          shown(value[i], !value[i].is_number())));
        return;
      }
    }
  }
  std::string message = fmt::format("expected {}, found {}", rule.field.expected,
                                    shown(value, !type_matches(rule.field.type, value)));
  if (rule.hint) message += rule.hint(value);
  c.add(rule.field.path, message);
}

// Fills `resolved` (an object with every section) from `doc`, recording problems.
void walk(Checker& c, const json& doc, const std::string& prefix, json& resolved) {
  for (const auto& [key, value] : doc.items()) {
    std::string path = join_path(prefix, key);
    if (prefix.empty() && is_section(key)) {
      if (!value.is_object()) {
        c.add(path,
              fmt::format("expected an object (the {} section), found {}", key, shown(value)));
        continue;
      }
      walk(c, value, path, resolved[key]);
      continue;
    }
    const Rule* rule = find_rule(path);
    if (rule == nullptr) {
      c.add(path, unknown_key_message(prefix, key));
      continue;
    }
    check_field(c, *rule, value, resolved[key]);
  }
}

// Checks that involve more than one key, each skipped when one of its keys is already invalid.
void cross_check(Checker& c, json& r) {
  const json& m = r["model"];
  if (c.ok({"model.hidden_size", "model.num_attention_heads"})) {
    int64_t hidden = m["hidden_size"], heads = m["num_attention_heads"];
    if (hidden % heads != 0) {
      c.add("model.num_attention_heads",
            fmt::format("expected a divisor of model.hidden_size ({}), found {}", hidden, heads));
    } else if ((hidden / heads) % 2 != 0) {
      c.add("model.num_attention_heads",
            fmt::format("expected a head dim hidden_size / num_attention_heads that is even (RoPE "
                        "rotates channel pairs), found {} / {} = {}",
                        hidden, heads, hidden / heads));
    }
  }
  if (c.ok({"model.attention_kind"})) {
    std::string kind = m["attention_kind"];
    if (!has_attention_kind(kind)) {
      std::vector<std::string> kinds = attention_kinds();
      std::string near = closest_match(kind, kinds);
      c.add("model.attention_kind",
            fmt::format("expected a registered attention kind ({}), found \"{}\"{}",
                        fmt::join(kinds, ", "), kind,
                        near.empty() ? "" : fmt::format(" (did you mean \"{}\"?)", near)));
    }
  }
  if (c.ok({"model.graph_mlp_multiplier", "model.hidden_size", "model.num_attention_heads"}) &&
      m["hidden_size"].get<int64_t>() % m["num_attention_heads"].get<int64_t>() == 0) {
    const int64_t head_dim =
        m["hidden_size"].get<int64_t>() / m["num_attention_heads"].get<int64_t>();
    const double gamma = m["graph_mlp_multiplier"];
    if (static_cast<int64_t>(gamma * static_cast<double>(head_dim)) < 1)
      c.add(
          "model.graph_mlp_multiplier",
          fmt::format("expected floor(multiplier x head dim {}) >= 1, found {}", head_dim, gamma));
  }
  if (c.ok({"model.graded_q_min", "model.graded_q_max"}) &&
      m["graded_q_max"].get<double>() <= m["graded_q_min"].get<double>()) {
    c.add("model.graded_q_max",
          fmt::format("expected more than model.graded_q_min ({}), found {}",
                      m["graded_q_min"].get<double>(), m["graded_q_max"].get<double>()));
  }
  if (c.ok({"model.max_position_embeddings", "data.context"})) {
    int64_t max_pos = m["max_position_embeddings"];
    json& ctx = r["data"]["context"];
    if (ctx.is_null()) {
      ctx = max_pos;
    } else if (ctx.get<int64_t>() > max_pos) {
      c.add("data.context",
            fmt::format("expected at most model.max_position_embeddings ({}), found {}", max_pos,
                        ctx.get<int64_t>()));
    }
  }
  const json& t = r["train"];
  if (c.ok({"train.lr", "train.min_lr"}) && t["min_lr"].get<double>() > t["lr"].get<double>()) {
    c.add("train.min_lr", fmt::format("expected at most train.lr ({}), found {}",
                                      t["lr"].get<double>(), t["min_lr"].get<double>()));
  }
  if (c.ok({"train.warmup_steps", "train.steps"}) &&
      t["warmup_steps"].get<int64_t>() > t["steps"].get<int64_t>()) {
    c.add("train.warmup_steps",
          fmt::format("expected at most train.steps ({}), found {}", t["steps"].get<int64_t>(),
                      t["warmup_steps"].get<int64_t>()));
  }
  if (c.ok({"train.precision", "device"}) && t["precision"] == "bf16" && r["device"] == "cpu") {
    c.add("train.precision",
          "\"bf16\" computes in bf16, which only the GPU backend does; set \"device\": \"cuda\" "
          "(or \"auto\" on a GPU machine), or use \"f32\"");
  }
  if (c.ok({"device"}) && r["device"] == "cuda" && !kernels::cuda_built()) {
    c.add("device",
          "\"cuda\" was asked for, but this build has no CUDA backend (configure with "
          "-DGRADUS_CUDA=ON on a machine with the CUDA toolkit), or use \"cpu\" or \"auto\"");
  }
}

// A usable run name from a file stem: characters outside the allowed set become '_'.
std::string sanitise_name(const std::string& stem) {
  std::string out;
  for (char ch : stem) {
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.';
    out += ok ? ch : '_';
  }
  while (!out.empty() && out[0] == '.') out.erase(0, 1);
  return valid_run_name(out) ? out : "run";
}
std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

}  // namespace

// ---- public -------------------------------------------------------------------------------------

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = SIZE_MAX;
  std::string w = lower(word);
  for (const std::string& c : candidates) {
    std::string lc = lower(c);
    size_t d = edit_distance(w, lc);
    // A prefix ("warmup" for "warmup_steps") is as good as a one-letter slip.
    if (w.size() >= 3 && (lc.starts_with(w) || w.starts_with(lc))) d = std::min<size_t>(d, 1);
    if (d < best_d) best_d = d, best = c;
  }
  // Plausible misspellings only: about one edit per three letters.
  size_t limit = std::max<size_t>(1, (word.size() + 2) / 3);
  return best_d <= limit ? best : std::string();
}

DescriptorError::DescriptorError(const std::string& source, std::vector<DescriptorProblem> problems)
    : Error([&] {
        std::string text =
            problems.size() == 1
                ? fmt::format("invalid descriptor {}:", source)
                : fmt::format("invalid descriptor {} ({} problems):", source, problems.size());
        for (const auto& p : problems)
          text += fmt::format("\n  {}: {}", p.path.empty() ? "(document)" : p.path, p.message);
        return text;
      }()),
      problems_(std::move(problems)) {}

const std::vector<DescriptorField>& descriptor_fields() {
  static const std::vector<DescriptorField> kFields = [] {
    std::vector<DescriptorField> out;
    for (const Rule& r : rules()) out.push_back(r.field);
    return out;
  }();
  return kFields;
}

void apply_override(json& doc, const std::string& assignment) {
  constexpr const char* kWhere = "--set";
  // A descriptor holds UTF-8 text (a file that is not is a parse error); bytes that are not would
  // make every later dump() of the document (messages, resolved.json) throw a json::type_error.
  try {
    (void)json(assignment).dump();
  } catch (const json::type_error&) {
    GRADUS_FAIL(kWhere, "{} is not valid UTF-8 text",
                json(assignment).dump(-1, ' ', false, json::error_handler_t::replace));
  }
  size_t eq = assignment.find('=');
  GRADUS_CHECK(eq != std::string::npos, kWhere, "expected path=value, found \"{}\"", assignment);
  std::string path = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string part; std::getline(ss, part, '.');) parts.push_back(part);
  if (!path.empty() && path.back() == '.') parts.push_back("");
  GRADUS_CHECK(!parts.empty() && std::none_of(parts.begin(), parts.end(),
                                              [](const std::string& p) { return p.empty(); }),
               kWhere, "\"{}\": expected a dotted path such as train.lr before '=', found \"{}\"",
               assignment, path);
  check_json_depth(text, kWhere, fmt::format("the value of \"{}\"", path));
  json value;
  try {
    value = json::parse(text);
  } catch (const json::exception&) {
    // not JSON: a plain string (adamw, moby_dick); also a number JSON cannot hold (1e999: an
    // out_of_range, not a parse_error), which validation then reports as a string
    value = text;
  }
  GRADUS_CHECK(doc.is_object(), kWhere, "\"{}\": the descriptor is not a JSON object", assignment);
  json* node = &doc;
  std::string walked;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    walked = join_path(walked, parts[i]);
    json& next = (*node)[parts[i]];
    if (next.is_null()) next = json::object();
    GRADUS_CHECK(next.is_object(), kWhere, "\"{}\": {} is not a section but {}", assignment, walked,
                 shown(next));
    node = &next;
  }
  (*node)[parts.back()] = std::move(value);
}

Descriptor parse_descriptor(json doc, const std::string& source,
                            const std::vector<std::string>& overrides,
                            const std::string& default_name) {
  Checker c;
  for (const std::string& o : overrides) {
    apply_override(doc, o);
    c.overridden[o.substr(0, o.find('='))] = o;
  }
  if (!doc.is_object()) {
    c.add("", fmt::format("expected a JSON object with the sections data, model, train, eval, "
                          "log, found {}",
                          shown(doc)));
    throw DescriptorError(source, c.problems);
  }
  // Start from the defaults, then overlay what the document gives.
  json resolved = json::object();
  for (const char* s : kSections) resolved[s] = json::object();
  for (const Rule& r : rules()) {
    const std::string& p = r.field.path;
    size_t dot = p.find('.');
    if (dot == std::string::npos)
      resolved[p] = r.field.default_value;
    else
      resolved[p.substr(0, dot)][p.substr(dot + 1)] = r.field.default_value;
  }
  resolved["log"]["name"] = sanitise_name(default_name);
  walk(c, doc, "", resolved);
  if (resolved["data"]["corpus"].is_null() && !c.invalid.count("data.corpus")) {
    c.add("data.corpus",
          "missing: every descriptor names its text (for example "
          "\"data\": {\"corpus\": \"moby_dick\"})");
  }
  cross_check(c, resolved);
  if (!c.problems.empty()) throw DescriptorError(source, c.problems);

  Descriptor d;
  const json &data = resolved["data"], &m = resolved["model"], &t = resolved["train"],
             &e = resolved["eval"], &l = resolved["log"];
  d.data.corpus = data["corpus"];
  d.data.val_fraction = data["val_fraction"];
  d.data.context = data["context"];
  d.model.vocab_size = m["vocab_size"];
  d.model.hidden_size = m["hidden_size"];
  d.model.intermediate_size = m["intermediate_size"];
  d.model.num_hidden_layers = m["num_hidden_layers"];
  d.model.num_attention_heads = m["num_attention_heads"];
  d.model.rms_norm_eps = m["rms_norm_eps"];
  d.model.rope_theta = m["rope_theta"];
  d.model.max_position_embeddings = m["max_position_embeddings"];
  d.model.tie_word_embeddings = m["tie_word_embeddings"];
  d.model.attention_dropout = m["attention_dropout"];
  d.model.attention_kind = m["attention_kind"];
  d.model.graded_learnable = m["graded_learnable"];
  d.model.graded_per_head = m["graded_per_head"];
  d.model.graded_q_init = m["graded_q_init"];
  d.model.graded_q_min = m["graded_q_min"];
  d.model.graded_q_max = m["graded_q_max"];
  d.model.graded_base = m["graded_base"];
  d.model.graded_learn_base = m["graded_learn_base"];
  d.model.graded_monotone = m["graded_monotone"];
  d.model.graded_norm = m["graded_norm"];
  d.model.graded_score_power = m["graded_score_power"];
  d.model.graded_values = m["graded_values"];
  d.model.graded_embedding = m["graded_embedding"];
  d.model.graded_ffn = m["graded_ffn"];
  d.model.graded_folded = m["graded_folded"];
  d.model.graph_mlp_multiplier = m["graph_mlp_multiplier"];
  d.model.graph_temperature = m["graph_temperature"];
  d.model.graph_threshold = m["graph_threshold"];
  d.model.graph_beta = m["graph_beta"];
  d.model.graph_topk_fraction = m["graph_topk_fraction"];
  d.model.gin_sharpening = m["gin_sharpening"];
  d.model.gin_self_term = m["gin_self_term"];
  d.model.gin_o_proj = m["gin_o_proj"];
  d.model.gin_threshold_mode = m["gin_threshold_mode"];
  d.model.gin_mlp_dropout = m["gin_mlp_dropout"];
  d.model.pna_adjacency = m["pna_adjacency"];
  d.model.pna_threshold_mode = m["pna_threshold_mode"];
  d.model.pna_aggregators = m["pna_aggregators"];
  d.model.pna_scalers = m["pna_scalers"];
  d.model.pna_delta = m["pna_delta"];
  d.train.optimizer = t["optimizer"];
  d.train.lr = t["lr"];
  d.train.weight_decay = t["weight_decay"];
  d.train.beta1 = t["betas"][0];
  d.train.beta2 = t["betas"][1];
  d.train.eps = t["eps"];
  d.train.momentum = t["momentum"];
  d.train.warmup_steps = t["warmup_steps"];
  d.train.schedule = t["schedule"];
  d.train.min_lr = t["min_lr"];
  d.train.steps = t["steps"];
  d.train.batch_size = t["batch_size"];
  d.train.clip_grad_norm = t["clip_grad_norm"];
  d.train.grade_lr_scale = t["grade_lr_scale"];
  d.train.precision = t["precision"];
  d.eval.every = e["every"];
  d.eval.batches = e["batches"];
  d.log.every = l["every"];
  d.log.name = l["name"];
  d.log.dir = l["dir"];
  d.seed = resolved["seed"].get<uint64_t>();
  d.device = resolved["device"];
  d.model.validate();  // the model's own check agrees with the schema; a mismatch is a bug here
  // The graded kinds check how their options combine (docs/graded.md): a problem of the key the
  // message names.
  if (d.model.attention_kind == "lgt" || d.model.attention_kind == "egt") {
    try {
      graded::validate_graded_config(d.model, d.model.attention_kind == "lgt"
                                                  ? graded::GradingKind::linear
                                                  : graded::GradingKind::exponential);
    } catch (const Error& e) {
      std::string what = e.what(), path = "model.attention_kind";
      if (size_t at = what.find("model.graded_"); at != std::string::npos) {
        path = what.substr(at, what.find(':', at) - at);
        what = what.substr(what.find(':', at) + 2);
      }
      Checker g;
      g.overridden = c.overridden;
      g.add(path, what);
      throw DescriptorError(source, g.problems);
    }
  }
  return d;
}

Descriptor load_descriptor(const std::string& path, const std::vector<std::string>& overrides) {
  json doc(read_json_document(path, "descriptor"));
  return parse_descriptor(std::move(doc), path, overrides, fs::path(path).stem().string());
}

nlohmann::json Descriptor::to_json() const {
  json out;
  out["data"] = {
      {"corpus", data.corpus}, {"val_fraction", data.val_fraction}, {"context", data.context}};
  out["model"] = {{"vocab_size", model.vocab_size},
                  {"hidden_size", model.hidden_size},
                  {"intermediate_size", model.intermediate_size},
                  {"num_hidden_layers", model.num_hidden_layers},
                  {"num_attention_heads", model.num_attention_heads},
                  {"rms_norm_eps", model.rms_norm_eps},
                  {"rope_theta", model.rope_theta},
                  {"max_position_embeddings", model.max_position_embeddings},
                  {"tie_word_embeddings", model.tie_word_embeddings},
                  {"attention_dropout", model.attention_dropout},
                  {"attention_kind", model.attention_kind},
                  {"graded_learnable", model.graded_learnable},
                  {"graded_per_head", model.graded_per_head},
                  {"graded_q_init", model.graded_q_init},
                  {"graded_q_min", model.graded_q_min},
                  {"graded_q_max", model.graded_q_max},
                  {"graded_base", model.graded_base},
                  {"graded_learn_base", model.graded_learn_base},
                  {"graded_monotone", model.graded_monotone},
                  {"graded_norm", model.graded_norm},
                  {"graded_score_power", model.graded_score_power},
                  {"graded_values", model.graded_values},
                  {"graded_embedding", model.graded_embedding},
                  {"graded_ffn", model.graded_ffn},
                  {"graded_folded", model.graded_folded},
                  {"graph_mlp_multiplier", model.graph_mlp_multiplier},
                  {"graph_temperature", model.graph_temperature},
                  {"graph_threshold", model.graph_threshold},
                  {"graph_beta", model.graph_beta},
                  {"graph_topk_fraction", model.graph_topk_fraction},
                  {"gin_sharpening", model.gin_sharpening},
                  {"gin_self_term", model.gin_self_term},
                  {"gin_o_proj", model.gin_o_proj},
                  {"gin_threshold_mode", model.gin_threshold_mode},
                  {"gin_mlp_dropout", model.gin_mlp_dropout},
                  {"pna_adjacency", model.pna_adjacency},
                  {"pna_threshold_mode", model.pna_threshold_mode},
                  {"pna_aggregators", model.pna_aggregators},
                  {"pna_scalers", model.pna_scalers},
                  {"pna_delta", model.pna_delta}};
  out["train"] = {{"optimizer", train.optimizer},
                  {"lr", train.lr},
                  {"weight_decay", train.weight_decay},
                  {"betas", {train.beta1, train.beta2}},
                  {"eps", train.eps},
                  {"momentum", train.momentum},
                  {"warmup_steps", train.warmup_steps},
                  {"schedule", train.schedule},
                  {"min_lr", train.min_lr},
                  {"steps", train.steps},
                  {"batch_size", train.batch_size},
                  {"clip_grad_norm", train.clip_grad_norm},
                  {"grade_lr_scale", train.grade_lr_scale},
                  {"precision", train.precision}};
  out["eval"] = {{"every", eval.every}, {"batches", eval.batches}};
  out["log"] = {{"every", log.every}, {"name", log.name}, {"dir", log.dir}};
  out["seed"] = seed;
  out["device"] = device;
  return out;
}

}  // namespace gradus::experiments
