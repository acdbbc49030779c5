#include "models/checkpoint/checkpoint.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <unordered_map>

#include "core/error.h"
#include "models/io/safetensors.h"

namespace gradus {

namespace {

constexpr const char* kFormatKey = "format";
constexpr const char* kFormatValue = "pt";  // transformers writes and expects it
constexpr const char* kKindKey = "gradus_checkpoint";
constexpr const char* kKindModel = "model";
constexpr const char* kKindTraining = "training_state";
constexpr const char* kOptimizerKey = "gradus_optimizer";
constexpr const char* kGroupsKey = "gradus_optimizer_groups";
constexpr const char* kOptimizerPrefix = "optimizer.";
constexpr const char* kTrainingPrefix = "training.";
constexpr const char* kStepName = "training.step";
constexpr const char* kModelRngName = "training.model_rng";
constexpr const char* kRngPrefix = "training.rng.";

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using Metadata = std::map<std::string, std::string>;

// LlamaConfig keys a checkpoint must carry for load_model to build the model.
const std::vector<std::string>& required_config_keys() {
  static const std::vector<std::string> kKeys = {
      "vocab_size",          "hidden_size",  "intermediate_size", "num_hidden_layers",
      "num_attention_heads", "rms_norm_eps", "rope_theta",        "max_position_embeddings",
      "tie_word_embeddings"};
  return kKeys;
}

// Keys whose values change what the weights compute: a model loading a checkpoint must agree.
// Besides the Llama keys, every option of an attention kind (graded_*, gin_*, pna_*) except its
// dropout rates, which change training only.
const std::vector<std::string>& architecture_keys() {
  static const std::vector<std::string> kKeys = [] {
    std::vector<std::string> keys = {
        "vocab_size",        "hidden_size",         "intermediate_size",
        "num_hidden_layers", "num_attention_heads", "rms_norm_eps",
        "rope_theta",        "tie_word_embeddings", "attention_kind"};
    for (const auto& [key, value] : ModelConfig().to_map()) {
      const bool kind_option = key.rfind("graded_", 0) == 0 || key.rfind("gin_", 0) == 0 ||
                               key.rfind("pna_", 0) == 0;
      if (kind_option && key.find("dropout") == std::string::npos) keys.push_back(key);
    }
    return keys;
  }();
  return kKeys;
}

const std::set<std::string>& config_keys() {
  static const std::set<std::string> kKeys = [] {
    std::set<std::string> keys;
    for (const auto& [k, v] : ModelConfig().to_map()) keys.insert(k);
    return keys;
  }();
  return kKeys;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

std::string quoted(const std::string& path) { return fmt::format("'{}'", path); }

// ---- metadata ----

void add_extra_metadata(Metadata& meta, const Metadata& extra, const char* who,
                        const std::string& path) {
  for (const auto& [key, value] : extra) {
    const bool reserved = config_keys().count(key) != 0 || key == kFormatKey ||
                          starts_with(key, "gradus_") || key == "__metadata__";
    GRADUS_CHECK(!reserved, who,
                 "{}: extra metadata key '{}' is one the checkpoint writes itself (the config "
                 "keys, 'format' and 'gradus_*' are reserved)",
                 quoted(path), key);
    meta[key] = value;
  }
}

Metadata base_metadata(const DecoderLM& model, const char* kind) {
  Metadata meta = model.config().to_map();
  meta[kFormatKey] = kFormatValue;
  meta[kKindKey] = kind;
  return meta;
}

Metadata extra_metadata_of(const Metadata& meta) {
  Metadata out;
  for (const auto& [key, value] : meta)
    if (config_keys().count(key) == 0 && key != kFormatKey && !starts_with(key, "gradus_"))
      out[key] = value;
  return out;
}

// The config keys present in `meta`, parsed and validated (errors name the file).
ModelConfig parse_config(const Metadata& meta, const char* who, const std::string& path) {
  Metadata keys;
  for (const auto& [key, value] : meta)
    if (config_keys().count(key)) keys[key] = value;
  try {
    return ModelConfig::from_map(keys, /*allow_unknown=*/false);
  } catch (const Error& e) {
    GRADUS_FAIL(who, "{}: the model configuration in the metadata is invalid: {}", quoted(path),
                e.what());
  }
}

ModelConfig config_from_metadata(const Metadata& meta, const char* who, const std::string& path) {
  std::vector<std::string> missing;
  for (const std::string& key : required_config_keys())
    if (!meta.count(key)) missing.push_back(key);
  GRADUS_CHECK(
      missing.empty(), who,
      "{}: the metadata lacks the model configuration key{} {} (a Gradus checkpoint "
      "carries every LlamaConfig key; found keys: {})",
      quoted(path), missing.size() == 1 ? "" : "s", fmt::join(missing, ", "),
      meta.empty() ? std::string("none") : [&] {
        std::vector<std::string> found;
        for (const auto& [k, v] : meta) found.push_back(k);
        return fmt::format("{}", fmt::join(found, ", "));
      }());
  return parse_config(meta, who, path);
}

// "hidden_size is 64 in the file, 32 in the model" for each architecture key present in `meta`
// whose value differs from the model's.
std::vector<std::string> config_mismatches(const Metadata& meta, const ModelConfig& model_config,
                                           const char* who, const std::string& path) {
  bool any = false;
  for (const std::string& key : architecture_keys()) any = any || meta.count(key);
  if (!any) return {};  // weights without a Gradus/Llama configuration: the tensors decide
  const Metadata file = parse_config(meta, who, path).to_map();
  const Metadata mine = model_config.to_map();
  std::vector<std::string> out;
  for (const std::string& key : architecture_keys())
    if (meta.count(key) && file.at(key) != mine.at(key))
      out.push_back(fmt::format("config mismatch: {} is {} in the file, {} in the model", key,
                                file.at(key), mine.at(key)));
  return out;
}

// ---- tensors ----

std::string shape_text(const Shape& shape) { return fmt::format("({})", fmt::join(shape, ", ")); }

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  if (a.device().is_cpu() && b.device().is_cpu()) {
    const Tensor ca = raw_contiguous(a), cb = raw_contiguous(b);
    return std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
  }
  return a.to_vector() == b.to_vector();
}

// What a load will copy, decided (and checked) before anything is written.
struct LoadPlan {
  std::vector<std::pair<Tensor, Tensor>> copies;  // (parameter, source)
};

// Matches `tensors` against module's parameters. Every problem (plus `extra_problems`) goes into
// one error naming `source`.
LoadPlan plan_load(const Module& module, const NamedTensors& tensors, const std::string& source,
                   const char* who, std::vector<std::string> problems = {}) {
  const NamedTensors canonical = module.named_parameters(true);
  std::unordered_map<std::string, Tensor> params;
  std::unordered_map<const TensorImpl*, std::string> name_of;
  for (const auto& [name, t] : canonical) {
    params.emplace(name, t);
    name_of.emplace(t.impl_ptr().get(), name);
  }
  // A tied parameter's second name (lm_head.weight) -> its first (model.embed_tokens.weight).
  std::unordered_map<std::string, std::string> alias_of;
  for (const auto& [name, t] : module.named_parameters(false))
    if (!params.count(name)) alias_of.emplace(name, name_of.at(t.impl_ptr().get()));

  std::unordered_map<std::string, Tensor> file;
  std::vector<std::string> missing, unexpected, shape_bad, dtype_bad, duplicate;
  for (const auto& [name, t] : tensors) {
    if (!file.emplace(name, t).second) duplicate.push_back(name);
    GRADUS_CHECK(t.defined(), who, "{}: tensor '{}' is undefined", source, name);
  }

  auto check = [&](const std::string& name, const Tensor& src, const Tensor& param) {
    bool ok = true;
    if (src.shape() != param.shape()) {
      shape_bad.push_back(fmt::format("shape mismatch: {} is {} in the file, {} in the model", name,
                                      shape_text(src.shape()), shape_text(param.shape())));
      ok = false;
    }
    if (src.dtype() != param.dtype()) {
      dtype_bad.push_back(fmt::format("dtype mismatch: {} is {} in the file, {} in the model", name,
                                      dtype_name(src.dtype()), dtype_name(param.dtype())));
      ok = false;
    }
    return ok;
  };

  LoadPlan plan;
  for (const auto& [name, param] : canonical) {
    std::string from = name;
    if (!file.count(name)) {
      // A file may hold a tied weight only under its second name.
      from.clear();
      for (const auto& [alias, target] : alias_of)
        if (target == name && file.count(alias)) from = alias;
    }
    if (from.empty()) {
      missing.push_back(fmt::format("{} {}", name, shape_text(param.shape())));
      continue;
    }
    if (check(from, file.at(from), param)) plan.copies.emplace_back(param, file.at(from));
  }
  for (const auto& [name, t] : tensors) {
    if (params.count(name)) continue;
    auto alias = alias_of.find(name);
    if (alias == alias_of.end()) {
      unexpected.push_back(
          fmt::format("{} {} {}", name, dtype_name(t.dtype()), shape_text(t.shape())));
      continue;
    }
    auto target = file.find(alias->second);
    if (target != file.end() && !same_bits(t, target->second))
      problems.push_back(fmt::format(
          "tied weight differs: {} is tied to {} in the model, but the file holds different "
          "values under the two names",
          name, alias->second));
  }

  std::vector<std::string> lines;
  if (!missing.empty())
    lines.push_back(
        fmt::format("missing from the file ({}): {}", missing.size(), fmt::join(missing, ", ")));
  if (!unexpected.empty())
    lines.push_back(fmt::format("not parameters of the model ({}): {}", unexpected.size(),
                                fmt::join(unexpected, ", ")));
  if (!duplicate.empty())
    lines.push_back(fmt::format("given more than once: {}", fmt::join(duplicate, ", ")));
  lines.insert(lines.end(), shape_bad.begin(), shape_bad.end());
  lines.insert(lines.end(), dtype_bad.begin(), dtype_bad.end());
  lines.insert(lines.end(), problems.begin(), problems.end());
  const size_t count = missing.size() + unexpected.size() + duplicate.size() + shape_bad.size() +
                       dtype_bad.size() + problems.size();
  GRADUS_CHECK(count == 0, who, "{} does not match the model ({} problem{}):\n  {}", source, count,
               count == 1 ? "" : "s", fmt::join(lines, "\n  "));
  return plan;
}

void apply(const LoadPlan& plan) {
  for (const auto& [param, src] : plan.copies) raw_copy_(param, src);
}

// A model checkpoint's weights: a training-state file's optimizer.* and training.* tensors are
// not weights.
NamedTensors weights_of(const SafetensorsFile& file) {
  auto kind = file.metadata.find(kKindKey);
  if (kind == file.metadata.end() || kind->second != kKindTraining) return file.tensors;
  NamedTensors out;
  for (const auto& [name, t] : file.tensors)
    if (!starts_with(name, kOptimizerPrefix) && !starts_with(name, kTrainingPrefix))
      out.emplace_back(name, t);
  return out;
}

std::string checkpoint_source(const std::string& path) {
  return fmt::format("checkpoint {}", quoted(path));
}

// ---- training-state pieces ----

Tensor i64_scalar(int64_t v) {
  Tensor t = Tensor::empty({}, DType::i64);
  *t.data<int64_t>() = v;
  return t;
}

Tensor generator_tensor(const Generator& g) {
  Tensor t = Tensor::empty({2}, DType::i64);
  t.data<int64_t>()[0] = std::bit_cast<int64_t>(g.seed);
  t.data<int64_t>()[1] = std::bit_cast<int64_t>(g.offset);
  return t;
}

Generator read_generator(const Tensor& t, const std::string& name, const char* who,
                         const std::string& path) {
  GRADUS_CHECK(t.dtype() == DType::i64 && t.shape() == Shape{2}, who,
               "{}: tensor '{}' must be i64 (2) holding a generator's (seed, offset), found {}",
               quoted(path), name, t.describe());
  const Tensor c = raw_contiguous(t);
  return Generator(std::bit_cast<uint64_t>(c.data<int64_t>()[0]),
                   std::bit_cast<uint64_t>(c.data<int64_t>()[1]));
}

bool valid_generator_name(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

// The model name of every optimiser parameter, group by group.
std::vector<std::vector<std::string>> optimizer_param_names(const DecoderLM& model,
                                                            const Optimizer& optimizer,
                                                            const char* who,
                                                            const std::string& path) {
  std::unordered_map<const TensorImpl*, std::string> name_of;
  for (const auto& [name, t] : model.named_parameters()) name_of.emplace(t.impl_ptr().get(), name);
  std::vector<std::vector<std::string>> out;
  const auto& groups = optimizer.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    out.emplace_back();
    for (size_t p = 0; p < groups[g].params.size(); ++p) {
      auto it = name_of.find(groups[g].params[p].impl_ptr().get());
      GRADUS_CHECK(it != name_of.end(), who,
                   "{}: parameter {} of {} group {} ({}) is not a parameter of the model",
                   quoted(path), p, optimizer.name(), g, groups[g].params[p].describe());
      out.back().push_back(it->second);
    }
  }
  return out;
}

}  // namespace

// ------------------------------------------------------------------------------------ model
// weights

void save_model(const std::string& path, const DecoderLM& model,
                const std::map<std::string, std::string>& extra_metadata) {
  Metadata meta = base_metadata(model, kKindModel);
  add_extra_metadata(meta, extra_metadata, "save_model", path);
  // named_parameters() lists a tied head once, under model.embed_tokens.weight: lm_head.weight is
  // left out, as transformers does for tied Llama checkpoints.
  save_safetensors(path, model.named_parameters(), meta);
}

ModelConfig read_model_config(const std::string& path) {
  return config_from_metadata(load_safetensors(path).metadata, "read_model_config", path);
}

std::shared_ptr<DecoderLM> load_model(const std::string& path) {
  const char* who = "load_model";
  const SafetensorsFile file = load_safetensors(path);
  const ModelConfig config = config_from_metadata(file.metadata, who, path);
  const NamedTensors weights = weights_of(file);
  // The model takes the dtype of the checkpoint's embedding table; any tensor in another dtype is
  // then reported as a mismatch.
  DType dtype = DType::f32;
  for (const auto& [name, t] : weights)
    if (name == "model.embed_tokens.weight" && is_floating(t.dtype())) dtype = t.dtype();
  Generator init(0);
  auto model = std::make_shared<DecoderLM>(config, init);
  if (dtype != DType::f32) model->to(dtype);
  apply(plan_load(*model, weights, checkpoint_source(path), who));
  model->eval();
  return model;
}

void load_into(const std::string& path, DecoderLM& model) {
  const char* who = "load_into";
  const SafetensorsFile file = load_safetensors(path);
  apply(plan_load(model, weights_of(file), checkpoint_source(path), who,
                  config_mismatches(file.metadata, model.config(), who, path)));
}

void load_parameters(Module& module, const std::vector<std::pair<std::string, Tensor>>& tensors,
                     const std::string& source) {
  apply(plan_load(module, tensors, source, "load_parameters"));
}

// ----------------------------------------------------------------------------------- training
// state

void save_training_state(const std::string& path, const DecoderLM& model,
                         const Optimizer& optimizer, const TrainingState& state) {
  const char* who = "save_training_state";
  Metadata meta = base_metadata(model, kKindTraining);
  add_extra_metadata(meta, state.metadata, who, path);

  const auto names = optimizer_param_names(model, optimizer, who, path);
  nlohmann::json groups = nlohmann::json::array();
  for (size_t g = 0; g < names.size(); ++g) {
    const ParamGroup& group = optimizer.param_groups()[g];
    groups.push_back({{"name", group.name},
                      {"lr", group.lr},
                      {"weight_decay", group.weight_decay},
                      {"params", names[g]}});
  }
  meta[kOptimizerKey] = optimizer.name();
  meta[kGroupsKey] = groups.dump();

  NamedTensors tensors = model.named_parameters();
  for (const auto& [name, t] : optimizer.state_tensors())
    tensors.emplace_back(kOptimizerPrefix + name, t);
  tensors.emplace_back(kStepName, i64_scalar(state.step));
  GRADUS_CHECK(model.rng() != nullptr, who, "{}: the model has no dropout generator", quoted(path));
  tensors.emplace_back(kModelRngName, generator_tensor(*model.rng()));
  for (const auto& [name, gen] : state.generators) {
    GRADUS_CHECK(valid_generator_name(name), who,
                 "{}: generator name '{}' must be non-empty and use only letters, digits, '_' "
                 "and '-'",
                 quoted(path), name);
    tensors.emplace_back(kRngPrefix + name, generator_tensor(gen));
  }
  save_safetensors(path, tensors, meta);
}

TrainingState load_training_state(const std::string& path, DecoderLM& model, Optimizer& optimizer) {
  const char* who = "load_training_state";
  const SafetensorsFile file = load_safetensors(path);
  const Metadata& meta = file.metadata;
  auto kind = meta.find(kKindKey);
  GRADUS_CHECK(kind != meta.end() && kind->second == kKindTraining, who,
               "{} is not a training state (its metadata has {} = '{}'; save_training_state "
               "writes '{}')",
               quoted(path), kKindKey, kind == meta.end() ? std::string("(none)") : kind->second,
               kKindTraining);

  // Sort the tensors into weights, optimiser state and training scalars.
  NamedTensors weights, optim;
  TrainingState state;
  std::optional<Generator> model_rng;
  bool have_step = false;
  for (const auto& [name, t] : file.tensors) {
    if (starts_with(name, kOptimizerPrefix)) {
      optim.emplace_back(name.substr(std::strlen(kOptimizerPrefix)), t);
    } else if (name == kStepName) {
      GRADUS_CHECK(t.dtype() == DType::i64 && t.dim() == 0, who,
                   "{}: tensor '{}' must be a rank-0 i64, found {}", quoted(path), name,
                   t.describe());
      state.step = *t.data<int64_t>();
      have_step = true;
    } else if (name == kModelRngName) {
      model_rng = read_generator(t, name, who, path);
    } else if (starts_with(name, kRngPrefix)) {
      state.generators.emplace(name.substr(std::strlen(kRngPrefix)),
                               read_generator(t, name, who, path));
    } else if (starts_with(name, kTrainingPrefix)) {
      GRADUS_FAIL(who, "{}: unknown tensor '{}' (expected {}, {} or {}<name>)", quoted(path), name,
                  kStepName, kModelRngName, kRngPrefix);
    } else {
      weights.emplace_back(name, t);
    }
  }
  GRADUS_CHECK(have_step, who, "{}: tensor '{}' is missing", quoted(path), kStepName);
  GRADUS_CHECK(model_rng.has_value(), who, "{}: tensor '{}' is missing", quoted(path),
               kModelRngName);

  // The weights (checked, not yet copied).
  const LoadPlan plan = plan_load(model, weights, checkpoint_source(path), who,
                                  config_mismatches(meta, model.config(), who, path));

  // The optimiser: same kind, same groups holding the same parameters in the same order.
  auto saved_name = meta.find(kOptimizerKey);
  GRADUS_CHECK(saved_name != meta.end() && meta.count(kGroupsKey), who,
               "{}: the metadata lacks '{}' or '{}'", quoted(path), kOptimizerKey, kGroupsKey);
  GRADUS_CHECK(saved_name->second == optimizer.name(), who,
               "{}: the state is of a {} optimiser, but a {} was given", quoted(path),
               saved_name->second, optimizer.name());
  nlohmann::json groups;
  try {
    groups = nlohmann::json::parse(meta.at(kGroupsKey));
  } catch (const nlohmann::json::exception& e) {
    GRADUS_FAIL(who, "{}: metadata '{}' is not valid JSON: {}", quoted(path), kGroupsKey, e.what());
  }
  const auto names = optimizer_param_names(model, optimizer, who, path);
  GRADUS_CHECK(groups.is_array() && groups.size() == names.size(), who,
               "{}: the state has {} parameter groups, the optimiser {}", quoted(path),
               groups.is_array() ? groups.size() : 0, names.size());
  std::vector<std::pair<double, double>> hyper;  // (lr, weight_decay) per group
  for (size_t g = 0; g < names.size(); ++g) {
    const nlohmann::json& group = groups[g];
    GRADUS_CHECK(group.is_object() && group.contains("params") && group["params"].is_array() &&
                     group.contains("lr") && group["lr"].is_number() &&
                     group.contains("weight_decay") && group["weight_decay"].is_number(),
                 who, "{}: metadata '{}' group {} lacks params, lr or weight_decay", quoted(path),
                 kGroupsKey, g);
    std::vector<std::string> saved;
    for (const auto& n : group["params"])
      saved.push_back(n.is_string() ? n.get<std::string>() : "?");
    if (saved != names[g]) {
      size_t i = 0;
      while (i < saved.size() && i < names[g].size() && saved[i] == names[g][i]) ++i;
      GRADUS_FAIL(who,
                  "{}: optimiser group {} holds {} parameters in the state and {} here; they "
                  "first differ at position {}: '{}' in the state, '{}' here",
                  quoted(path), g, saved.size(), names[g].size(), i,
                  i < saved.size() ? saved[i] : "(end)",
                  i < names[g].size() ? names[g][i] : "(end)");
    }
    hyper.emplace_back(group["lr"].get<double>(), group["weight_decay"].get<double>());
  }

  // Everything checked: now modify. load_state_tensors validates before it replaces the state.
  try {
    optimizer.load_state_tensors(optim);
  } catch (const Error& e) {
    GRADUS_FAIL(who, "{}: the optimiser state does not load: {}", quoted(path), e.what());
  }
  for (size_t g = 0; g < hyper.size(); ++g) {
    optimizer.param_groups()[g].lr = hyper[g].first;
    optimizer.param_groups()[g].weight_decay = hyper[g].second;
  }
  apply(plan);
  if (model.rng())
    *model.rng() = *model_rng;
  else
    model.set_rng(std::make_shared<Generator>(*model_rng));
  state.metadata = extra_metadata_of(meta);
  return state;
}

}  // namespace gradus
