#include "experiments/lib/graded_experiment.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <ostream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "experiments/lib/commands.h"
#include "experiments/lib/descriptor.h"
#include "experiments/lib/graded_tasks.h"
#include "experiments/lib/lm_job.h"
#include "experiments/lib/run_dir.h"
#include "kernels/backend_info.h"
#include "models/graded/graded_attention.h"
#include "models/graded/grading.h"
#include "models/io/atomic_file.h"

namespace gradus::experiments {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::vector<std::string> kTasks = {"polynomial", "multiscale", "brackets", "lm"};

// ---- validation ---------------------------------------------------------------------------------

std::string shown(const json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

// Collects every problem of a document, each with its JSON path.
struct Checker {
  std::vector<std::string> problems;
  void add(const std::string& path, const std::string& message) {
    problems.push_back(fmt::format("{}: {}", path, message));
  }
  // Unknown keys of `obj` (at `path`) are problems, with the closest allowed key.
  void keys(const json& obj, const std::string& path, const std::vector<std::string>& allowed) {
    for (const auto& [k, v] : obj.items()) {
      if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) continue;
      std::string near = closest_match(k, allowed);
      add(path.empty() ? k : path + "." + k,
          near.empty() ? fmt::format("unknown key; the keys here are: {}", fmt::join(allowed, ", "))
                       : fmt::format("unknown key (did you mean \"{}\"?)", near));
    }
  }
  const json* at(const json& obj, const std::string& key) {
    auto it = obj.find(key);
    return it == obj.end() ? nullptr : &*it;
  }
  int64_t integer(const json& obj, const std::string& key, const std::string& path, int64_t def,
                  int64_t lo) {
    const json* v = at(obj, key);
    if (!v) return def;
    if (v->is_number() && std::floor(v->get<double>()) == v->get<double>() &&
        v->get<double>() >= static_cast<double>(lo))
      return static_cast<int64_t>(v->get<double>());
    add(path, fmt::format("expected an integer >= {}, found {}", lo, shown(*v)));
    return def;
  }
  double number(const json& obj, const std::string& key, const std::string& path, double def,
                double lo, bool open) {
    const json* v = at(obj, key);
    if (!v) return def;
    if (v->is_number() && std::isfinite(v->get<double>()) &&
        (open ? v->get<double>() > lo : v->get<double>() >= lo))
      return v->get<double>();
    add(path, fmt::format("expected a number {} {}, found {}", open ? ">" : ">=", lo, shown(*v)));
    return def;
  }
  bool boolean(const json& obj, const std::string& key, const std::string& path, bool def) {
    const json* v = at(obj, key);
    if (!v) return def;
    if (v->is_boolean()) return v->get<bool>();
    add(path, fmt::format("expected true or false, found {}", shown(*v)));
    return def;
  }
  std::string choice(const json& obj, const std::string& key, const std::string& path,
                     const std::string& def, const std::vector<std::string>& choices) {
    const json* v = at(obj, key);
    if (!v) return def;
    if (v->is_string() &&
        std::find(choices.begin(), choices.end(), v->get<std::string>()) != choices.end())
      return v->get<std::string>();
    std::string near = v->is_string() ? closest_match(v->get<std::string>(), choices) : "";
    add(path,
        fmt::format("expected one of \"{}\", found {}{}", fmt::join(choices, "\", \""), shown(*v),
                    near.empty() ? "" : fmt::format(" (did you mean \"{}\"?)", near)));
    return def;
  }
  std::string string(const json& obj, const std::string& key, const std::string& path,
                     const std::string& def) {
    const json* v = at(obj, key);
    if (!v) return def;
    if (v->is_string() && !v->get<std::string>().empty()) return v->get<std::string>();
    add(path, fmt::format("expected a non-empty string, found {}", shown(*v)));
    return def;
  }
  std::vector<double> numbers(const json& obj, const std::string& key, const std::string& path,
                              std::vector<double> def, double lo) {
    const json* v = at(obj, key);
    if (!v) return def;
    bool ok = v->is_array() && !v->empty();
    std::vector<double> out;
    for (size_t i = 0; ok && i < v->size(); ++i) {
      ok = (*v)[i].is_number() && (*v)[i].get<double>() >= lo;
      if (ok) out.push_back((*v)[i].get<double>());
    }
    if (ok) return out;
    add(path, fmt::format("expected a non-empty array of numbers >= {}, found {}", lo, shown(*v)));
    return def;
  }
  const json& object(const json& obj, const std::string& key, const std::string& path) {
    static const json kEmpty = json::object();
    const json* v = at(obj, key);
    if (!v) return kEmpty;
    if (v->is_object()) return *v;
    add(path, fmt::format("expected an object, found {}", shown(*v)));
    return kEmpty;
  }
  std::vector<std::string> strings(const json& obj, const std::string& key,
                                   const std::string& path) {
    const json* v = at(obj, key);
    if (!v) return {};
    std::vector<std::string> out;
    bool ok = v->is_array();
    for (size_t i = 0; ok && i < v->size(); ++i) {
      ok = (*v)[i].is_string();
      if (ok) out.push_back((*v)[i].get<std::string>());
    }
    if (!ok) add(path, fmt::format("expected an array of strings, found {}", shown(*v)));
    return out;
  }
};

struct Variant {
  std::string name;
  ModelConfig model;             // multiscale, brackets
  PolynomialVariant polynomial;  // polynomial
  LossSpec loss;                 // multiscale, brackets
  std::vector<std::string> set;  // lm: --set overrides
};

struct Experiment {
  std::string name, task, out = "runs/graded";
  std::vector<uint64_t> seeds = {0, 1, 2};
  TaskTraining training;
  PolynomialTask polynomial;
  MultiscaleTask multiscale;
  BracketsTask brackets;
  std::string lm_descriptor;        // lm: the gradus run descriptor
  std::vector<std::string> lm_set;  // lm: overrides of every variant
  std::vector<Variant> variants;
};

// A JSON scalar as ModelConfig::from_map reads it.
std::string config_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number_integer() || v.is_number_unsigned()) return v.dump();
  if (v.is_number()) {
    double d = v.get<double>();
    if (std::floor(d) == d && std::fabs(d) < 1e15)
      return fmt::format("{}", static_cast<int64_t>(d));
    return fmt::format("{}", d);
  }
  return v.dump();
}

// The task's model: ModelConfig defaults, then the experiment's "model", then the variant's.
ModelConfig model_config(Checker& c, const json& base, const json& over, const std::string& path) {
  std::map<std::string, std::string> map;
  for (const json* obj : {&base, &over})
    for (const auto& [k, v] : obj->items()) map[k] = config_text(v);
  try {
    ModelConfig m = ModelConfig::from_map(map);
    // Graded kinds check their options when built; check them now, before any run.
    if (m.attention_kind == "lgt" || m.attention_kind == "egt")
      graded::validate_graded_config(m, m.attention_kind == "lgt"
                                            ? graded::GradingKind::linear
                                            : graded::GradingKind::exponential);
    return m;
  } catch (const Error& e) {
    c.add(path, e.what());
  }
  return ModelConfig();
}

Experiment parse_experiment(const json& doc, const std::string& source,
                            const std::string& default_name) {
  Checker c;
  Experiment e;
  if (!doc.is_object()) {
    c.add("(document)", fmt::format("expected a JSON object, found {}", shown(doc)));
    throw Error(fmt::format("invalid experiment {}:\n  {}", source, c.problems[0]));
  }
  c.keys(doc, "",
         {"name", "task", "seeds", "train", "task_options", "model", "variants", "descriptor",
          "set", "out"});
  e.name = c.string(doc, "name", "name", default_name);
  if (!c.at(doc, "task"))
    c.add("task", fmt::format("missing: one of \"{}\"", fmt::join(kTasks, "\", \"")));
  e.task = c.choice(doc, "task", "task", "", kTasks);
  e.out = c.string(doc, "out", "out", e.out);
  if (const json* s = c.at(doc, "seeds")) {
    bool ok = s->is_array() && !s->empty();
    std::vector<uint64_t> seeds;
    for (size_t i = 0; ok && i < s->size(); ++i) {
      ok = (*s)[i].is_number_unsigned() ||
           ((*s)[i].is_number_integer() && (*s)[i].get<int64_t>() >= 0);
      if (ok) seeds.push_back((*s)[i].get<uint64_t>());
    }
    if (ok)
      e.seeds = seeds;
    else
      c.add("seeds",
            fmt::format("expected a non-empty array of integers >= 0, found {}", shown(*s)));
  }
  const bool lm = e.task == "lm", poly = e.task == "polynomial";
  const bool sequence = e.task == "multiscale" || e.task == "brackets";
  auto only = [&](const json& obj, const std::string& key, const std::string& path, bool allowed,
                  const char* who) {
    if (c.at(obj, key) && !allowed) c.add(path, fmt::format("only {} has this key", who));
  };
  only(doc, "descriptor", "descriptor", lm, "the lm task");
  only(doc, "set", "set", lm, "the lm task");
  only(doc, "train", "train", !lm, "a synthetic task (the lm task trains as its descriptor says)");
  only(doc, "task_options", "task_options", !lm, "a synthetic task");
  only(doc, "model", "model", sequence, "the multiscale and brackets tasks");

  // train
  const json& tr = c.object(doc, "train", "train");
  c.keys(tr, "train",
         {"steps", "batch_size", "lr", "weight_decay", "grade_lr_scale", "clip_grad_norm",
          "warmup_steps"});
  TaskTraining& t = e.training;
  t.steps = c.integer(tr, "steps", "train.steps", t.steps, 1);
  t.batch_size = c.integer(tr, "batch_size", "train.batch_size", t.batch_size, 1);
  t.lr = c.number(tr, "lr", "train.lr", t.lr, 0, true);
  t.weight_decay = c.number(tr, "weight_decay", "train.weight_decay", t.weight_decay, 0, false);
  t.grade_lr_scale =
      c.number(tr, "grade_lr_scale", "train.grade_lr_scale", t.grade_lr_scale, 0, false);
  t.clip_grad_norm =
      c.number(tr, "clip_grad_norm", "train.clip_grad_norm", t.clip_grad_norm, 0, false);
  t.warmup_steps = c.integer(tr, "warmup_steps", "train.warmup_steps", t.warmup_steps, 0);
  if (t.warmup_steps > t.steps)
    c.add("train.warmup_steps",
          fmt::format("expected at most train.steps ({}), found {}", t.steps, t.warmup_steps));

  // task_options
  const json& to = c.object(doc, "task_options", "task_options");
  if (poly) {
    PolynomialTask& p = e.polynomial;
    c.keys(to, "task_options",
           {"weights", "degree", "spread", "train_size", "test_size", "hidden", "data_seed"});
    p.weights = c.numbers(to, "weights", "task_options.weights", p.weights, 1e-9);
    p.degree = c.integer(to, "degree", "task_options.degree", p.degree, 1);
    p.spread = c.number(to, "spread", "task_options.spread", p.spread, 1, false);
    p.train_size = c.integer(to, "train_size", "task_options.train_size", p.train_size, 1);
    p.test_size = c.integer(to, "test_size", "task_options.test_size", p.test_size, 1);
    p.hidden = c.integer(to, "hidden", "task_options.hidden", p.hidden, 1);
    p.data_seed = static_cast<uint64_t>(c.integer(to, "data_seed", "task_options.data_seed", 1, 0));
  } else if (e.task == "multiscale") {
    MultiscaleTask& m = e.multiscale;
    c.keys(to, "task_options", {"scales", "context", "noise", "test_sequences", "data_seed"});
    m.scales = c.numbers(to, "scales", "task_options.scales", m.scales, 0);
    m.context = c.integer(to, "context", "task_options.context", m.context, 1);
    m.noise = c.number(to, "noise", "task_options.noise", m.noise, 0, false);
    m.test_sequences =
        c.integer(to, "test_sequences", "task_options.test_sequences", m.test_sequences, 1);
    m.data_seed = static_cast<uint64_t>(c.integer(to, "data_seed", "task_options.data_seed", 1, 0));
  } else if (e.task == "brackets") {
    BracketsTask& b = e.brackets;
    c.keys(to, "task_options",
           {"length", "max_depth", "types", "open_prob", "test_sequences", "data_seed"});
    b.length = c.integer(to, "length", "task_options.length", b.length, 1);
    b.max_depth = c.integer(to, "max_depth", "task_options.max_depth", b.max_depth, 1);
    b.types = c.integer(to, "types", "task_options.types", b.types, 1);
    b.open_prob = c.number(to, "open_prob", "task_options.open_prob", b.open_prob, 0, true);
    if (b.open_prob >= 1)
      c.add("task_options.open_prob",
            fmt::format("expected a number in (0, 1), found {}", b.open_prob));
    b.test_sequences =
        c.integer(to, "test_sequences", "task_options.test_sequences", b.test_sequences, 1);
    b.data_seed = static_cast<uint64_t>(c.integer(to, "data_seed", "task_options.data_seed", 1, 0));
  }
  if (lm) {
    if (!c.at(doc, "descriptor"))
      c.add("descriptor", "missing: the lm task names the `gradus run` descriptor of its runs");
    e.lm_descriptor = c.string(doc, "descriptor", "descriptor", "");
    e.lm_set = c.strings(doc, "set", "set");
  }
  const json& base_model = c.object(doc, "model", "model");

  // variants
  const json* vs = c.at(doc, "variants");
  if (!vs || !vs->is_array() || vs->empty()) {
    c.add("variants",
          vs ? fmt::format("expected a non-empty array of objects, found {}", shown(*vs))
             : "missing: the variants to compare, e.g. [{\"name\": \"baseline\"}]");
  } else {
    std::set<std::string> names;
    for (size_t i = 0; i < vs->size(); ++i) {
      const std::string path = fmt::format("variants[{}]", i);
      const json& v = (*vs)[i];
      if (!v.is_object()) {
        c.add(path, fmt::format("expected an object, found {}", shown(v)));
        continue;
      }
      c.keys(v, path, {"name", "model", "grading", "loss", "set"});
      Variant var;
      if (!c.at(v, "name")) c.add(path + ".name", "missing: every variant has a name");
      var.name = c.string(v, "name", path + ".name", fmt::format("variant{}", i));
      if (!names.insert(var.name).second)
        c.add(path + ".name", fmt::format("\"{}\" names two variants", var.name));
      only(v, "model", path + ".model", sequence, "the multiscale and brackets tasks");
      only(v, "grading", path + ".grading", poly, "the polynomial task");
      only(v, "loss", path + ".loss", sequence, "the multiscale and brackets tasks");
      only(v, "set", path + ".set", lm, "the lm task");
      if (sequence) {
        var.model =
            model_config(c, base_model, c.object(v, "model", path + ".model"), path + ".model");
        const json& l = c.object(v, "loss", path + ".loss");
        const std::string lp = path + ".loss";
        c.keys(l, lp, {"graded", "kind", "base", "learnable", "detach", "prior_weight"});
        var.loss.graded = c.boolean(l, "graded", lp + ".graded", false);
        var.loss.kind = c.choice(l, "kind", lp + ".kind", "lgt", {"lgt", "egt"});
        var.loss.base = c.number(l, "base", lp + ".base", 2.0, 1, false);
        var.loss.learnable = c.boolean(l, "learnable", lp + ".learnable", false);
        var.loss.detach = c.boolean(l, "detach", lp + ".detach", true);
        var.loss.prior_weight = c.number(l, "prior_weight", lp + ".prior_weight", 0, 0, false);
      }
      if (poly) {
        const json& g = c.object(v, "grading", path + ".grading");
        const std::string gp = path + ".grading";
        c.keys(g, gp, {"kind", "model", "learnable", "q_init", "base", "folded"});
        PolynomialVariant& pv = var.polynomial;
        pv.grading = c.choice(g, "kind", gp + ".kind", "none", {"none", "lgt", "egt"});
        pv.model = c.choice(g, "model", gp + ".model", "mlp", {"mlp", "gauge"});
        pv.learnable = c.boolean(g, "learnable", gp + ".learnable", false);
        pv.base = c.number(g, "base", gp + ".base", 2.0, 1, false);
        pv.folded = c.boolean(g, "folded", gp + ".folded", false);
        pv.q_init = c.numbers(g, "q_init", gp + ".q_init", {}, 0);
        const size_t d = e.polynomial.weights.size();
        if (pv.grading != "none" && pv.q_init.empty())
          pv.q_init.assign(d, pv.grading == "lgt" ? 1.0 : 0.0);
        if (pv.grading != "none" && pv.q_init.size() != d)
          c.add(gp + ".q_init", fmt::format("expected {} grades (one per input, as "
                                            "task_options.weights), found {}",
                                            d, pv.q_init.size()));
        if (pv.model == "gauge" && pv.grading == "none")
          c.add(gp + ".kind", "the gauge model needs grades: expected \"lgt\" or \"egt\"");
        if (pv.grading == "none" && (pv.learnable || pv.folded))
          c.add(gp, "learnable and folded need a grading kind (\"lgt\" or \"egt\")");
        if (pv.grading != "none" && pv.q_init.size() == d) {
          try {  // the grading's own checks (ranges, learnable start above q_min)
            graded::GradingOptions o;
            o.kind = pv.grading == "egt" ? graded::GradingKind::exponential
                                         : graded::GradingKind::linear;
            o.dim = static_cast<int64_t>(d);
            o.init_values = pv.q_init;
            o.learnable = pv.learnable;
            o.base = pv.base;
            o.q_max = 32;
            o.validate(gp);
          } catch (const Error& err) {
            c.add(gp, err.what());
          }
        }
      }
      if (lm) var.set = c.strings(v, "set", path + ".set");
      e.variants.push_back(std::move(var));
    }
  }
  if (lm && !e.lm_descriptor.empty() && c.problems.empty()) {
    // Every run's descriptor must resolve now, not after the first runs.
    for (size_t i = 0; i < e.variants.size(); ++i) {
      std::vector<std::string> o = e.lm_set;
      o.insert(o.end(), e.variants[i].set.begin(), e.variants[i].set.end());
      try {
        load_descriptor(e.lm_descriptor, o);
      } catch (const Error& err) {
        c.add(fmt::format("variants[{}].set", i), err.what());
      }
    }
  }
  if (!c.problems.empty()) {
    std::string text =
        c.problems.size() == 1
            ? fmt::format("invalid experiment {}:", source)
            : fmt::format("invalid experiment {} ({} problems):", source, c.problems.size());
    for (const std::string& p : c.problems) text += "\n  " + p;
    throw Error(text);
  }
  return e;
}

// ---- running ------------------------------------------------------------------------------------

struct Stats {
  double mean = 0, std = 0;
};
Stats stats(const std::vector<double>& v) {
  Stats s;
  for (double x : v) s.mean += x / static_cast<double>(v.size());
  if (v.size() > 1) {
    for (double x : v) s.std += (x - s.mean) * (x - s.mean);
    s.std = std::sqrt(s.std / static_cast<double>(v.size() - 1));  // sample std
  }
  return s;
}

// Means to 4 significant digits, spreads to 2.
std::string format_value(double v, int digits) {
  if (v == 0) return "0";
  return fmt::format("{:.{}g}", v, digits);
}

TaskResult run_lm_variant(const Experiment& e, const Variant& v, uint64_t seed,
                          const std::string& out_dir, const std::string& project_root) {
  LmRunOptions o;
  o.descriptor_path = e.lm_descriptor;
  o.overrides = e.lm_set;
  o.overrides.insert(o.overrides.end(), v.set.begin(), v.set.end());
  o.overrides.push_back(fmt::format("seed={}", seed));
  o.overrides.push_back(fmt::format("log.dir={}", (fs::path(out_dir) / e.name).string()));
  o.overrides.push_back(fmt::format("log.name={}-s{}", v.name, seed));
  o.project_root = project_root;
  std::ostringstream quiet;  // the runs' own progress lines stay out of the table
  LmRunResult r = run_lm(o, quiet);
  TaskResult t;
  t.metrics["val_loss"] = r.summary["final_val_loss"].get<double>();
  t.metrics["val_bpb"] = r.summary["val_bits_per_byte"].get<double>();
  t.metrics["train_loss"] = r.summary["final_train_loss"].get<double>();
  t.metrics["params"] = r.summary["parameters"].get<double>();
  t.metrics["tokens_per_s"] = r.summary["tokens_per_s"].get<double>();
  t.extra["run_dir"] = r.run_dir;
  // The last metrics line carries the learned grades (every grade at the final evaluation).
  std::ifstream metrics(fs::path(r.run_dir) / kMetricsFile);
  std::string line, last;
  while (std::getline(metrics, line))
    if (!line.empty()) last = line;
  if (!last.empty()) {
    json j = json::parse(last);
    if (j.contains("grading")) {
      double k = 1;
      for (const auto& [path, g] : j["grading"].items()) k = std::max(k, g["kappa"].get<double>());
      t.metrics["kappa"] = k;
      t.extra["grading"] = j["grading"];
    }
  }
  return t;
}

}  // namespace

void validate_graded_experiment(const json& doc, const std::string& source) {
  parse_experiment(doc, source, "experiment");
}

json run_graded_experiment(const GradedExperimentOptions& options, std::ostream& out) {
  std::ifstream in(options.descriptor_path, std::ios::binary);
  GRADUS_CHECK(in.good(), "graded-experiment", "cannot read {}: {}", options.descriptor_path,
               std::strerror(errno));
  std::stringstream buffer;
  buffer << in.rdbuf();
  json doc;
  try {
    doc = json::parse(buffer.str(), nullptr, true, /*ignore_comments=*/true);
  } catch (const json::exception& err) {  // parse_error, or out_of_range for 1e999
    GRADUS_FAIL("graded-experiment", "{} is not valid JSON: {}", options.descriptor_path,
                err.what());
  }
  for (const std::string& o : options.overrides) apply_override(doc, o);
  const Experiment e = parse_experiment(doc, options.descriptor_path,
                                        fs::path(options.descriptor_path).stem().string());
  const std::string out_dir = options.out_dir.empty() ? e.out : options.out_dir;

  out << fmt::format("{}: task {}, {} variants x {} seeds\n", e.name, e.task, e.variants.size(),
                     e.seeds.size());
  json result = {{"name", e.name},
                 {"task", e.task},
                 {"seeds", e.seeds},
                 {"descriptor", doc},
                 {"variants", json::array()}};
  std::vector<std::string> metric_names;
  std::vector<std::map<std::string, Stats>> table;
  for (const Variant& v : e.variants) {
    std::map<std::string, std::vector<double>> values;
    json per_seed = json::array();
    out << fmt::format("  {}:", v.name) << std::flush;
    for (uint64_t seed : e.seeds) {
      TaskTraining t = e.training;
      t.seed = seed;
      TaskResult r;
      if (e.task == "polynomial")
        r = run_polynomial(e.polynomial, v.polynomial, t);
      else if (e.task == "multiscale")
        r = run_multiscale(e.multiscale, v.model, v.loss, t);
      else if (e.task == "brackets")
        r = run_brackets(e.brackets, v.model, v.loss, t);
      else
        r = run_lm_variant(e, v, seed, out_dir, options.project_root);
      for (const auto& [k, x] : r.metrics) values[k].push_back(x);
      per_seed.push_back({{"seed", seed}, {"metrics", r.metrics}, {"extra", r.extra}});
      out << "." << std::flush;
    }
    out << "\n";
    json metrics = json::object();
    std::map<std::string, Stats> row;
    for (const auto& [k, xs] : values) {
      Stats s = stats(xs);
      row[k] = s;
      metrics[k] = {{"mean", s.mean}, {"std", s.std}, {"values", xs}};
      if (std::find(metric_names.begin(), metric_names.end(), k) == metric_names.end())
        metric_names.push_back(k);
    }
    table.push_back(row);
    result["variants"].push_back({{"name", v.name}, {"metrics", metrics}, {"seeds", per_seed}});
  }

  // The table: mean +- sample std over the seeds; "-" where a variant has no such metric.
  out << fmt::format("\n{} (mean ± std over {} seeds)\n\n| variant |", e.name, e.seeds.size());
  for (const std::string& m : metric_names) out << " " << m << " |";
  out << "\n|---|";
  for (size_t i = 0; i < metric_names.size(); ++i) out << "---|";
  out << "\n";
  for (size_t i = 0; i < e.variants.size(); ++i) {
    out << "| " << e.variants[i].name << " |";
    for (const std::string& m : metric_names) {
      auto it = table[i].find(m);
      out << " "
          << (it == table[i].end() ? std::string("-")
                                   : fmt::format("{} ± {}", format_value(it->second.mean, 4),
                                                 format_value(it->second.std, 2)))
          << " |";
    }
    out << "\n";
  }
  fs::create_directories(out_dir);
  const std::string path = (fs::path(out_dir) / (e.name + ".json")).string();
  write_text_atomic(path, result.dump(2) + "\n");
  out << "\nwritten " << path << "\n";
  return result;
}

namespace {

int cmd_graded_experiment(const std::vector<std::string>& args) {
  GradedExperimentOptions o;
  int threads = 1;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--threads") {
      GRADUS_CHECK(i + 1 < args.size(), "graded-experiment", "--threads needs a value");
      const std::string& v = args[++i];
      GRADUS_CHECK(
          !v.empty() && v.find_first_not_of("0123456789") == std::string::npos && std::stoi(v) >= 1,
          "graded-experiment", "--threads expects a positive integer, found \"{}\"", v);
      threads = std::stoi(v);
    } else if (a == "--set" || a == "--out") {
      GRADUS_CHECK(i + 1 < args.size(), "graded-experiment", "{} needs a value", a);
      if (a == "--set")
        o.overrides.push_back(args[++i]);
      else
        o.out_dir = args[++i];
    } else if (!a.starts_with("--") && o.descriptor_path.empty()) {
      o.descriptor_path = a;
    } else {
      GRADUS_FAIL("graded-experiment",
                  "unexpected argument \"{}\" (usage: gradus graded-experiment DESCRIPTOR [--set "
                  "path=value ...] [--out DIR] [--threads T])",
                  a);
    }
  }
  GRADUS_CHECK(!o.descriptor_path.empty(), "graded-experiment",
               "no descriptor given (usage: gradus graded-experiment DESCRIPTOR [--set "
               "path=value ...] [--out DIR] [--threads T])");
  // The models are tiny: one thread is fastest, and on a busy machine two threads mostly wait at
  // OpenMP barriers. Results do not depend on the count.
  kernels::set_cpu_threads(threads);
  run_graded_experiment(o, std::cout);
  return 0;
}

const bool kRegistered = register_command(
    {"graded-experiment",
     "graded-experiment DESCRIPTOR [--set path=value ...] [--out DIR] [--threads T]\n"
     "                   an experiment of graded transformers (experiments/graded_*.json): every\n"
     "                   variant for every seed, a table of mean ± std (docs/graded.md)",
     cmd_graded_experiment});

}  // namespace

}  // namespace gradus::experiments
