// gradus run on a graph-aware kind logs the graph diagnostics (models/graph/diagnostics.h): every
// evaluation's metrics line and summary.json carry GIN's alpha per layer and eps per head; a "std"
// run carries none. Also: gradus graph-finetune takes seed 0 (the fine-tuning experiment's seeds).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "experiments/lib/commands.h"
#include "experiments/lib/lm_job.h"
#include "experiments/lib/run_dir.h"
#include "support/expect_error.h"

namespace gradus::experiments {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

fs::path repo_root() { return fs::path(__FILE__).parent_path().parent_path().parent_path(); }

std::vector<json> read_jsonl(const fs::path& p) {
  std::vector<json> out;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

class GraphMetrics : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fmt::format("gradus_graph_metrics_{}_{}",
                       ::testing::UnitTest::GetInstance()->current_test_info()->name(),
                       static_cast<long>(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  LmRunResult run(const std::string& kind) {
    LmRunOptions o;
    o.descriptor_path = (repo_root() / "experiments" / "lm_tiny_test.json").string();
    o.overrides = {"log.dir=" + dir_.string(), "model.attention_kind=" + kind, "train.steps=20",
                   "eval.every=10"};
    o.project_root = repo_root().string();
    std::ostringstream log;
    return run_lm(o, log);
  }

  fs::path dir_;
};

TEST_F(GraphMetrics, GinEvaluationsAndSummaryCarryAlphaAndEps) {
  LmRunResult r = run("gin");
  ASSERT_TRUE(r.completed);
  int evaluations = 0;
  for (const json& line : read_jsonl(fs::path(r.run_dir) / kMetricsFile)) {
    SCOPED_TRACE(line.dump());
    if (!line.contains("val_loss")) {
      EXPECT_FALSE(line.contains("graph"));  // only at evaluations
      continue;
    }
    ++evaluations;
    ASSERT_TRUE(line.contains("graph"));
    EXPECT_EQ(line["graph"]["kind"], "gin");
    ASSERT_EQ(line["graph"]["alpha"].size(), 2u);  // lm_tiny_test: 2 layers of 2 heads
    ASSERT_EQ(line["graph"]["eps"].size(), 2u);
    EXPECT_EQ(line["graph"]["eps"][0].size(), 2u);
  }
  EXPECT_EQ(evaluations, 2);
  const json& g = r.summary.at("graph");
  // Trained: alpha has moved away from its initial 1 and eps from 0.
  EXPECT_NE(g["alpha"][0].get<double>(), 1.0);
  EXPECT_NE(g["eps"][1][0].get<double>(), 0.0);
  // summary.json on disk holds the same final values as the last evaluation.
  std::ifstream in(fs::path(r.run_dir) / kSummaryFile);
  EXPECT_EQ(json::parse(in)["graph"],
            read_jsonl(fs::path(r.run_dir) / kMetricsFile).back()["graph"]);
}

TEST_F(GraphMetrics, StdRunHasNoGraphReport) {
  LmRunResult r = run("std");
  ASSERT_TRUE(r.completed);
  EXPECT_FALSE(r.summary.contains("graph"));
  for (const json& line : read_jsonl(fs::path(r.run_dir) / kMetricsFile))
    EXPECT_FALSE(line.contains("graph"));
}

TEST(GraphFinetuneCli, SeedZeroIsAcceptedAndANegativeSeedNamed) {
  const Command* cmd = find_command("graph-finetune");
  ASSERT_NE(cmd, nullptr);
  // Seed 0 parses; the run then stops at the missing base, naming it.
  testing::expect_error(
      [&] {
        cmd->run({"--seed", "0", "--corpus", "x.txt", "--base", "no_such_base.safetensors"});
      },
      {"no_such_base.safetensors"});
  testing::expect_error(
      [&] {
        cmd->run({"--seed", "-1"});
      },
      {"graph-finetune", "--seed", "non-negative", "\"-1\""});
  testing::expect_error(
      [&] {
        cmd->run({"--steps", "0"});
      },
      {"graph-finetune", "--steps", "positive", "\"0\""});
}

}  // namespace
}  // namespace gradus::experiments
