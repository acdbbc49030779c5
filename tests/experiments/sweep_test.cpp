// Sweeps: expanding grid x variants x seeds (ids, order), validation of the "sweep" object and of
// every expanded configuration, sharding, aggregation on hand-written summaries, skipping finished
// runs, and one sweep of the tiny descriptor through the real binary.
#include "experiments/lib/sweep.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "experiments/lib/run_dir.h"
#include "models/io/atomic_file.h"
#include "support/expect_error.h"
#include "support/subprocess.h"
#include "support/test_dir.h"

namespace gradus::experiments {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;
using gradus::testing::expect_error;

fs::path repo_root() { return fs::path(__FILE__).parent_path().parent_path().parent_path(); }

using gradus::testing::read_json;
using gradus::testing::read_text;

class Sweep : public gradus::testing::TempDirTest {
 protected:
  Sweep() : TempDirTest("sweep") {}

  // A small valid descriptor (the tiny model on the committed excerpt) with `sweep`.
  ordered_json descriptor(const std::string& sweep_text) const {
    ordered_json d =
        ordered_json::parse(read_text(repo_root() / "experiments" / "lm_tiny_test.json"), nullptr,
                            true, /*ignore_comments=*/true);
    d["log"]["dir"] = dir_.string();
    d["log"]["name"] = "grid";
    d["sweep"] = ordered_json::parse(sweep_text);
    return d;
  }
  std::string write_descriptor(const ordered_json& d, const std::string& name = "grid.json") const {
    std::string path = (dir_ / name).string();
    write_text_atomic(path, d.dump(2));
    return path;
  }
};

TEST_F(Sweep, ExpandsVariantsTimesGridTimesSeeds) {
  SweepPlan p = plan_sweep(descriptor(R"({
      "seeds": [3, 1],
      "grid": {"train.lr": [1e-3, 3e-4], "train.batch_size": [2, 4]},
      "variants": [{"name": "reference", "set": {"model.attention_kind": "std"}},
                   {"name": "deep net", "set": {"model.num_hidden_layers": 3}}]})"),
                           "grid.json");
  ASSERT_EQ(p.configs.size(), 8u);
  // Variants in order; the grid in the document's key order, the last key fastest.
  EXPECT_EQ(p.configs[0].id, "reference,lr=0.001,batch_size=2");
  EXPECT_EQ(p.configs[1].id, "reference,lr=0.001,batch_size=4");
  EXPECT_EQ(p.configs[2].id, "reference,lr=0.0003,batch_size=2");
  EXPECT_EQ(p.configs[4].id, "deep_net,lr=0.001,batch_size=2");  // the id is a file-name slug
  EXPECT_EQ(p.configs[4].name, "deep net train.lr=0.001 train.batch_size=2");
  EXPECT_EQ(p.configs[7].overrides,
            json({{"model.num_hidden_layers", 3}, {"train.lr", 3e-4}, {"train.batch_size", 4}}));
  // Seed-major: every config at the first seed, then the next.
  ASSERT_EQ(p.runs.size(), 16u);
  EXPECT_EQ(p.seeds, (std::vector<uint64_t>{3, 1}));
  for (size_t i = 0; i < 16; ++i) {
    EXPECT_EQ(p.runs[i].seed, i < 8 ? 3u : 1u);
    EXPECT_EQ(p.runs[i].config, p.configs[i % 8].id);
    EXPECT_EQ(p.runs[i].dir, p.configs[i % 8].id + "/seed-" + std::to_string(p.runs[i].seed));
  }
  EXPECT_EQ(p.dir, (dir_ / "grid").string());
  EXPECT_EQ(p.base["train"]["lr"], 3e-3);  // the base as the file gives it
  // A run's overrides: its config's keys and the seed, as --set assignments.
  std::vector<std::string> o = p.run_overrides(p.runs[9]);
  EXPECT_EQ(o, (std::vector<std::string>{"model.attention_kind=\"std\"", "train.batch_size=4",
                                         "train.lr=0.001", "seed=1"}));
  // sweep.json's shape (the interface `gradus report` reads).
  json j = p.to_json();
  for (const char* k : {"name", "source", "base", "seeds", "configs", "runs"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["runs"][0], json({{"config", p.configs[0].id}, {"seed", 3}, {"dir", p.runs[0].dir}}));
}

TEST_F(Sweep, SeedsCountAndDefaults) {
  SweepPlan counted = plan_sweep(descriptor(R"({"seeds": 3})"), "grid.json");
  EXPECT_EQ(counted.seeds, (std::vector<uint64_t>{0, 1, 2}));
  ASSERT_EQ(counted.configs.size(), 1u);
  EXPECT_EQ(counted.configs[0].id, "base");
  // No seeds: the descriptor's own seed (1 in the tiny descriptor).
  SweepPlan plain = plan_sweep(descriptor(R"({"grid": {"train.steps": [5, 10]}})"), "grid.json");
  EXPECT_EQ(plain.seeds, (std::vector<uint64_t>{1}));
  EXPECT_EQ(plain.configs[1].id, "steps=10");
  // --set sweep.* changes the sweep, any other --set the base.
  SweepPlan set =
      plan_sweep(descriptor(R"({"seeds": 3})"), "grid.json", {"sweep.seeds=[7]", "train.lr=0.01"});
  EXPECT_EQ(set.seeds, (std::vector<uint64_t>{7}));
  EXPECT_EQ(set.base["train"]["lr"], 0.01);
  EXPECT_EQ(set.base_document["train"]["lr"], 0.01);
  EXPECT_EQ(set.base_document["log"]["name"], "grid");
}

TEST_F(Sweep, RejectsBadSweepObjects) {
  auto plan = [&](const std::string& sweep) { plan_sweep(descriptor(sweep), "grid.json"); };
  expect_error([&] { plan(R"({"grid": {"train.lrr": [1, 2]}})"); },
               {"sweep.grid.train.lrr", "did you mean \"train.lr\""});
  expect_error([&] { plan(R"({"grid": {"train.lr": []}})"); },
               {"sweep.grid.train.lr", "non-empty list"});
  expect_error([&] { plan(R"({"grid": {"train.lr": 0.1}})"); }, {"sweep.grid.train.lr", "0.1"});
  expect_error([&] { plan(R"({"grid": {"seed": [1, 2]}})"); }, {"sweep.grid.seed", "sweep.seeds"});
  expect_error([&] { plan(R"({"grid": {"log.name": ["a"]}})"); }, {"sweep.grid.log.name"});
  expect_error([&] { plan(R"({"seeds": -2})"); }, {"sweep.seeds", "-2"});
  expect_error([&] { plan(R"({"seeds": 0})"); }, {"sweep.seeds", "found 0"});
  expect_error([&] { plan(R"({"seeds": []})"); }, {"sweep.seeds", "at least one seed"});
  expect_error([&] { plan(R"({"seeds": [1, "two"]})"); }, {"sweep.seeds[1]", "\"two\""});
  expect_error([&] { plan(R"({"seeds": [4, 4]})"); }, {"sweep.seeds[1]", "twice"});
  expect_error([&] { plan(R"({"seed": 3})"); }, {"sweep.seed", "did you mean \"sweep.seeds\""});
  expect_error([&] { plan(R"({"variants": [{"name": "a", "sett": {}}]})"); },
               {"sweep.variants[0].sett", "did you mean"});
  expect_error([&] { plan(R"({"variants": [{"set": {}}]})"); }, {"sweep.variants[0].name"});
  expect_error([&] { plan(R"({"variants": [{"name": "a"}, {"name": "a"}]})"); },
               {"sweep.variants[1].name", "another variant"});
  expect_error(
      [&] {
        plan(
            R"({"grid": {"train.lr": [1, 2]}, "variants": [{"name": "a", "set": {"train.lr": 3}}]})");
      },
      {"sweep.variants[0].set.train.lr", "sweep.grid"});
  // Every problem at once.
  expect_error([&] { plan(R"({"seeds": 0, "grid": {"train.lrr": [1]}})"); },
               {"2 problems", "sweep.seeds", "sweep.grid.train.lrr"});
}

TEST_F(Sweep, ValidatesEveryConfigurationNamingIt) {
  // The base itself is fine; one variant's override and two grid values are not.
  std::string msg = gradus::testing::error_message([&] {
    plan_sweep(descriptor(R"({
        "grid": {"train.warmup_steps": [0, 100]},
        "variants": [{"name": "ok", "set": {"train.lr": 1e-3}},
                     {"name": "bad", "set": {"train.lr": -1}}]})"),
               "grid.json");
  });
  // bad x {0, 100}: the learning rate; {ok, bad} x 100: more warm-up than steps.
  EXPECT_NE(msg.find("4 problems"), std::string::npos) << msg;
  EXPECT_NE(
      msg.find("train.lr: expected a positive number, found -1 [config \"bad,warmup_steps=0\", "
               "from sweep.variants[1].set.train.lr]"),
      std::string::npos)
      << msg;
  // warmup_steps = 100 > train.steps = 30: a problem of both variants' configs.
  EXPECT_NE(msg.find("[config \"ok,warmup_steps=100\", from sweep.grid.train.warmup_steps]"),
            std::string::npos)
      << msg;
  // An invalid base is reported as the base (no config named).
  ordered_json d = descriptor(R"({"seeds": 2})");
  d["train"]["steps"] = "ten";
  expect_error([&] { plan_sweep(d, "grid.json"); }, {"train.steps", "\"ten\""});
}

TEST_F(Sweep, ShardsPartitionTheRuns) {
  for (size_t runs : {0u, 1u, 7u, 12u}) {
    for (int64_t n = 1; n <= 5; ++n) {
      std::vector<int> owner(runs, -1);
      for (int64_t i = 0; i < n; ++i) {
        for (size_t r : shard_runs(runs, Shard{i, n})) {
          ASSERT_LT(r, runs);
          EXPECT_EQ(owner[r], -1) << "run " << r << " in two shards";
          EXPECT_EQ(static_cast<int64_t>(r) % n, i);
          owner[r] = static_cast<int>(i);
        }
      }
      for (size_t r = 0; r < runs; ++r) EXPECT_GE(owner[r], 0) << "run " << r << " in no shard";
    }
  }
  Shard s = parse_shard("2/5");
  EXPECT_EQ(s.index, 2);
  EXPECT_EQ(s.count, 5);
  for (const char* bad : {"5/5", "-1/3", "1", "a/b", "0/0", "1/2x"})
    expect_error([&] { parse_shard(bad); }, {"--shard", bad});
}

// Hand-written summaries: the aggregation's arithmetic and files.
TEST_F(Sweep, AggregatesMeanSampleStdAndN) {
  SweepPlan p = plan_sweep(
      descriptor(R"({"seeds": 3, "grid": {"train.lr": [0.001, 0.002], "train.steps": [30]}})"),
      "grid.json");
  fs::create_directories(p.dir);
  write_text_atomic((fs::path(p.dir) / kSweepPlanFile).string(), p.to_json().dump());
  const std::string a = p.configs[0].id, b = p.configs[1].id;  // "lr=0.001,steps=30", ...
  const std::map<std::pair<std::string, int>, std::pair<double, double>> losses = {
      {{a, 0}, {1.0, 0.5}}, {{a, 1}, {2.0, 1.0}}, {{a, 2}, {4.0, 3.25}}, {{b, 1}, {2.5, 2.0}}};
  for (const auto& [key, loss] : losses) {
    fs::path run = fs::path(p.dir) / (key.first + "/seed-" + std::to_string(key.second));
    fs::create_directories(run);
    json summary = {{"final_val_loss", loss.first},
                    {"final_train_loss", loss.second},
                    {"steps", 30},
                    {"device", "cpu"},
                    {"name", "grid"},
                    {"converged", true}};
    write_text_atomic((run / kSummaryFile).string(), summary.dump());
  }
  json agg = aggregate_sweep(p.dir);
  EXPECT_EQ(agg["name"], "grid");
  // Numeric keys only (not strings or booleans), the gap added, final_val_loss first.
  EXPECT_EQ(agg["metrics"], json({"final_val_loss", "final_train_loss", "gap", "steps"}));
  const json& ca = agg["configs"][0];
  EXPECT_EQ(ca["id"], a);
  EXPECT_EQ(ca["seeds"], json({0, 1, 2}));
  const std::vector<double> va = {1.0, 2.0, 4.0};
  const double mean = (va[0] + va[1] + va[2]) / 3.0;
  double ss = 0.0;
  for (double v : va) ss += (v - mean) * (v - mean);
  EXPECT_DOUBLE_EQ(ca["metrics"]["final_val_loss"]["mean"].get<double>(), mean);
  EXPECT_DOUBLE_EQ(ca["metrics"]["final_val_loss"]["std"].get<double>(), std::sqrt(ss / 2.0));
  EXPECT_EQ(ca["metrics"]["final_val_loss"]["n"], 3);
  EXPECT_EQ(ca["metrics"]["final_val_loss"]["values"], json(va));
  EXPECT_EQ(ca["metrics"]["gap"]["values"], json({0.5, 1.0, 0.75}));
  EXPECT_DOUBLE_EQ(ca["metrics"]["steps"]["std"].get<double>(), 0.0);
  // One seed: std 0, n 1.
  const json& cb = agg["configs"][1];
  EXPECT_EQ(cb["seeds"], json({1}));
  EXPECT_EQ(cb["metrics"]["final_val_loss"],
            json({{"mean", 2.5}, {"std", 0.0}, {"n", 1}, {"values", {2.5}}}));
  EXPECT_EQ(cb["overrides"], json({{"train.lr", 0.002}, {"train.steps", 30}}));

  // The files: aggregate.json as returned; results.csv one row per finished run (ids quoted, they
  // hold commas), in the plan's (seed-major) order.
  EXPECT_EQ(read_json(fs::path(p.dir) / "aggregate.json"), agg);
  std::istringstream results(read_text(fs::path(p.dir) / "results.csv"));
  std::vector<std::string> rows;
  for (std::string line; std::getline(results, line);) rows.push_back(line);
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0], "config,seed,final_val_loss,final_train_loss,gap,steps");
  EXPECT_EQ(rows[1], "\"" + a + "\",0,1.0,0.5,0.5,30.0");
  EXPECT_EQ(rows[3], "\"" + b + "\",1,2.5,2.0,0.5,30.0");
  std::string csv = read_text(fs::path(p.dir) / "aggregate.csv");
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "config,name,n,final_val_loss_mean,final_val_loss_std,final_train_loss_mean,"
            "final_train_loss_std,gap_mean,gap_std,steps_mean,steps_std");
  std::string md = read_text(fs::path(p.dir) / "aggregate.md");
  EXPECT_NE(md.find(fmt::format("| {} | {:.4f} ± {:.4f} (3) |", p.configs[0].name, mean,
                                std::sqrt(ss / 2.0))),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| 2.5000 |"), std::string::npos) << "one seed: its value alone\n" << md;
  EXPECT_EQ(md.find("| steps"), std::string::npos) << "bookkeeping keys stay out of the table";
  expect_error([&] { aggregate_sweep((dir_ / "nowhere").string()); }, {"nowhere", "sweep.json"});
}

// Finished runs are skipped; a run that fails is reported with its status and log, the sweep goes
// on and exits 1; a changed plan is refused.
TEST_F(Sweep, SkipsFinishedRunsAndReportsFailures) {
  std::string path = write_descriptor(descriptor(R"({"grid": {"train.lr": [0.001, 0.002]}})"));
  SweepPlan p = load_sweep(path);
  fs::path finished = fs::path(p.dir) / p.runs[0].dir;
  fs::create_directories(finished);
  write_text_atomic((finished / kSummaryFile).string(),
                    json({{"final_val_loss", 1.25}, {"final_train_loss", 1.0}}).dump());
  SweepOptions o;
  o.descriptor_path = path;
  o.executable = (dir_ / "no-such-gradus").string();  // any run started would fail
  o.project_root = repo_root().string();
  std::ostringstream out;
  EXPECT_EQ(run_sweep(o, out), 1);
  const std::string text = out.str();
  EXPECT_NE(text.find("1 finished, 1 to run"), std::string::npos) << text;
  EXPECT_NE(text.find("skip  lr=0.001 seed 1: finished (val loss 1.2500)"), std::string::npos)
      << text;
  EXPECT_NE(text.find("FAIL  lr=0.002 seed 1: exit status 127"), std::string::npos) << text;
  EXPECT_NE(text.find("cannot start"), std::string::npos) << text;  // the end of its log.txt
  EXPECT_NE(text.find("0 ran, 1 skipped, 1 failed"), std::string::npos) << text;
  EXPECT_TRUE(fs::is_regular_file(fs::path(p.dir) / kSweepBaseFile));
  json agg = read_json(fs::path(p.dir) / "aggregate.json");
  EXPECT_EQ(agg["configs"][0]["seeds"], json({1}));
  EXPECT_EQ(agg["configs"][1]["seeds"], json::array());

  // A dry run lists what would run and starts nothing.
  o.dry_run = true;
  std::ostringstream dry;
  EXPECT_EQ(run_sweep(o, dry), 0);
  EXPECT_NE(dry.str().find("run    lr=0.002 seed 1: gradus run"), std::string::npos) << dry.str();

  // The same directory with another plan is refused, naming what differs.
  o.dry_run = false;
  o.overrides = {"train.steps=20"};
  expect_error([&] { run_sweep(o, out); },
               {"another sweep plan", "train.steps: 30 there, 20 now", "another log.name"});
  o.overrides = {"sweep.grid.train.lr=[0.001]"};
  expect_error([&] { run_sweep(o, out); }, {"configs: [lr=0.001, lr=0.002] there, [lr=0.001] now"});
}

// The real binary: 2 configs x 2 seeds, 2 at a time; the layout; a second invocation skips
// everything; a run whose summary is gone resumes; each run equals a plain `gradus run`.
TEST_F(Sweep, EndToEndThroughTheBinary) {
  ordered_json d = descriptor(R"({"seeds": 2, "grid": {"train.lr": [0.003, 0.001]}})");
  d["train"]["steps"] = 10;
  d["eval"]["every"] = 5;
  std::string path = write_descriptor(d);
  auto first = gradus::testing::run_gradus({"sweep", path, "--jobs", "2", "--threads", "1"});
  ASSERT_EQ(first.status, 0) << first.output;
  EXPECT_NE(first.output.find("0 finished, 4 to run, 2 at a time"), std::string::npos)
      << first.output;
  const fs::path sweep_dir = dir_ / "grid";
  for (const char* f : {"sweep.json", "base.json", "results.csv", "aggregate.json", "aggregate.csv",
                        "aggregate.md"})
    EXPECT_TRUE(fs::is_regular_file(sweep_dir / f)) << f;
  for (const char* config : {"lr=0.003", "lr=0.001"}) {
    for (int seed : {0, 1}) {
      fs::path run = sweep_dir / config / ("seed-" + std::to_string(seed));
      for (const char* f :
           {"resolved.json", "metrics.jsonl", "checkpoint.safetensors", "summary.json", "log.txt"})
        EXPECT_TRUE(fs::is_regular_file(run / f)) << run / f;
      EXPECT_EQ(read_json(run / "resolved.json")["seed"], seed);
    }
  }
  json agg = read_json(sweep_dir / "aggregate.json");
  ASSERT_EQ(agg["configs"].size(), 2u);
  EXPECT_EQ(agg["configs"][1]["metrics"]["final_val_loss"]["n"], 2);

  // Again, through `gradus run` on the same file: everything is finished already.
  const auto summary_time = fs::last_write_time(sweep_dir / "lr=0.001/seed-1/summary.json");
  auto second = gradus::testing::run_gradus({"run", path});
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_NE(second.output.find("4 finished, 0 to run"), std::string::npos) << second.output;
  EXPECT_NE(second.output.find("skip  lr=0.001 seed 1: finished"), std::string::npos);
  EXPECT_EQ(second.output.find("start "), std::string::npos) << second.output;
  EXPECT_EQ(fs::last_write_time(sweep_dir / "lr=0.001/seed-1/summary.json"), summary_time);

  // A run with a checkpoint and no summary resumes (and ends as before).
  const double val = read_json(sweep_dir / "lr=0.001/seed-1/summary.json")["final_val_loss"];
  fs::remove(sweep_dir / "lr=0.001/seed-1/summary.json");
  auto third = gradus::testing::run_gradus({"sweep", path, "--threads", "1"});
  ASSERT_EQ(third.status, 0) << third.output;
  EXPECT_NE(third.output.find("start lr=0.001 seed 1 (resuming)"), std::string::npos)
      << third.output;
  EXPECT_EQ(read_json(sweep_dir / "lr=0.001/seed-1/summary.json")["final_val_loss"].get<double>(),
            val);

  // A plain run of the tiny descriptor with the same seed and overrides: the same loss, bit for
  // bit.
  auto plain = gradus::testing::run_gradus(
      {"run", (repo_root() / "experiments" / "lm_tiny_test.json").string(), "--set",
       "train.steps=10", "--set", "eval.every=5", "--set", "train.lr=0.001", "--set", "seed=1",
       "--set", "log.dir=" + (dir_ / "plain").string(), "--threads", "1"});
  ASSERT_EQ(plain.status, 0) << plain.output;
  fs::path plain_run = fs::directory_iterator(dir_ / "plain" / "lm_tiny_test")->path();
  EXPECT_EQ(read_json(plain_run / "summary.json")["final_val_loss"].get<double>(), val);
}

}  // namespace
}  // namespace gradus::experiments
