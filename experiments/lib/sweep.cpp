// Planning a sweep: validating the "sweep" object, expanding variants x grid x seeds into runs,
// checking every expanded configuration before anything runs, and sharding the runs.
#include "experiments/lib/sweep.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "core/error.h"
#include "experiments/lib/descriptor.h"
#include "experiments/lib/json_file.h"
#include "experiments/lib/run_dir.h"
#include "models/io/json_depth.h"

namespace gradus::experiments {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// Keys a sweep may not vary: the seed is swept by sweep.seeds, and log.name / log.dir place the
// sweep directory itself.
const std::set<std::string> kFixedKeys = {"seed", "log.name", "log.dir"};

std::vector<std::string> field_paths() {
  std::vector<std::string> out;
  for (const DescriptorField& f : descriptor_fields()) out.push_back(f.path);
  return out;
}

// "sweep.grid.train.lr: ..." problems for a key that is not a descriptor key the sweep may set.
std::optional<std::string> key_problem(const std::string& key) {
  if (kFixedKeys.count(key)) {
    return key == "seed" ? std::string("the seed is swept by sweep.seeds, not here")
                         : fmt::format("{} places the sweep directory; it cannot vary", key);
  }
  std::vector<std::string> paths = field_paths();
  if (std::find(paths.begin(), paths.end(), key) != paths.end()) return std::nullopt;
  std::string near = closest_match(key, paths);
  if (!near.empty()) return fmt::format("unknown descriptor key (did you mean \"{}\"?)", near);
  return std::string("unknown descriptor key (expected a dotted path such as train.lr)");
}

std::string type_name(const ordered_json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}

// A JSON value that is a whole number >= 0 (1e4 counts).
std::optional<uint64_t> as_seed(const ordered_json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    return i >= 0 ? std::optional<uint64_t>(static_cast<uint64_t>(i)) : std::nullopt;
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (d >= 0 && d < 1.8e19 && d == static_cast<double>(static_cast<uint64_t>(d)))
      return static_cast<uint64_t>(d);
  }
  return std::nullopt;
}

// A value as it appears in an id or a label: strings bare, everything else as JSON.
std::string value_text(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// File-name-safe: letters, digits and _ - . = , + stay; anything else becomes '_'.
std::string slug(const std::string& text) {
  std::string out;
  for (char ch : text) {
    bool ok = std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.' ||
              ch == '=' || ch == ',' || ch == '+';
    out += ok ? ch : '_';
  }
  while (!out.empty() && out[0] == '.') out.erase(0, 1);
  return out.empty() ? "_" : out;
}

std::string leaf(const std::string& path) {
  size_t dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

// apply_override for the "sweep" part of an ordered document (keeps the grid's key order). A grid
// key is itself a dotted path: "sweep.grid.train.lr=[1e-3]" sets the grid's key "train.lr".
void apply_ordered_override(ordered_json& doc, const std::string& assignment) {
  const size_t eq = assignment.find('=');
  GRADUS_CHECK(eq != std::string::npos, "--set", "expected path=value, found \"{}\"", assignment);
  json parsed = json::object();
  apply_override(parsed, "value" + assignment.substr(eq));  // parses the value as --set does
  const std::string path = assignment.substr(0, eq);
  std::vector<std::string> parts;
  const std::string grid_prefix = "sweep.grid.";
  if (path.starts_with(grid_prefix) && path.size() > grid_prefix.size()) {
    parts = {"sweep", "grid", path.substr(grid_prefix.size())};
  } else {
    std::stringstream ss(path);
    for (std::string part; std::getline(ss, part, '.');) parts.push_back(part);
  }
  GRADUS_CHECK(std::none_of(parts.begin(), parts.end(), [](const auto& p) { return p.empty(); }),
               "--set", "\"{}\": expected a dotted path such as sweep.seeds before '='",
               assignment);
  ordered_json* node = &doc;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    ordered_json& next = (*node)[parts[i]];
    if (next.is_null()) next = ordered_json::object();
    GRADUS_CHECK(next.is_object(), "--set", "\"{}\": {} is not an object but {}", assignment,
                 parts[i], type_name(next));
    node = &next;
  }
  (*node)[parts.back()] = ordered_json::parse(parsed["value"].dump());
}

struct Variant {
  std::string name;
  json set = json::object();
  std::string origin;  // "sweep.variants[1]"
};

struct GridAxis {
  std::string key;
  std::vector<json> values;
};

}  // namespace

json SweepPlan::to_json() const {
  json cs = json::array(), rs = json::array();
  for (const SweepConfig& c : configs)
    cs.push_back({{"id", c.id}, {"name", c.name}, {"overrides", c.overrides}});
  for (const SweepRun& r : runs)
    rs.push_back({{"config", r.config}, {"seed", r.seed}, {"dir", r.dir}});
  return {{"name", name},   {"source", source}, {"base", base},
          {"seeds", seeds}, {"configs", cs},    {"runs", rs}};
}

std::vector<std::string> SweepPlan::run_overrides(const SweepRun& run) const {
  std::vector<std::string> out;
  for (const SweepConfig& c : configs) {
    if (c.id != run.config) continue;
    for (const auto& [path, value] : c.overrides.items()) out.push_back(path + "=" + value.dump());
  }
  out.push_back(fmt::format("seed={}", run.seed));
  return out;
}

bool is_sweep_descriptor(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) return false;
  std::stringstream buffer;
  buffer << in.rdbuf();
  json doc = json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false,
                         /*ignore_comments=*/true);
  return doc.is_object() && doc.contains("sweep");
}

SweepPlan plan_sweep(const ordered_json& given, const std::string& source,
                     const std::vector<std::string>& overrides, const std::string& default_name) {
  GRADUS_CHECK(given.is_object() && given.contains("sweep"), "sweep",
               "{} has no \"sweep\" object (docs/experiments.md, Sweeps)", source);
  ordered_json doc = given;
  std::vector<std::string> base_overrides;
  for (const std::string& o : overrides) {
    if (o.starts_with("sweep."))
      apply_ordered_override(doc, o);
    else
      base_overrides.push_back(o);
  }
  const ordered_json sweep = doc["sweep"];
  doc.erase("sweep");

  // The base: validated first (its problems are nobody's config's). The corpus path is made
  // absolute and log.name explicit, so the runs read the same document from any directory.
  json base_doc = json::parse(doc.dump());
  Descriptor base = parse_descriptor(base_doc, source, base_overrides, default_name);
  for (const std::string& o : base_overrides) apply_override(base_doc, o);
  if (!is_corpus_name(base.data.corpus)) {
    base.data.corpus = fs::absolute(base.data.corpus).lexically_normal().string();
    base_doc["data"]["corpus"] = base.data.corpus;
  }
  base_doc["log"]["name"] = base.log.name;

  SweepPlan plan;
  plan.name = base.log.name;
  plan.source = source;
  plan.dir = (fs::path(base.log.dir) / base.log.name).string();
  plan.base_document = base_doc;
  plan.base = base.to_json();

  std::vector<DescriptorProblem> problems;
  auto problem = [&](std::string path, std::string message) {
    problems.push_back({std::move(path), std::move(message)});
  };
  if (!sweep.is_object()) {
    problem("sweep", fmt::format("expected an object with seeds, grid and/or variants, found {}",
                                 type_name(sweep)));
    throw DescriptorError(source, problems);
  }
  for (const auto& [key, value] : sweep.items()) {
    if (key == "seeds" || key == "grid" || key == "variants") continue;
    std::string near = closest_match(key, {"seeds", "grid", "variants"});
    problem("sweep." + key, near.empty()
                                ? "unknown key; the keys of sweep are: seeds, grid, variants"
                                : fmt::format("unknown key (did you mean \"sweep.{}\"?)", near));
  }

  // Seeds: n (0..n-1) or a list of distinct non-negative integers; default the base's seed.
  if (!sweep.contains("seeds")) {
    plan.seeds = {base.seed};
  } else if (const ordered_json& s = sweep["seeds"]; s.is_array()) {
    if (s.empty()) problem("sweep.seeds", "expected at least one seed, found []");
    std::set<uint64_t> seen;
    for (size_t i = 0; i < s.size(); ++i) {
      std::optional<uint64_t> seed = as_seed(s[i]);
      if (!seed) {
        problem(fmt::format("sweep.seeds[{}]", i),
                fmt::format("expected a non-negative integer, found {} ({})", s[i].dump(),
                            type_name(s[i])));
      } else if (!seen.insert(*seed).second) {
        problem(fmt::format("sweep.seeds[{}]", i), fmt::format("seed {} is listed twice", *seed));
      } else {
        plan.seeds.push_back(*seed);
      }
    }
  } else {
    std::optional<uint64_t> n = as_seed(s);
    if (!n || *n == 0 || *n > 100000) {
      problem("sweep.seeds",
              fmt::format("expected a number of seeds n in [1, 100000] (seeds 0..n-1) "
                          "or a list of seeds, found {} ({})",
                          s.dump(), type_name(s)));
    } else {
      for (uint64_t i = 0; i < *n; ++i) plan.seeds.push_back(i);
    }
  }

  // Grid: descriptor key -> a non-empty list of distinct values, in the document's order.
  std::vector<GridAxis> grid;
  if (sweep.contains("grid")) {
    const ordered_json& g = sweep["grid"];
    if (!g.is_object()) {
      problem("sweep.grid", fmt::format("expected an object of descriptor key -> list of values "
                                        "(\"train.lr\": [1e-3, 3e-4]), found {}",
                                        type_name(g)));
    } else {
      for (const auto& [key, values] : g.items()) {
        const std::string path = "sweep.grid." + key;
        if (auto p = key_problem(key)) {
          problem(path, *p);
          continue;
        }
        if (!values.is_array() || values.empty()) {
          problem(path, fmt::format("expected a non-empty list of values, found {}",
                                    values.is_array() ? std::string("[]") : values.dump()));
          continue;
        }
        GridAxis axis{key, {}};
        for (const auto& v : values) {
          json value = json::parse(v.dump());
          if (std::find(axis.values.begin(), axis.values.end(), value) != axis.values.end())
            problem(path, fmt::format("the value {} is listed twice", value.dump()));
          else
            axis.values.push_back(value);
        }
        grid.push_back(std::move(axis));
      }
    }
  }

  // Variants: named override sets, each crossed with the grid.
  std::vector<Variant> variants;
  if (sweep.contains("variants")) {
    const ordered_json& vs = sweep["variants"];
    if (!vs.is_array() || vs.empty()) {
      problem(
          "sweep.variants",
          fmt::format("expected a non-empty list of {{\"name\": ..., \"set\": {{...}}}}, found {}",
                      vs.is_array() ? std::string("[]") : type_name(vs)));
    } else {
      std::set<std::string> names;
      for (size_t i = 0; i < vs.size(); ++i) {
        const std::string at = fmt::format("sweep.variants[{}]", i);
        const ordered_json& v = vs[i];
        if (!v.is_object()) {
          problem(at, fmt::format("expected an object with name and set, found {}", type_name(v)));
          continue;
        }
        Variant variant{"", json::object(), at};
        for (const auto& [key, value] : v.items()) {
          if (key == "name" || key == "set") continue;
          std::string near = closest_match(key, {"name", "set"});
          problem(at + "." + key,
                  near.empty() ? "unknown key; a variant has: name, set"
                               : fmt::format("unknown key (did you mean \"{}.{}\"?)", at, near));
        }
        if (!v.contains("name") || !v["name"].is_string() || v["name"].get<std::string>().empty()) {
          problem(at + ".name", fmt::format("expected a non-empty string, found {}",
                                            v.contains("name") ? v["name"].dump() : "nothing"));
        } else {
          variant.name = v["name"];
          if (!names.insert(slug(variant.name)).second)
            problem(at + ".name",
                    fmt::format("\"{}\" names another variant as well", variant.name));
        }
        if (v.contains("set") && !v["set"].is_object()) {
          problem(at + ".set",
                  fmt::format("expected an object of descriptor key -> value, found {}",
                              type_name(v["set"])));
        } else if (v.contains("set")) {
          for (const auto& item : v["set"].items()) {
            // Named copies: clang 14 cannot capture a structured binding in the lambda below.
            const std::string key = item.key();
            const ordered_json& value = item.value();
            if (auto p = key_problem(key)) {
              problem(at + ".set." + key, *p);
            } else if (std::any_of(grid.begin(), grid.end(),
                                   [&](const GridAxis& a) { return a.key == key; })) {
              problem(at + ".set." + key, fmt::format("also swept by sweep.grid.{}", key));
            } else {
              variant.set[key] = json::parse(value.dump());
            }
          }
        }
        variants.push_back(std::move(variant));
      }
    }
  }
  if (!problems.empty()) throw DescriptorError(source, problems);

  // Expand: variants in order, each crossed with the grid (the last key varies fastest). A grid
  // key shows by its last component in ids ("lr=0.001") unless two keys share it.
  if (variants.empty()) variants.push_back(Variant{});
  auto short_key = [&](const std::string& key) {
    int same = 0;
    for (const GridAxis& a : grid) same += leaf(a.key) == leaf(key);
    return same > 1 ? key : leaf(key);
  };
  size_t points = 1;
  for (const GridAxis& a : grid) points *= a.values.size();
  // config id -> key -> where the sweep set it ("sweep.grid.train.lr", "sweep.variants[1].set.x")
  std::map<std::string, std::map<std::string, std::string>> origin_of;
  for (const Variant& v : variants) {
    for (size_t p = 0; p < points; ++p) {
      SweepConfig c;
      c.overrides = v.set;
      std::vector<std::string> id_parts, name_parts;
      if (!v.name.empty()) id_parts.push_back(slug(v.name)), name_parts.push_back(v.name);
      size_t rest = p;
      std::vector<size_t> index(grid.size());
      for (size_t k = grid.size(); k-- > 0;) {
        index[k] = rest % grid[k].values.size();
        rest /= grid[k].values.size();
      }
      for (size_t k = 0; k < grid.size(); ++k) {
        const json& value = grid[k].values[index[k]];
        c.overrides[grid[k].key] = value;
        id_parts.push_back(slug(short_key(grid[k].key) + "=" + value_text(value)));
        name_parts.push_back(grid[k].key + "=" + value_text(value));
      }
      c.id = id_parts.empty() ? "base" : fmt::format("{}", fmt::join(id_parts, ","));
      c.name = name_parts.empty() ? "base" : fmt::format("{}", fmt::join(name_parts, " "));
      for (const SweepConfig& other : plan.configs)
        GRADUS_CHECK(other.id != c.id, "sweep",
                     "two configurations have the id \"{}\"; rename a variant", c.id);
      for (const auto& [key, value] : v.set.items())
        origin_of[c.id][key] = v.origin + ".set." + key;
      for (const GridAxis& a : grid) origin_of[c.id][a.key] = "sweep.grid." + a.key;
      plan.configs.push_back(std::move(c));
    }
  }

  // Every configuration is checked as its runs will read it, and every problem listed at once.
  for (const SweepConfig& c : plan.configs) {
    json d = base_doc;
    for (const auto& [path, value] : c.overrides.items())
      apply_override(d, path + "=" + value.dump());
    try {
      parse_descriptor(d, source, {}, default_name);
    } catch (const DescriptorError& e) {
      for (const DescriptorProblem& p : e.problems()) {
        const auto& origins = origin_of[c.id];
        auto it = origins.find(p.path);
        problem(p.path, it == origins.end() ? fmt::format("{} [config \"{}\"]", p.message, c.id)
                                            : fmt::format("{} [config \"{}\", from {}]", p.message,
                                                          c.id, it->second));
      }
    }
  }
  if (!problems.empty()) throw DescriptorError(source, problems);

  for (uint64_t seed : plan.seeds)
    for (const SweepConfig& c : plan.configs)
      plan.runs.push_back({c.id, seed, fmt::format("{}/seed-{}", c.id, seed)});
  return plan;
}

SweepPlan load_sweep(const std::string& path, const std::vector<std::string>& overrides) {
  const ordered_json doc = read_json_document(path, "sweep");
  return plan_sweep(doc, path, overrides, fs::path(path).stem().string());
}

Shard parse_shard(const std::string& text) {
  size_t slash = text.find('/');
  Shard s;
  bool ok = slash != std::string::npos;
  try {
    size_t end = 0;
    if (ok) s.index = std::stoll(text.substr(0, slash), &end), ok = end == slash;
    if (ok) s.count = std::stoll(text.substr(slash + 1), &end), ok = end == text.size() - slash - 1;
  } catch (const std::exception&) {
    ok = false;
  }
  GRADUS_CHECK(ok, "--shard", "expected i/n (0-based: 0/4 .. 3/4), found \"{}\"", text);
  GRADUS_CHECK(s.count >= 1 && s.index >= 0 && s.index < s.count, "--shard",
               "expected 0 <= i < n in i/n (shards are 0-based: 0/{} .. {}/{}), found \"{}\"",
               std::max<int64_t>(s.count, 1), std::max<int64_t>(s.count, 1) - 1,
               std::max<int64_t>(s.count, 1), text);
  return s;
}

std::vector<size_t> shard_runs(size_t num_runs, const Shard& shard) {
  std::vector<size_t> out;
  for (size_t i = 0; i < num_runs; ++i)
    if (static_cast<int64_t>(i % static_cast<size_t>(shard.count)) == shard.index) out.push_back(i);
  return out;
}

}  // namespace gradus::experiments
