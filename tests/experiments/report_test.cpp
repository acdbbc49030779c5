// `gradus report` and its SVG charts: the chart writer's axes, escaping and edge cases, and the
// reports of hand-made run and sweep directories (files, tables, CSV, determinism, errors).
#include "experiments/lib/report.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "experiments/lib/svg_plot.h"

namespace gradus::experiments {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void put(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

size_t count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + 1))
    ++n;
  return n;
}

// Well-formed XML in the sense that matters here: every element closed in order, attribute
// values quoted, and every '&' an entity. Returns "" or what is wrong.
std::string xml_problem(const std::string& x) {
  std::vector<std::string> open;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] == '&') {
      size_t semi = x.find(';', i);
      if (semi == std::string::npos || semi - i > 6) return "bare & at " + std::to_string(i);
      continue;
    }
    if (x[i] != '<') continue;
    size_t close = x.find('>', i);
    if (close == std::string::npos) return "unclosed tag at " + std::to_string(i);
    std::string tag = x.substr(i + 1, close - i - 1);
    if (tag.find('<') != std::string::npos) return "'<' inside a tag: " + tag;
    if (count(tag, "\"") % 2 != 0) return "unbalanced quotes in " + tag;
    i = close;
    if (tag.empty() || tag[0] == '?' || tag[0] == '!') continue;
    const bool closing = tag[0] == '/';
    const bool self_closing = tag.back() == '/';
    std::string name = tag.substr(closing ? 1 : 0);
    name = name.substr(0, name.find_first_of(" /\n"));
    if (closing) {
      if (open.empty() || open.back() != name) return "</" + name + "> closes nothing open";
      open.pop_back();
    } else if (!self_closing) {
      open.push_back(name);
    }
  }
  return open.empty() ? "" : "<" + open.back() + "> never closed";
}

// ---- the SVG writer -----------------------------------------------------------------------------

TEST(SvgPlot, NiceTicksAreRoundAndCoverTheRange) {
  std::vector<double> t = svg::nice_ticks(0.0, 1.0);
  ASSERT_EQ(t.size(), 6u);
  for (size_t i = 0; i < t.size(); ++i) EXPECT_NEAR(t[i], 0.2 * static_cast<double>(i), 1e-12);
  EXPECT_EQ(t[0], 0.0);
  // An axis for losses between 2.13 and 2.87: 2.1 .. 2.9 by 0.1, a tick at each step.
  svg::Axis a = svg::nice_axis(2.13, 2.87);
  EXPECT_NEAR(a.lo, 2.1, 1e-12);
  EXPECT_NEAR(a.hi, 2.9, 1e-12);
  EXPECT_NEAR(a.step, 0.1, 1e-15);
  ASSERT_EQ(a.ticks.size(), 9u);
  EXPECT_NEAR(a.ticks.front(), a.lo, 1e-12);
  EXPECT_NEAR(a.ticks.back(), a.hi, 1e-12);
  for (size_t i = 1; i < a.ticks.size(); ++i) EXPECT_NEAR(a.ticks[i] - a.ticks[i - 1], 0.1, 1e-12);
  // A large range gets steps of 1, 2 or 5 times a power of ten.
  EXPECT_EQ(svg::nice_axis(0.0, 30000.0).step, 5000.0);
  EXPECT_EQ(svg::nice_axis(0.0, 9.0).step, 2.0);  // 9 / 5 = 1.8 rounds to 2
  // A flat range is widened around its value.
  a = svg::nice_axis(3.0, 3.0);
  EXPECT_LT(a.lo, 3.0);
  EXPECT_GT(a.hi, 3.0);
  EXPECT_EQ(svg::nice_ticks(3.0, 3.0), std::vector<double>{3.0});
  EXPECT_TRUE(svg::nice_ticks(0.0, kNaN).empty());
}

TEST(SvgPlot, TickLabelsUseTheDigitsTheStepNeeds) {
  EXPECT_EQ(svg::format_tick(0.25, 0.05), "0.25");
  EXPECT_EQ(svg::format_tick(1.5, 0.5), "1.5");
  EXPECT_EQ(svg::format_tick(2000.0, 500.0), "2000");
  EXPECT_EQ(svg::format_tick(0.0, 0.1), "0");
  EXPECT_EQ(svg::format_tick(1e-5, 1e-5), "1e-05");
}

TEST(SvgPlot, EscapesTextForXml) {
  EXPECT_EQ(svg::escape_xml("<a & 'b'> \"c\"\x01\td"),
            "&lt;a &amp; &#39;b&#39;&gt; &quot;c&quot;\td");
  svg::LineChart c;
  c.title = "loss <&> \"quoted\"";
  c.series.push_back({"</svg><script>alert(1)</script>", {0, 1}, {1, 2}});
  const std::string out = svg::render(c);
  EXPECT_EQ(xml_problem(out), "");
  EXPECT_EQ(out.find("<script>"), std::string::npos);
  EXPECT_NE(out.find("&lt;/svg&gt;&lt;script&gt;"), std::string::npos);
  EXPECT_NE(out.find("loss &lt;&amp;&gt; &quot;quoted&quot;"), std::string::npos);
}

TEST(SvgPlot, LineChartDrawsEverySeriesWithLegendAndBand) {
  svg::LineChart c;
  c.title = "Loss";
  c.x_label = "step";
  c.y_label = "loss";
  c.series.push_back(
      {"train", {0, 10, 20, 30}, {4.0, 3.0, 2.5, 2.2}, {3.9, 2.9, 2.4, 2.1}, {4.1, 3.1, 2.6, 2.3}});
  c.series.push_back({"validation", {10, 30}, {3.2, 2.4}});
  const std::string out = svg::render(c);
  EXPECT_EQ(xml_problem(out), "");
  EXPECT_EQ(out.rfind("<svg", 0), 0u);
  EXPECT_NE(out.find(">train</text>"), std::string::npos);
  EXPECT_NE(out.find(">validation</text>"), std::string::npos);
  EXPECT_EQ(count(out, "<path "), 2u);     // one line per series
  EXPECT_EQ(count(out, "<polygon "), 1u);  // the band of the first
  EXPECT_EQ(count(out, "<circle "), 6u);   // few points: each marked
  // Axis labels at nice ticks: y 2.0 .. 4.5 by 0.5, x 0 .. 30 by 5.
  EXPECT_NE(out.find(">2.0</text>"), std::string::npos);
  EXPECT_NE(out.find(">4.0</text>"), std::string::npos);
  EXPECT_NE(out.find(">30</text>"), std::string::npos);
  EXPECT_EQ(out.find("not drawn"), std::string::npos);
}

TEST(SvgPlot, NonFiniteValuesAreSkippedAndNoted) {
  svg::LineChart c;
  c.series.push_back({"loss", {1, 2, 3, 4, 5}, {3.0, kNaN, 2.0, kInf, 1.5}});
  const std::string out = svg::render(c);
  EXPECT_EQ(xml_problem(out), "");
  EXPECT_NE(out.find("2 values not drawn (NaN or Inf)"), std::string::npos);
  // The line breaks at each gap: three runs of points, three "M" moves.
  const size_t d = out.find("<path d=\"");
  ASSERT_NE(d, std::string::npos);
  const std::string path = out.substr(d, out.find('"', d + 9) - d);
  EXPECT_EQ(count(path, "M"), 3u);
  EXPECT_EQ(out.find("nan"), std::string::npos);
  EXPECT_EQ(out.find("inf"), std::string::npos);
}

TEST(SvgPlot, LogAxisSkipsNonPositiveValuesAndTicksDecades) {
  svg::LineChart c;
  c.log_y = true;
  c.series.push_back({"kappa", {0, 1, 2, 3}, {1e-3, 0.0, 1.0, 10.0}});
  const std::string out = svg::render(c);
  EXPECT_EQ(xml_problem(out), "");
  EXPECT_NE(out.find(">0.001</text>"), std::string::npos);
  EXPECT_NE(out.find(">10</text>"), std::string::npos);
  EXPECT_NE(out.find("1 value not drawn"), std::string::npos);

  // Under two decades: 1-2-5 ticks, the range widened to the nearest of them.
  c.series = {{"kappa", {0, 1}, {3.2, 200.0}}};
  const std::string narrow = svg::render(c);
  for (const char* t : {">2</text>", ">5</text>", ">10</text>", ">20</text>", ">50</text>",
                        ">100</text>", ">200</text>"})
    EXPECT_NE(narrow.find(t), std::string::npos) << t;
  EXPECT_EQ(narrow.find(">1</text>"), std::string::npos);
  EXPECT_EQ(narrow.find(">500</text>"), std::string::npos);
  // One value on a log axis still gets an axis around it.
  c.series = {{"kappa", {0}, {7.0}}};
  EXPECT_EQ(xml_problem(svg::render(c)), "");
  EXPECT_EQ(svg::render(c).find("nan"), std::string::npos);
}

TEST(SvgPlot, EdgeCasesStillGiveAChart) {
  svg::LineChart empty;
  empty.title = "nothing";
  std::string out = svg::render(empty);
  EXPECT_EQ(xml_problem(out), "");
  EXPECT_NE(out.find(">no data</text>"), std::string::npos);

  svg::LineChart empty_series;
  empty_series.series.push_back({"a", {}, {}});
  EXPECT_NE(svg::render(empty_series).find(">no data</text>"), std::string::npos);

  svg::LineChart one;
  one.series.push_back({"one", {7}, {2.5}});
  out = svg::render(one);
  EXPECT_EQ(xml_problem(out), "");
  EXPECT_EQ(count(out, "<circle "), 1u);
  EXPECT_EQ(out.find("nan"), std::string::npos);

  svg::LineChart flat;  // all values equal: the axis is widened around them
  flat.series.push_back({"flat", {0, 1, 2}, {0.0, 0.0, 0.0}});
  out = svg::render(flat);
  EXPECT_EQ(xml_problem(out), "");
  EXPECT_NE(out.find(">0</text>"), std::string::npos);
  EXPECT_EQ(out.find("nan"), std::string::npos);
}

TEST(SvgPlot, PointChartShowsErrorBarsAndValues) {
  svg::PointChart c;
  c.title = "Final validation loss";
  c.x_label = "final_val_loss";
  c.points = {{"reference", 2.31, 0.02}, {"gin_g0.5", 2.25, 0.0}, {"broken", kNaN, 0.1}};
  const std::string out = svg::render(c);
  EXPECT_EQ(xml_problem(out), "");
  EXPECT_NE(out.find(">reference</text>"), std::string::npos);
  EXPECT_NE(out.find(">2.31 \xC2\xB1 0.02</text>"), std::string::npos);
  EXPECT_NE(out.find(">2.25</text>"), std::string::npos);
  EXPECT_NE(out.find(">not finite</text>"), std::string::npos);
  EXPECT_EQ(count(out, "<circle "), 2u);
  EXPECT_EQ(count(out, "<path "), 1u);  // a whisker only where there is an error
  EXPECT_NE(out.find("1 value not drawn"), std::string::npos);
  EXPECT_NE(svg::render(svg::PointChart{}).find(">no data</text>"), std::string::npos);
}

// ---- reports ------------------------------------------------------------------------------------

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            fmt::format("gradus_report_{}_{}", ::getpid(),
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // A run of `steps` steps logged every 5, evaluated every 10; complete when `complete`.
  static void make_run(const fs::path& dir, int steps, bool complete, double offset = 0.0,
                       bool machine = true, bool grading = false) {
    json resolved = {{"data", {{"corpus", "moby_dick_excerpt"}, {"context", 32}}},
                     {"train", {{"steps", 30}, {"lr", 3e-3}}},
                     {"log", {{"name", "tiny"}, {"every", 5}}},
                     {"seed", 1}};
    put(dir / "resolved.json", resolved.dump(2) + "\n");
    std::string lines;
    for (int s = 5; s <= steps; s += 5) {
      json l = {{"step", s},
                {"train_loss", 4.0 - 0.05 * s + offset},
                {"lr", 3e-3 * (1.0 - s / 40.0)},
                {"grad_norm", 1.0 / s},
                {"tokens_per_s", 1000.0 + s}};
      if (s % 10 == 0) l["val_loss"] = 4.1 - 0.04 * s + offset;
      if (grading)
        l["grading"] = {{"layers.0.attn",
                         {{"kappa", 1.0 + s},
                          {"lambda", 0.5},
                          {"s_max", 2.0},
                          {"q_min", 0.1},
                          {"q_mean", 0.2 + 0.01 * s},
                          {"q_max", 0.3}}}};
      lines += l.dump() + "\n";
    }
    put(dir / "metrics.jsonl", lines);
    if (complete)
      put(dir / "summary.json", json({{"name", "tiny"},
                                      {"steps", steps},
                                      {"final_val_loss", 4.1 - 0.04 * steps + offset},
                                      {"best_val_loss", 4.1 - 0.04 * steps + offset},
                                      {"final_train_loss", 4.0 - 0.05 * steps + offset},
                                      {"wall_time_s", 1.5}})
                                    .dump(2));
    if (machine)
      put(dir / "machine.json",
          json({{"cpu", "Test CPU @ 3 GHz"}, {"blas", "OpenBLAS test"}, {"threads", 2}}).dump(2));
  }

  // Two configurations x two seeds: "reference" complete; the other ("gin_g0.5,lr=0.001") with
  // seed 0 complete and seed 1 not started.
  void make_sweep(const fs::path& dir) {
    json plan = {
        {"name", "gin_grid"},
        {"source", "experiments/gin_grid.json"},
        {"base", {{"train", {{"steps", 30}}}, {"seed", 0}}},
        {"seeds", {0, 1}},
        {"configs",
         {{{"id", "reference"},
           {"name", "reference"},
           {"overrides", {{"model.attention_kind", "std"}}}},
          {{"id", "gin_g0.5,lr=0.001"},
           {"name", "gin g0.5 lr 1e-3"},
           {"overrides", {{"model.attention_kind", "gin"}, {"train.lr", 0.001}}}}}},
        {"runs",
         {{{"config", "reference"}, {"seed", 0}, {"dir", "reference/seed-0"}},
          {{"config", "reference"}, {"seed", 1}, {"dir", "reference/seed-1"}},
          {{"config", "gin_g0.5,lr=0.001"}, {"seed", 0}, {"dir", "gin_g0.5,lr=0.001/seed-0"}},
          {{"config", "gin_g0.5,lr=0.001"}, {"seed", 1}, {"dir", "gin_g0.5,lr=0.001/seed-1"}}}}};
    put(dir / "sweep.json", plan.dump(2));
    make_run(dir / "reference/seed-0", 30, true, 0.0);
    make_run(dir / "reference/seed-1", 30, true, 0.1);
    make_run(dir / "gin_g0.5,lr=0.001/seed-0", 30, true, -0.2);
  }

  fs::path root_;
};

TEST_F(ReportTest, RunReportHoldsCurvesTablesDescriptorAndMachine) {
  const fs::path run = root_ / "run";
  make_run(run, 30, true, 0.0, true, true);
  const ReportFiles f = write_report(run.string());
  EXPECT_EQ(f.html, (run / "report.html").string());
  EXPECT_EQ(f.markdown, (run / "report.md").string());
  for (const auto& p : f.svgs) EXPECT_TRUE(fs::is_regular_file(p)) << p;
  EXPECT_TRUE(fs::is_regular_file(run / "report_loss.svg"));
  EXPECT_TRUE(fs::is_regular_file(run / "report_grading_kappa.svg"));
  ASSERT_EQ(f.csvs, std::vector<std::string>{(run / "metrics.csv").string()});

  const std::string html = slurp(f.html);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(xml_problem(html.substr(html.find("<html"))), "");
  for (const char* s : {"training loss", "validation loss", "Learning rate", "Throughput",
                        "final_val_loss", ">2.9</td>", "Test CPU @ 3 GHz", "layers.0.attn",
                        "&quot;moby_dick_excerpt&quot;", "Complete: 30 steps"})
    EXPECT_NE(html.find(s), std::string::npos) << s;
  // Self-contained: nothing fetched, nothing run.
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(count(html, "<svg"), f.svgs.size());

  const std::string md = slurp(f.markdown);
  EXPECT_NE(md.find("| metric | value |"), std::string::npos);
  EXPECT_NE(md.find("| final_val_loss | 2.9 |"), std::string::npos);
  EXPECT_NE(md.find("![Loss](report_loss.svg)"), std::string::npos);
  EXPECT_NE(md.find("```json"), std::string::npos);
}

TEST_F(ReportTest, MetricsCsvHasTheUnionOfNumericColumnsStepFirst) {
  const fs::path run = root_ / "run";
  make_run(run, 20, true, 0.0, true, true);
  write_report(run.string());
  std::istringstream csv(slurp(run / "metrics.csv"));
  std::string header, first, second;
  std::getline(csv, header), std::getline(csv, first), std::getline(csv, second);
  // "grading" is an object, not a column; val_loss appears at step 10 only.
  EXPECT_EQ(header, "step,grad_norm,lr,tokens_per_s,train_loss,val_loss");
  EXPECT_EQ(first, fmt::format("5,{},{},1005.0,3.75,", json(0.2).dump(),
                               json(3e-3 * (1.0 - 5 / 40.0)).dump()));
  EXPECT_EQ(second.substr(second.rfind(',') + 1), json(4.1 - 0.04 * 10 + 0.0).dump());
  int rows = 0;
  for (std::string l; std::getline(csv, l);) ++rows;
  EXPECT_EQ(rows, 2);  // steps 15 and 20
}

TEST_F(ReportTest, ReportsAreByteIdenticalWhenRebuilt) {
  const fs::path run = root_ / "run";
  make_run(run, 30, true);
  const ReportFiles a = write_report(run.string());
  std::vector<std::string> first;
  for (const auto& p : a.svgs) first.push_back(slurp(p));
  const std::string html = slurp(a.html), md = slurp(a.markdown), csv = slurp(a.csvs[0]);
  const ReportFiles b = write_report(run.string());
  EXPECT_EQ(slurp(b.html), html);
  EXPECT_EQ(slurp(b.markdown), md);
  EXPECT_EQ(slurp(b.csvs[0]), csv);
  ASSERT_EQ(b.svgs, a.svgs);
  for (size_t i = 0; i < b.svgs.size(); ++i) EXPECT_EQ(slurp(b.svgs[i]), first[i]);
}

TEST_F(ReportTest, IncompleteRunIsReportedNotAnError) {
  const fs::path run = root_ / "run";
  make_run(run, 20, false, 0.0, false);
  const ReportFiles f = write_report(run.string());
  const std::string html = slurp(f.html);
  EXPECT_NE(html.find("has not completed"), std::string::npos);
  EXPECT_NE(html.find("incomplete: step 20 of 30"), std::string::npos);
  EXPECT_NE(html.find("machine not recorded"), std::string::npos);

  // Nothing logged yet is still a report.
  fs::remove(run / "metrics.jsonl");
  EXPECT_NE(slurp(write_report(run.string()).html).find("No metrics logged yet"),
            std::string::npos);
}

TEST_F(ReportTest, CorruptMetricsLineNamesFileAndLine) {
  const fs::path run = root_ / "run";
  make_run(run, 30, true);
  std::string lines = slurp(run / "metrics.jsonl");
  const size_t third = lines.find('\n', lines.find('\n') + 1) + 1;
  lines.insert(third, "{\"step\": 12, \"train_loss\": \n");
  put(run / "metrics.jsonl", lines);
  try {
    write_report(run.string());
    FAIL() << "a corrupt metrics line was accepted";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find((run / "metrics.jsonl").string() + " line 3"), std::string::npos) << what;
  }
  EXPECT_FALSE(fs::exists(run / "report.html"));
}

TEST_F(ReportTest, DirectoryThatIsNeitherRunNorSweepNorPipelineIsAnError) {
  try {
    write_report(root_.string());
    FAIL() << "an empty directory was reported";
  } catch (const Error& e) {
    for (const char* name : {"none of resolved.json", "sweep.json", "pipeline.json"})
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  }
  put(root_ / "sweep.json", "{\"configs\": [");
  try {
    write_report(root_.string());
    FAIL() << "a corrupt sweep.json was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sweep.json is not valid JSON"), std::string::npos)
        << e.what();
  }
}

TEST_F(ReportTest, SweepReportAggregatesSeedsPerConfiguration) {
  const fs::path sweep = root_ / "sweep";
  make_sweep(sweep);
  const ReportFiles f = write_report(sweep.string());
  const std::string html = slurp(f.html);
  EXPECT_EQ(xml_problem(html.substr(html.find("<html"))), "");
  for (const char* s : {"Sweep gin_grid", "gin g0.5 lr 1e-3", "not started", "No aggregate.json",
                        "model.attention_kind=gin, train.lr=0.001", "Test CPU @ 3 GHz",
                        "Final validation loss per configuration"})
    EXPECT_NE(html.find(s), std::string::npos) << s;
  // reference: final_val_loss 2.9 and 3.0 over two seeds: mean 2.95, sample std 0.0707.
  EXPECT_NE(html.find("2.95 \xC2\xB1 0.071 (2)"), std::string::npos);
  EXPECT_NE(html.find("1 of 2"), std::string::npos);
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_TRUE(fs::is_regular_file(sweep / "report_val_loss.svg"));
  EXPECT_TRUE(fs::is_regular_file(sweep / "reference/seed-1/metrics.csv"));
  // The mean curve has a band (two seeds).
  EXPECT_NE(slurp(sweep / "report_val_loss.svg").find("<polygon"), std::string::npos);

  const std::string csv = slurp(sweep / "metrics.csv");
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "config,seed,step,grad_norm,lr,tokens_per_s,train_loss,val_loss");
  EXPECT_NE(csv.find("\n\"gin_g0.5,lr=0.001\",0,5,"), std::string::npos);  // quoted id
  EXPECT_EQ(count(csv, "\n"), 1u + 3u * 6u);  // header + 3 runs x 6 lines

  const std::string md = slurp(f.markdown);
  EXPECT_NE(md.find("| configuration | complete seeds | final_val_loss |"), std::string::npos);
  EXPECT_NE(md.find("![Final validation loss per configuration](report_final_val_loss.svg)"),
            std::string::npos);
}

TEST_F(ReportTest, SweepReportReadsAggregateJsonWhenPresent) {
  const fs::path sweep = root_ / "sweep";
  make_sweep(sweep);
  json agg = {{"name", "gin_grid"},
              {"metrics", {"final_val_loss"}},
              {"configs",
               {{{"id", "reference"},
                 {"seeds", {0, 1}},
                 {"metrics",
                  {{"final_val_loss",
                    {{"mean", 1.2345}, {"std", 0.5}, {"n", 2}, {"values", {0.7345, 1.7345}}}}}}}}}};
  put(sweep / "aggregate.json", agg.dump());
  const std::string html = slurp(write_report(sweep.string()).html);
  EXPECT_NE(html.find("1.2345 \xC2\xB1 0.5 (2)"), std::string::npos);
  // aggregate.json counts 2 complete runs, the directories hold 3.
  EXPECT_NE(html.find("counts 2 complete runs, the run directories hold 3"), std::string::npos);
}

TEST_F(ReportTest, OutPutsTheReportWhereAsked) {
  const fs::path run = root_ / "run";
  make_run(run, 30, true);
  const fs::path out = root_ / "elsewhere" / "tiny.html";
  fs::create_directories(out.parent_path());
  const ReportFiles f = write_report(run.string(), out.string());
  EXPECT_TRUE(fs::is_regular_file(out));
  EXPECT_EQ(f.markdown, (root_ / "elsewhere" / "tiny.md").string());
  EXPECT_TRUE(fs::is_regular_file(root_ / "elsewhere" / "tiny_loss.svg"));
  EXPECT_NE(slurp(f.markdown).find("](tiny_loss.svg)"), std::string::npos);
}

// Renders a report in headless Chromium where it is installed (scripts/report-screenshot does
// the same by hand): the page loads offline and gives a non-trivial image.
TEST_F(ReportTest, ChromiumRendersTheReport) {
  if (!fs::exists("/usr/bin/chromium")) GTEST_SKIP() << "chromium is not installed";
  const fs::path run = root_ / "run";
  make_run(run, 30, true);
  const ReportFiles f = write_report(run.string());
  const fs::path png = root_ / "shot.png";
  const std::string cmd = fmt::format(
      "/usr/bin/chromium --headless --no-sandbox --disable-gpu --hide-scrollbars "
      "--user-data-dir={} --screenshot={} --window-size=1280,2400 file://{} >/dev/null 2>&1",
      (root_ / "profile").string(), png.string(), fs::absolute(f.html).string());
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  ASSERT_TRUE(fs::is_regular_file(png));
  EXPECT_GT(fs::file_size(png), 20000u);  // a blank 1280 x 2400 page compresses to far less
  EXPECT_EQ(slurp(png).substr(1, 3), "PNG");
}

}  // namespace
}  // namespace gradus::experiments
