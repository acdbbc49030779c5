// Aggregating a sweep: the summary.json of every finished run, one row each in results.csv, and
// mean, sample std and n per configuration and metric in aggregate.json / .csv / .md.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/error.h"
#include "experiments/lib/run_dir.h"
#include "experiments/lib/sweep.h"
#include "models/io/atomic_file.h"

namespace gradus::experiments {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// The metrics in the order the tables show them; any other numeric key of summary.json follows,
// alphabetically.
const std::vector<std::string> kMetricOrder = {
    "final_val_loss",   "best_val_loss", "best_val_step",
    "final_train_loss", "gap",           "val_bits_per_byte",
    "tokens_per_s",     "wall_time_s",   "train_time_s",
    "parameters",       "steps",         "tokens_trained",
    "val_tokens",       "sessions"};
// Bookkeeping, left out of the Markdown table (aggregate.json and the CSVs keep them).
const std::set<std::string> kNotInTable = {"steps", "tokens_trained", "val_tokens", "sessions",
                                           "train_time_s"};

json read_json_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  GRADUS_CHECK(in.good(), "sweep", "cannot read {}", p.string());
  std::stringstream s;
  s << in.rdbuf();
  try {
    return json::parse(s.str());
  } catch (const json::exception& e) {  // parse errors, numbers out of range
    GRADUS_FAIL("sweep", "{} is not valid JSON: {}", p.string(), e.what());
  }
}

// The numeric values of a summary (booleans and strings are not metrics), with the gap between
// the final validation and training losses.
std::map<std::string, double> metrics_of(const json& summary) {
  std::map<std::string, double> out;
  for (const auto& [key, value] : summary.items())
    if (value.is_number()) out[key] = value.get<double>();
  if (out.count("final_val_loss") && out.count("final_train_loss"))
    out["gap"] = out["final_val_loss"] - out["final_train_loss"];
  return out;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char ch : s) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

// Round-trip number text for the CSVs ("" for a missing value).
std::string number_text(const json& v) { return v.is_null() ? "" : v.dump(); }

// A table cell "mean ± std (n)": four decimals for losses, fewer for large values (tokens/s,
// parameters), both numbers at the mean's precision; integers (steps, parameters) without
// decimals, and a single seed as its value alone (a std of one value says nothing).
std::string table_cell(const json& stats) {
  const double mean = stats.at("mean"), sd = stats.at("std");
  const int64_t n = stats.at("n").get<int64_t>();
  bool integral = true;
  if (stats.contains("values"))
    for (const json& v : stats["values"])
      if (!v.is_number_integer() &&
          !(v.is_number() && v.get<double>() == std::floor(v.get<double>())))
        integral = false;
  const int decimals = integral && n == 1        ? 0
                       : std::fabs(mean) >= 1000 ? 0
                       : std::fabs(mean) >= 100  ? 1
                                                 : 4;
  if (n == 1) return fmt::format("{:.{}f}", mean, decimals);
  return fmt::format("{:.{}f} ± {:.{}f} ({})", mean, decimals, sd, decimals, n);
}

}  // namespace

json aggregate_sweep(const std::string& sweep_dir) {
  const fs::path dir = sweep_dir;
  const fs::path plan_file = dir / kSweepPlanFile;
  GRADUS_CHECK(fs::is_regular_file(plan_file), "sweep", "{} is not a sweep directory (no {})",
               sweep_dir, kSweepPlanFile);
  const json plan = read_json_file(plan_file);
  GRADUS_CHECK(plan.is_object() && plan.contains("configs") && plan.contains("runs") &&
                   plan["configs"].is_array() && plan["runs"].is_array(),
               "sweep", "{}: expected an object with \"configs\" and \"runs\" lists",
               plan_file.string());

  // Finished runs, in the plan's order.
  struct Finished {
    std::string config;
    uint64_t seed;
    std::map<std::string, double> metrics;
  };
  std::vector<Finished> finished;
  std::set<std::string> seen;
  for (const json& r : plan["runs"]) {
    const fs::path summary = dir / r.at("dir").get<std::string>() / kSummaryFile;
    if (!fs::is_regular_file(summary)) continue;
    finished.push_back({r.at("config"), r.at("seed"), metrics_of(read_json_file(summary))});
    for (const auto& [k, v] : finished.back().metrics) seen.insert(k);
  }
  std::vector<std::string> metrics;
  for (const std::string& m : kMetricOrder)
    if (seen.count(m)) metrics.push_back(m);
  for (const std::string& m : seen)
    if (std::find(metrics.begin(), metrics.end(), m) == metrics.end()) metrics.push_back(m);

  // results.csv: one row per finished run.
  std::string results = "config,seed";
  for (const std::string& m : metrics) results += "," + m;
  results += "\n";
  for (const Finished& f : finished) {
    results += csv_field(f.config) + "," + std::to_string(f.seed);
    for (const std::string& m : metrics) {
      auto it = f.metrics.find(m);
      results += "," + (it == f.metrics.end() ? std::string() : json(it->second).dump());
    }
    results += "\n";
  }

  json configs = json::array();
  for (const json& c : plan["configs"]) {
    const std::string id = c.at("id");
    json seeds = json::array(), stats = json::object();
    for (const Finished& f : finished)
      if (f.config == id) seeds.push_back(f.seed);
    for (const std::string& m : metrics) {
      std::vector<double> values;
      for (const Finished& f : finished)
        if (f.config == id && f.metrics.count(m)) values.push_back(f.metrics.at(m));
      if (values.empty()) continue;
      const double n = static_cast<double>(values.size());
      double mean = 0.0;
      for (double v : values) mean += v;
      mean /= n;
      double ss = 0.0;
      for (double v : values) ss += (v - mean) * (v - mean);
      const double sd = values.size() > 1 ? std::sqrt(ss / (n - 1.0)) : 0.0;
      stats[m] = {{"mean", mean}, {"std", sd}, {"n", values.size()}, {"values", values}};
    }
    configs.push_back({{"id", id},
                       {"name", c.value("name", id)},
                       {"overrides", c.value("overrides", json::object())},
                       {"seeds", seeds},
                       {"metrics", stats}});
  }
  json agg = {{"name", plan.value("name", dir.filename().string())},
              {"metrics", metrics},
              {"configs", configs}};

  // aggregate.csv: one row per config, mean and std of each metric.
  std::string csv = "config,name,n";
  for (const std::string& m : metrics) csv += "," + m + "_mean," + m + "_std";
  csv += "\n";
  for (const json& c : configs) {
    csv +=
        csv_field(c["id"]) + "," + csv_field(c["name"]) + "," + std::to_string(c["seeds"].size());
    for (const std::string& m : metrics) {
      const json& s = c["metrics"].value(m, json::object());
      csv += "," + number_text(s.value("mean", json())) + "," + number_text(s.value("std", json()));
    }
    csv += "\n";
  }

  write_text_atomic((dir / "results.csv").string(), results);
  write_text_atomic((dir / "aggregate.json").string(), agg.dump(2) + "\n");
  write_text_atomic((dir / "aggregate.csv").string(), csv);
  write_text_atomic((dir / "aggregate.md").string(), aggregate_markdown(agg));
  return agg;
}

std::string aggregate_markdown(const json& agg) {
  std::vector<std::string> columns;
  for (const json& m : agg.at("metrics"))
    if (!kNotInTable.count(m.get<std::string>())) columns.push_back(m);
  std::string out = fmt::format("# Sweep {}\n\nmean ± std (n seeds) per configuration.\n\n",
                                agg.value("name", std::string()));
  out += "| config |";
  for (const std::string& m : columns) out += " " + m + " |";
  out += "\n|---|";
  for (size_t i = 0; i < columns.size(); ++i) out += "---|";
  out += "\n";
  for (const json& c : agg.at("configs")) {
    out += "| " + c.value("name", std::string()) + " |";
    for (const std::string& m : columns) {
      if (!c["metrics"].contains(m)) {
        out += " — |";
        continue;
      }
      out += " " + table_cell(c["metrics"][m]) + " |";
    }
    out += "\n";
  }
  return out;
}

}  // namespace gradus::experiments
