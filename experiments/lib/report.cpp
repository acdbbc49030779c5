#include "experiments/lib/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "core/error.h"
#include "experiments/lib/child_process.h"
#include "experiments/lib/machine_info.h"
#include "experiments/lib/pipeline.h"
#include "experiments/lib/progress.h"
#include "experiments/lib/report_doc.h"
#include "experiments/lib/run_dir.h"
#include "experiments/lib/svg_plot.h"
#include "models/io/atomic_file.h"

namespace gradus::experiments {

namespace fs = std::filesystem;
using json = nlohmann::json;
using report::Chart;
using report::Document;
using report::Table;

namespace {

// "runs/x/" names x, as "runs/x" does.
std::string dir_name(const fs::path& dir) {
  const fs::path normal = dir.lexically_normal();
  return normal.has_filename() ? normal.filename().string()
                               : normal.parent_path().filename().string();
}

constexpr const char* kSweepFile = "sweep.json";
constexpr const char* kAggregateFile = "aggregate.json";
constexpr const char* kMetricsCsv = "metrics.csv";
// Series beyond this many in one chart are listed instead of drawn (a legend of 40 operators
// tells nothing).
constexpr size_t kMaxSeries = 10;

// ---- reading ------------------------------------------------------------------------------------

json read_json(const fs::path& path) {
  std::ifstream in(path);
  GRADUS_CHECK(in.good(), "gradus report", "cannot read {}", path.string());
  try {
    return json::parse(in);
  } catch (const json::exception& e) {  // parse errors, numbers out of range
    GRADUS_FAIL("gradus report", "{} is not valid JSON: {}", path.string(), e.what());
  }
}

std::optional<json> read_json_if_present(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  return read_json(path);
}

// ---- formatting ---------------------------------------------------------------------------------

std::string format_number(double v) {
  if (!std::isfinite(v)) return fmt::format("{}", v);
  if (v == std::floor(v) && std::abs(v) < 1e15) return fmt::format("{:.0f}", v);
  return fmt::format("{:.6g}", v);
}

std::string format_value(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return v.dump();
  if (v.is_number()) return format_number(v.get<double>());
  return v.dump();
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

double number_or_nan(const json& line, const char* key) {
  auto it = line.find(key);
  return it != line.end() && it->is_number() ? it->get<double>()
                                             : std::numeric_limits<double>::quiet_NaN();
}

// Sample mean and standard deviation (n - 1; 0 for one value), as aggregate.json has them.
struct Stat {
  double mean = 0.0, std = 0.0;
  int64_t n = 0;
};
Stat stat_of(const std::vector<double>& v) {
  Stat s;
  s.n = static_cast<int64_t>(v.size());
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  if (v.size() > 1) {
    double ss = 0.0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.std = std::sqrt(ss / static_cast<double>(v.size() - 1));
  }
  return s;
}
std::string format_stat(const Stat& s) {
  if (s.n == 0) return "";
  // Five digits keep a table of several metrics within a laptop screen's width.
  return fmt::format("{:.5g} \xC2\xB1 {:.2g} ({})", s.mean, s.std, s.n);
}

// The series of `key` over steps, or empty when no line has it.
svg::Series series_of(const std::vector<json>& lines, const char* key, std::string name) {
  svg::Series s;
  s.name = std::move(name);
  for (const json& l : lines) {
    auto it = l.find(key);
    if (it == l.end() || !it->is_number()) continue;
    s.x.push_back(l["step"].get<double>());
    s.y.push_back(it->get<double>());
  }
  return s;
}

// Whether the positive values of a chart span enough to want a log axis.
bool wants_log(const std::vector<svg::Series>& series) {
  double lo = std::numeric_limits<double>::infinity(), hi = 0.0;
  for (const auto& s : series)
    for (double v : s.y)
      if (std::isfinite(v)) {
        if (v <= 0.0) return false;
        lo = std::min(lo, v), hi = std::max(hi, v);
      }
  return hi > 0.0 && hi / lo >= 30.0;
}

Chart line_chart(std::string key, std::string title, std::string y_label,
                 std::vector<svg::Series> series, bool log_y = false) {
  svg::LineChart c;
  c.title = title;
  c.x_label = "step";
  c.y_label = std::move(y_label);
  c.log_y = log_y;
  c.series = std::move(series);
  return Chart{std::move(key), std::move(title), svg::render(c)};
}

Table key_value_table(const json& object, const std::string& key_name = "key") {
  Table t{{key_name, "value"}, {}};
  for (const auto& [k, v] : object.items()) t.rows.push_back({k, format_value(v)});
  return t;
}

void add_machine_section(Document& doc, const std::vector<std::pair<json, std::string>>& machines,
                         size_t total_runs) {
  doc.heading("Machine");
  if (machines.empty()) {
    doc.paragraph(
        fmt::format("machine not recorded (no {} in the run directory{}; runs started by "
                    "older versions of gradus lack it)",
                    kMachineFile, total_runs > 1 ? "s" : ""));
    return;
  }
  for (const auto& [m, who] : machines) {
    if (!who.empty()) doc.paragraph(who);
    doc.table(key_value_table(m));
  }
}

// ---- a run directory ----------------------------------------------------------------------------

struct RunData {
  json resolved;
  std::vector<json> lines;
  std::optional<json> summary;
  std::optional<json> machine;
  int64_t planned_steps = -1;  // train.steps of the descriptor, -1 when unknown
  int64_t last_step() const { return lines.empty() ? 0 : lines.back()["step"].get<int64_t>(); }
};

RunData load_run(const fs::path& dir, bool need_resolved) {
  RunData r;
  if (need_resolved || fs::is_regular_file(dir / kResolvedFile))
    r.resolved = read_json(dir / kResolvedFile);
  r.lines = read_metrics_lines((dir / kMetricsFile).string());
  r.summary = read_json_if_present(dir / kSummaryFile);
  r.machine = read_json_if_present(dir / kMachineFile);
  if (r.resolved.is_object() && r.resolved.contains("train") &&
      r.resolved["train"].contains("steps") && r.resolved["train"]["steps"].is_number_integer())
    r.planned_steps = r.resolved["train"]["steps"].get<int64_t>();
  return r;
}

std::string run_status(const RunData& r) {
  if (r.summary) return "complete";
  if (r.lines.empty()) return "started, nothing logged yet";
  return r.planned_steps > 0
             ? fmt::format("incomplete: step {} of {}", r.last_step(), r.planned_steps)
             : fmt::format("incomplete: step {}", r.last_step());
}

// Charts of the graded diagnostics: every "grading" object maps an operator path to its kappa,
// lambda, s_max and grade range (models/graded/diagnostics.h).
void add_grading_section(Document& doc, const std::vector<json>& lines) {
  std::vector<std::string> operators;  // in order of first appearance
  std::map<std::string, std::pair<svg::Series, svg::Series>> kappa_and_qmean;
  const json* last = nullptr;
  for (const json& l : lines) {
    auto g = l.find("grading");
    if (g == l.end() || !g->is_object()) continue;
    last = &*g;
    for (const auto& [op, entry] : g->items()) {
      if (!kappa_and_qmean.count(op)) {
        operators.push_back(op);
        kappa_and_qmean[op].first.name = op;
        kappa_and_qmean[op].second.name = op;
      }
      auto& [kappa, qmean] = kappa_and_qmean[op];
      const double step = l["step"].get<double>();
      kappa.x.push_back(step), kappa.y.push_back(number_or_nan(entry, "kappa"));
      qmean.x.push_back(step), qmean.y.push_back(number_or_nan(entry, "q_mean"));
    }
  }
  if (!last) return;
  doc.heading("Graded diagnostics");
  std::vector<svg::Series> kappas, qmeans;
  for (size_t i = 0; i < operators.size() && i < kMaxSeries; ++i) {
    kappas.push_back(kappa_and_qmean[operators[i]].first);
    qmeans.push_back(kappa_and_qmean[operators[i]].second);
  }
  if (operators.size() > kMaxSeries)
    doc.paragraph(fmt::format("{} graded operators; the charts show the first {}, the table all.",
                              operators.size(), kMaxSeries));
  doc.charts(
      {line_chart("grading_kappa", "Grading: kappa per operator", "kappa", kappas,
                  wants_log(kappas)),
       line_chart("grading_q_mean", "Grading: mean grade per operator", "mean grade q", qmeans)});
  Table t{{"operator", "kappa", "lambda", "s_max", "q_min", "q_mean", "q_max"}, {}};
  for (const auto& [op, e] : last->items()) {
    std::vector<std::string> row{op};
    for (const char* k : {"kappa", "lambda", "s_max", "q_min", "q_mean", "q_max"})
      row.push_back(e.contains(k) ? format_value(e[k]) : "");
    t.rows.push_back(std::move(row));
  }
  doc.paragraph("At the last logged step:");
  doc.table(std::move(t));
}

Document run_report(const fs::path& dir, std::vector<std::pair<std::string, std::string>>& csvs) {
  RunData r = load_run(dir, true);
  const std::string name = r.resolved.contains("log") && r.resolved["log"].contains("name")
                               ? format_value(r.resolved["log"]["name"])
                               : dir_name(dir);
  Document doc(fmt::format("Run {} ({})", name, dir_name(dir)));
  const std::string status = run_status(r);
  if (r.summary) {
    doc.paragraph(fmt::format("Complete: {} steps. Metrics as CSV: {} (one row per logged step).",
                              r.last_step(), kMetricsCsv));
  } else {
    doc.note(
        fmt::format("This run has not completed (no {}): {}. The curves go up to the last "
                    "logged step.",
                    kSummaryFile, status));
  }

  doc.heading("Curves");
  if (r.lines.empty()) {
    doc.paragraph(fmt::format("No metrics logged yet ({} is missing or empty).", kMetricsFile));
  } else {
    std::vector<svg::Series> loss{series_of(r.lines, "train_loss", "training loss"),
                                  series_of(r.lines, "val_loss", "validation loss")};
    doc.charts({line_chart("loss", "Loss", "loss (nats / token)", loss),
                line_chart("lr", "Learning rate", "learning rate",
                           {series_of(r.lines, "lr", "learning rate")}),
                line_chart("grad_norm", "Gradient norm (before clipping)", "gradient norm",
                           {series_of(r.lines, "grad_norm", "gradient norm")}),
                line_chart("tokens_per_s", "Throughput", "tokens / s",
                           {series_of(r.lines, "tokens_per_s", "tokens / s")})});
  }
  add_grading_section(doc, r.lines);

  doc.heading("Summary");
  if (r.summary) {
    doc.table(key_value_table(*r.summary, "metric"));
  } else {
    doc.paragraph(fmt::format("No {} yet. The last logged line:", kSummaryFile));
    json last = r.lines.empty() ? json::object() : r.lines.back();
    last.erase("grading");
    doc.table(key_value_table(last, "metric"));
  }

  std::vector<std::pair<json, std::string>> machines;
  if (r.machine) machines.emplace_back(*r.machine, "");
  add_machine_section(doc, machines, 1);

  doc.heading("Descriptor (resolved.json)");
  doc.code(r.resolved.dump(2));
  csvs.emplace_back((dir / kMetricsCsv).string(), metrics_csv(r.lines));
  return doc;
}

// ---- a sweep directory --------------------------------------------------------------------------

struct SweepConfig {
  std::string id, name;
  json overrides;
};
struct SweepRun {
  std::string config;
  int64_t seed = 0;
  std::string dir;  // relative to the sweep directory
  RunData data;
  bool exists = false;
};

// Mean and ± std band over the runs of one configuration, at each step any of them logged `key`.
svg::Series mean_curve(const std::vector<const SweepRun*>& runs, const char* key,
                       std::string name) {
  std::map<int64_t, std::vector<double>> at_step;
  for (const SweepRun* r : runs)
    for (const json& l : r->data.lines) {
      auto it = l.find(key);
      if (it != l.end() && it->is_number())
        at_step[l["step"].get<int64_t>()].push_back(it->get<double>());
    }
  svg::Series s;
  s.name = std::move(name);
  for (const auto& [step, values] : at_step) {
    Stat st = stat_of(values);
    s.x.push_back(static_cast<double>(step));
    s.y.push_back(st.mean);
    s.band_low.push_back(st.mean - st.std);
    s.band_high.push_back(st.mean + st.std);
  }
  return s;
}

std::string overrides_text(const json& overrides) {
  std::string out;
  for (const auto& [k, v] : overrides.items())
    out += (out.empty() ? "" : ", ") + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  return out.empty() ? "(none)" : out;
}

// The headline metrics of the aggregate table, when present; aggregate.csv has all of them.
// (val_bits_per_byte is final_val_loss / ln 2, left out to keep the table a screen wide).
constexpr const char* kHeadline[] = {"final_val_loss", "best_val_loss", "final_train_loss", "gap",
                                     "tokens_per_s",   "wall_time_s"};

Document sweep_report(const fs::path& dir, std::vector<std::pair<std::string, std::string>>& csvs) {
  const fs::path sweep_path = dir / kSweepFile;
  const json plan = read_json(sweep_path);
  auto field = [&](const json& j, const char* key, auto check,
                   const char* expected) -> const json& {
    GRADUS_CHECK(j.is_object() && j.contains(key) && check(j[key]), "gradus report",
                 "{}: \"{}\" should be {}", sweep_path.string(), key, expected);
    return j[key];
  };
  auto is_array = [](const json& v) { return v.is_array(); };
  auto is_string = [](const json& v) { return v.is_string(); };
  auto is_int = [](const json& v) { return v.is_number_integer(); };
  const std::string name = plan.contains("name") && plan["name"].is_string()
                               ? plan["name"].get<std::string>()
                               : dir_name(dir);
  std::vector<SweepConfig> configs;
  for (const json& c : field(plan, "configs", is_array, "an array")) {
    configs.push_back({field(c, "id", is_string, "a string").get<std::string>(),
                       c.contains("name") ? format_value(c["name"]) : c["id"].get<std::string>(),
                       c.contains("overrides") ? c["overrides"] : json::object()});
  }
  std::vector<SweepRun> runs;
  for (const json& rj : field(plan, "runs", is_array, "an array")) {
    SweepRun r;
    r.config = field(rj, "config", is_string, "a string").get<std::string>();
    r.seed = field(rj, "seed", is_int, "an integer").get<int64_t>();
    r.dir = field(rj, "dir", is_string, "a string").get<std::string>();
    const fs::path run_dir = dir / r.dir;
    r.exists = fs::is_directory(run_dir);
    if (r.exists) r.data = load_run(run_dir, false);
    if (r.data.planned_steps < 0 && plan.contains("base") && plan["base"].contains("train") &&
        plan["base"]["train"].contains("steps") &&
        plan["base"]["train"]["steps"].is_number_integer())
      r.data.planned_steps = plan["base"]["train"]["steps"].get<int64_t>();
    runs.push_back(std::move(r));
  }
  auto runs_of = [&](const std::string& id) {
    std::vector<const SweepRun*> out;
    for (const SweepRun& r : runs)
      if (r.config == id) out.push_back(&r);
    return out;
  };

  Document doc(fmt::format("Sweep {}", name));
  int64_t complete = 0, started = 0;
  for (const SweepRun& r : runs) complete += r.data.summary ? 1 : 0, started += r.exists ? 1 : 0;
  doc.paragraph(fmt::format(
      "{} configuration{} x {} seed{}: {} runs, {} complete, {} started and not complete, {} not "
      "started.{} Metrics of every run as one CSV: {} (columns config, seed, step, ...).",
      configs.size(), configs.size() == 1 ? "" : "s",
      plan.contains("seeds") && plan["seeds"].is_array() ? plan["seeds"].size() : 0,
      plan.contains("seeds") && plan["seeds"].is_array() && plan["seeds"].size() == 1 ? "" : "s",
      runs.size(), complete, started - complete, static_cast<int64_t>(runs.size()) - started,
      plan.contains("source") ? fmt::format(" Descriptor: {}.", format_value(plan["source"])) : "",
      kMetricsCsv));
  if (complete < static_cast<int64_t>(runs.size()))
    doc.note(
        "Some runs have not completed: their curves go up to their last logged step, and "
        "the tables count only complete runs.");

  // Per-configuration statistics of the summaries: aggregate.json when present, else computed the
  // same way from the summary.json files.
  std::map<std::string, std::map<std::string, Stat>> stats;  // config id -> metric -> stat
  std::vector<std::string> metric_names;
  std::optional<json> aggregate = read_json_if_present(dir / kAggregateFile);
  int64_t aggregate_runs = 0;
  if (aggregate) {
    const fs::path agg_path = dir / kAggregateFile;
    GRADUS_CHECK(aggregate->is_object() && aggregate->contains("configs") &&
                     (*aggregate)["configs"].is_array(),
                 "gradus report", "{}: \"configs\" should be an array", agg_path.string());
    if (aggregate->contains("metrics") && (*aggregate)["metrics"].is_array())
      for (const json& m : (*aggregate)["metrics"])
        if (m.is_string()) metric_names.push_back(m.get<std::string>());
    for (const json& c : (*aggregate)["configs"]) {
      if (!c.is_object() || !c.contains("id") || !c.contains("metrics")) continue;
      for (const auto& [m, s] : c["metrics"].items()) {
        Stat st;
        st.mean = number_or_nan(s, "mean");
        st.std = number_or_nan(s, "std");
        st.n = s.contains("n") && s["n"].is_number_integer() ? s["n"].get<int64_t>() : 0;
        stats[c["id"].get<std::string>()][m] = st;
      }
      if (c.contains("seeds") && c["seeds"].is_array())
        aggregate_runs += static_cast<int64_t>(c["seeds"].size());
    }
  } else {
    std::set<std::string> seen;
    for (const SweepConfig& c : configs) {
      std::map<std::string, std::vector<double>> values;
      for (const SweepRun* r : runs_of(c.id)) {
        if (!r->data.summary) continue;
        for (const auto& [k, v] : r->data.summary->items())
          if (v.is_number()) {
            values[k].push_back(v.get<double>());
            if (seen.insert(k).second) metric_names.push_back(k);
          }
      }
      for (const auto& [k, v] : values) stats[c.id][k] = stat_of(v);
    }
  }

  doc.heading("Validation loss");
  std::vector<svg::Series> val, train;
  for (const SweepConfig& c : configs) {
    val.push_back(mean_curve(runs_of(c.id), "val_loss", c.name));
    train.push_back(mean_curve(runs_of(c.id), "train_loss", c.name));
  }
  if (configs.size() > kMaxSeries) {
    doc.paragraph(fmt::format("{} configurations; the curves show the first {}.", configs.size(),
                              kMaxSeries));
    val.resize(kMaxSeries), train.resize(kMaxSeries);
  }
  auto comparison = [&](const char* key, const char* title) {
    svg::PointChart p;
    p.title = title;
    p.x_label = fmt::format("{} (mean \xC2\xB1 std over complete seeds)", key);
    for (const SweepConfig& c : configs) {
      auto it = stats[c.id].find(key);
      if (it != stats[c.id].end() && it->second.n > 0)
        p.points.push_back({c.name, it->second.mean, it->second.std});
    }
    return Chart{key, title, svg::render(p)};
  };
  doc.charts({line_chart("val_loss", "Validation loss, mean \xC2\xB1 std over seeds",
                         "validation loss (nats / token)", val),
              line_chart("train_loss", "Training loss, mean \xC2\xB1 std over seeds",
                         "training loss (nats / token)", train),
              comparison("final_val_loss", "Final validation loss per configuration"),
              comparison("best_val_loss", "Best validation loss per configuration")});

  doc.heading("Aggregate");
  if (aggregate) {
    doc.paragraph(
        fmt::format("From {} (mean \xC2\xB1 sample std (complete seeds)); {} has every "
                    "metric.",
                    kAggregateFile, "aggregate.csv"));
    if (aggregate_runs != complete)
      doc.note(
          fmt::format("{} counts {} complete runs, the run directories hold {}: run the sweep "
                      "again to refresh it.",
                      kAggregateFile, aggregate_runs, complete));
  } else {
    doc.paragraph(
        fmt::format("No {} yet: computed from the runs' {} files (mean \xC2\xB1 sample "
                    "std (complete seeds)).",
                    kAggregateFile, kSummaryFile));
  }
  std::vector<std::string> shown;
  for (const char* m : kHeadline)
    if (std::find(metric_names.begin(), metric_names.end(), m) != metric_names.end())
      shown.push_back(m);
  Table agg{{"configuration", "complete seeds"}, {}};
  for (const auto& m : shown) agg.header.push_back(m);
  for (const SweepConfig& c : configs) {
    int64_t done = 0;
    const auto cr = runs_of(c.id);
    for (const SweepRun* r : cr) done += r->data.summary ? 1 : 0;
    std::vector<std::string> row{c.name, fmt::format("{} of {}", done, cr.size())};
    for (const auto& m : shown) {
      auto it = stats[c.id].find(m);
      row.push_back(it == stats[c.id].end() ? "" : format_stat(it->second));
    }
    agg.rows.push_back(std::move(row));
  }
  doc.table(std::move(agg));

  doc.heading("Runs");
  Table rt{{"configuration", "seed", "directory", "status", "final_val_loss", "best_val_loss",
            "wall_time_s"},
           {}};
  for (const SweepRun& r : runs) {
    std::vector<std::string> row{r.config, std::to_string(r.seed), r.dir,
                                 r.exists ? run_status(r.data) : "not started"};
    for (const char* k : {"final_val_loss", "best_val_loss", "wall_time_s"})
      row.push_back(
          r.data.summary && r.data.summary->contains(k) ? format_value((*r.data.summary)[k]) : "");
    rt.rows.push_back(std::move(row));
  }
  doc.table(std::move(rt));

  doc.heading("Configurations");
  Table ct{{"id", "name", "overrides"}, {}};
  for (const SweepConfig& c : configs)
    ct.rows.push_back({c.id, c.name, overrides_text(c.overrides)});
  doc.table(std::move(ct));

  // Distinct machines, each with the runs that recorded it.
  std::vector<std::pair<json, std::string>> machines;
  std::vector<std::vector<std::string>> machine_runs;
  for (const SweepRun& r : runs) {
    if (!r.data.machine) continue;
    size_t i = 0;
    while (i < machines.size() && machines[i].first != *r.data.machine) ++i;
    if (i == machines.size())
      machines.emplace_back(*r.data.machine, ""), machine_runs.emplace_back();
    machine_runs[i].push_back(r.dir);
  }
  for (size_t i = 0; i < machines.size(); ++i)
    machines[i].second =
        machines.size() == 1 && machine_runs[i].size() == runs.size()
            ? ""
            : fmt::format("Recorded by {} run{}: {}", machine_runs[i].size(),
                          machine_runs[i].size() == 1 ? "" : "s", fmt::join(machine_runs[i], ", "));
  add_machine_section(doc, machines, runs.size());

  doc.heading("Base descriptor");
  doc.code(plan.contains("base") ? plan["base"].dump(2) : "(sweep.json has no \"base\")");

  std::vector<LabelledMetrics> all;
  for (const SweepRun& r : runs) {
    if (!r.exists) continue;
    all.push_back({{r.config, std::to_string(r.seed)}, r.data.lines});
    csvs.emplace_back((dir / r.dir / kMetricsCsv).string(), metrics_csv(r.data.lines));
  }
  csvs.emplace_back((dir / kMetricsCsv).string(), metrics_csv({"config", "seed"}, all));
  return doc;
}

// ---- pipeline -----------------------------------------------------------------------------------

// The result a command step printed: its output's last line that is a JSON object (the hardmax
// commands print one), or null.
json last_json_line(const std::vector<std::string>& lines) {
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    if (it->empty() || it->front() != '{') continue;
    try {
      json j = json::parse(*it);
      if (j.is_object()) return j;
    } catch (const json::exception&) {
    }
  }
  return json();
}

// A pipeline directory (pipeline.json, from `gradus run` on a pipeline document): the steps with
// their status, then each step's own report (a run or a sweep) or, for a command step, its result
// and the end of its output.
Document pipeline_report(const fs::path& dir,
                         std::vector<std::pair<std::string, std::string>>& csvs) {
  const fs::path state_path = dir / kPipelineStateFile;
  const json state = read_json(state_path);
  GRADUS_CHECK(state.is_object() && state.contains("steps") && state["steps"].is_array(),
               "gradus report", "{}: \"steps\" should be an array", state_path.string());
  const std::string name = state.contains("name") && state["name"].is_string()
                               ? state["name"].get<std::string>()
                               : dir_name(dir);
  Document doc(fmt::format("Pipeline {}", name));
  Table steps{{"step", "what", "status", "time", "command"}, {}};
  for (const json& s : state["steps"]) {
    GRADUS_CHECK(s.is_object() && s.contains("name") && s["name"].is_string(), "gradus report",
                 "{}: every step should be an object with a \"name\"", state_path.string());
    std::vector<std::string> command;
    if (s.contains("command") && s["command"].is_array())
      for (const json& a : s["command"]) command.push_back(format_value(a));
    std::string status = s.contains("status") ? format_value(s["status"]) : "";
    // The step writing this page is still running when the page is written.
    if (status == "running" && command.size() > 1 && command[1] == "report")
      status = "writing this page";
    steps.rows.push_back({s["name"].get<std::string>(),
                          s.contains("about") ? format_value(s["about"]) : "", status,
                          s.contains("seconds") && s["seconds"].is_number()
                              ? format_duration(s["seconds"].get<double>())
                              : "",
                          shell_line(command)});
  }
  doc.paragraph(fmt::format(
      "{} steps, each a gradus command run in turn; each step's output is in <step>/log.txt "
      "and its record in {}.",
      steps.rows.size(), kPipelineStateFile));
  doc.table(steps);

  for (const json& s : state["steps"]) {
    const std::string step = s["name"];
    // A name from the file is a directory under dir, never a path out of it.
    if (step.empty() || step == "." || step == ".." || step.find('/') != std::string::npos) {
      doc.note(fmt::format("Step \"{}\" is not a plain name; skipped.", step));
      continue;
    }
    const fs::path step_dir = dir / step;
    const std::string about = s.contains("about") ? format_value(s["about"]) : "";
    std::error_code ec;
    if (fs::is_regular_file(step_dir / kSweepFile, ec)) {
      doc.append(sweep_report(step_dir, csvs), step + ": ", step + "_");
      continue;
    }
    if (fs::is_regular_file(step_dir / "run" / kResolvedFile, ec)) {
      doc.append(run_report(step_dir / "run", csvs), step + ": ", step + "_");
      continue;
    }
    doc.heading(about.empty() ? step : fmt::format("{}: {}", step, about));
    const std::string status = s.contains("status") ? format_value(s["status"]) : "unknown";
    if (status != "done")
      doc.note(fmt::format("This step is {}{}.", status,
                           s.contains("exit") ? " (" + format_value(s["exit"]) + ")" : ""));
    std::vector<std::string> lines;
    {
      std::ifstream in(step_dir / "log.txt");
      for (std::string line; std::getline(in, line);) {
        if (size_t cr = line.rfind('\r'); cr != std::string::npos) line = line.substr(cr + 1);
        if (line.rfind("$ ", 0) == 0) continue;  // the command line, already in the table
        lines.push_back(line);
      }
    }
    if (lines.empty()) {
      doc.paragraph("No output recorded.");
      continue;
    }
    if (json result = last_json_line(lines); !result.is_null()) {
      doc.table(key_value_table(result, "result"));
      continue;
    }
    // The end of the output (a theory-check table, say).
    constexpr size_t kTail = 40;
    std::string tail;
    for (size_t i = lines.size() > kTail ? lines.size() - kTail : 0; i < lines.size(); ++i)
      tail += lines[i] + "\n";
    if (lines.size() > kTail)
      doc.paragraph(fmt::format("The last {} of {} lines of output:", kTail, lines.size()));
    doc.code(tail, "text");
  }
  return doc;
}

}  // namespace

// ---- public -------------------------------------------------------------------------------------

std::vector<json> read_metrics_lines(const std::string& path) {
  MetricsLog log(path);
  log.load(std::numeric_limits<int64_t>::max());
  return log.lines();
}

std::string metrics_csv(const std::vector<std::string>& lead_columns,
                        const std::vector<LabelledMetrics>& runs) {
  std::vector<std::string> columns{"step"};
  std::set<std::string> known{"step"};
  for (const auto& run : runs)
    for (const json& l : run.lines)
      for (const auto& [k, v] : l.items())
        if (v.is_number() && known.insert(k).second) columns.push_back(k);
  std::string out;
  for (const auto& c : lead_columns) out += csv_field(c) + ",";
  for (size_t i = 0; i < columns.size(); ++i) out += (i ? "," : "") + csv_field(columns[i]);
  out += "\n";
  for (const auto& run : runs) {
    GRADUS_CHECK(run.labels.size() == lead_columns.size(), "metrics_csv",
                 "{} labels for {} lead columns", run.labels.size(), lead_columns.size());
    for (const json& l : run.lines) {
      for (const auto& label : run.labels) out += csv_field(label) + ",";
      for (size_t i = 0; i < columns.size(); ++i) {
        if (i) out += ",";
        auto it = l.find(columns[i]);
        if (it != l.end() && it->is_number()) out += it->dump();
      }
      out += "\n";
    }
  }
  return out;
}

std::string metrics_csv(const std::vector<json>& lines) { return metrics_csv({}, {{{}, lines}}); }

ReportFiles write_report(const std::string& dir_arg, const std::string& html_path) {
  const fs::path dir(dir_arg);
  std::error_code ec;
  GRADUS_CHECK(fs::is_directory(dir, ec), "gradus report", "{} is not a directory", dir_arg);
  std::vector<std::pair<std::string, std::string>> csvs;  // (path, contents)
  std::optional<Document> doc;
  if (fs::is_regular_file(dir / kPipelineStateFile, ec)) {
    doc = pipeline_report(dir, csvs);
  } else if (fs::is_regular_file(dir / kSweepFile, ec)) {
    doc = sweep_report(dir, csvs);
  } else if (fs::is_regular_file(dir / kResolvedFile, ec)) {
    doc = run_report(dir, csvs);
  } else {
    GRADUS_FAIL("gradus report",
                "{} holds none of {} (a run directory, from gradus run), {} (a sweep "
                "directory, from gradus sweep) and {} (a pipeline directory, from gradus run on a "
                "pipeline document)",
                dir_arg, kResolvedFile, kSweepFile, kPipelineStateFile);
  }

  ReportFiles files;
  files.html = html_path.empty() ? (dir / "report.html").string() : html_path;
  const fs::path html(files.html);
  const fs::path folder = html.parent_path().empty() ? fs::path(".") : html.parent_path();
  const std::string stem = html.stem().string();
  for (const Chart& c : doc->all_charts()) {
    const std::string svg_path = (folder / (stem + "_" + c.key + ".svg")).string();
    write_text_atomic(svg_path, c.svg);
    files.svgs.push_back(svg_path);
  }
  for (const auto& [path, text] : csvs) {
    write_text_atomic(path, text);
    files.csvs.push_back(path);
  }
  files.markdown = (folder / (stem + ".md")).string();
  write_text_atomic(files.markdown, doc->markdown(stem + "_"));
  write_text_atomic(files.html, doc->html());
  return files;
}

}  // namespace gradus::experiments
