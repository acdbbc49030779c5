// Pipelines (experiments/lib/pipeline.h): validation of the document before anything runs, steps
// run in order through the real binary, finished steps skipped on a second invocation, a failing
// step stopping the pipeline, and the committed tour.
#include "experiments/lib/pipeline.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "experiments/lib/descriptor.h"
#include "support/expect_error.h"
#include "support/subprocess.h"
#include "support/test_dir.h"

namespace gradus::experiments {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

fs::path repo_root() {
  for (fs::path p = fs::current_path(); !p.empty(); p = p.parent_path()) {
    if (fs::exists(p / "experiments" / "tour.json")) return p;
    if (p == p.parent_path()) break;
  }
  return fs::path(__FILE__).parent_path().parent_path().parent_path();
}

class Pipelines : public gradus::testing::TempDirTest {
 protected:
  Pipelines() : TempDirTest("pipeline") {}

  // Writes a pipeline document whose directory is inside the test's temp dir.
  std::string write(const json& steps, const std::string& name = "p") {
    json doc = {{"pipeline", {{"name", name}, {"dir", dir_.string()}, {"steps", steps}}}};
    std::string path = (dir_ / (name + ".json")).string();
    std::ofstream(path) << doc.dump(2);
    return path;
  }
  json state(const std::string& name = "p") {
    std::ifstream in(dir_ / name / kPipelineStateFile);
    return json::parse(in);
  }
};

TEST_F(Pipelines, EveryProblemIsReportedWithItsPath) {
  std::string path = (dir_ / "bad.json").string();
  std::ofstream(path) << R"({"pipeline": {"nme": "x", "steps": [
      {"name": "a b", "command": ["verfy", "{dirr}/x"]},
      {"name": "lm", "descriptor": {"data": {"corpus": "moby_dick_excerpt"},
                                    "train": {"lr": -1}}, "args": [3]},
      {"name": "both", "command": ["info"], "descriptor": {}},
      {"name": "lm", "command": []}]}, "extra": 1})";
  std::string msg = testing::error_message([&] { load_pipeline(path); });
  for (const char* part :
       {"extra: unknown key", "pipeline.nme: unknown key (did you mean \"name\"?)",
        "pipeline.steps[0].name: expected a name", "found \"a b\"",
        "pipeline.steps[0].command[0]: unknown gradus command \"verfy\" (did you mean \"verify\"?)",
        "pipeline.steps[0].command[1]: unknown placeholder {dirr}",
        "pipeline.steps[1].descriptor.train.lr: expected a positive number, found -1",
        "pipeline.steps[1].args[0]: expected a string, found 3",
        "pipeline.steps[2]: expected exactly one of \"command\"",
        "pipeline.steps[3].name: \"lm\" names an earlier step too",
        "pipeline.steps[3].command: expected a command line, found an empty array"})
    EXPECT_NE(msg.find(part), std::string::npos) << "\"" << part << "\" not in:\n" << msg;

  std::ofstream(path) << R"({"pipeline": {"steps": []}})";
  testing::expect_error([&] { load_pipeline(path); },
                        {"pipeline.steps: expected a non-empty array of steps"});
  std::ofstream(path) << R"({"pipeline": {"steps": [)";
  testing::expect_error([&] { load_pipeline(path); }, {path, "is not valid JSON"});
}

TEST_F(Pipelines, StepsRunInOrderAndFinishedStepsAreSkipped) {
  std::string path = write(json::array(
      {{{"name", "data"},
        {"about", "a small data set"},
        {"command",
         {"hardmax-data", "random", "--out", "{step}/d.jsonl", "--n", "12", "--d", "3"}}},
       {{"name", "build"},
        {"command", {"build-hardmax", "{dir}/data/d.jsonl", "--out", "{step}/m.safetensors"}}},
       {{"name", "classify"},
        {"command", {"classify", "{dir}/build/m.safetensors", "{dir}/data/d.jsonl"}}}}));
  auto first = gradus::testing::run_gradus({"run", path});
  ASSERT_EQ(first.status, 0) << first.output;
  EXPECT_NE(first.output.find("[1/3] data: a small data set"), std::string::npos) << first.output;
  EXPECT_NE(first.output.find("\"accuracy\":1.0"), std::string::npos) << first.output;
  json s = state();
  ASSERT_EQ(s["steps"].size(), 3u);
  for (const json& step : s["steps"]) EXPECT_EQ(step["status"], "done") << step.dump();
  EXPECT_EQ(s["steps"][1]["command"][0], "gradus");
  EXPECT_EQ(s["steps"][1]["command"][2], (dir_ / "p" / "data" / "d.jsonl").string());
  // Each step's output is in its log, after the command line.
  std::ifstream log(dir_ / "p" / "classify" / "log.txt");
  std::stringstream text;
  text << log.rdbuf();
  EXPECT_EQ(text.str().rfind("$ ", 0), 0u) << text.str();
  EXPECT_NE(text.str().find("\"accuracy\":1.0"), std::string::npos) << text.str();

  // The report of a pipeline: the steps' table and each command step's result.
  auto report = gradus::testing::run_gradus({"report", (dir_ / "p").string()});
  ASSERT_EQ(report.status, 0) << report.output;
  std::ifstream page(dir_ / "p" / "report.html");
  std::stringstream html;
  html << page.rdbuf();
  for (const char* part :
       {"Pipeline p", "a small data set", "classify", "accuracy", "train_accuracy"})
    EXPECT_NE(html.str().find(part), std::string::npos) << part;

  auto second = gradus::testing::run_gradus({"run", path});
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_NE(second.output.find("[3/3] classify: finished earlier, skipped"), std::string::npos)
      << second.output;
  EXPECT_EQ(second.output.find("\"accuracy\""), std::string::npos) << second.output;
}

TEST_F(Pipelines, AFailingStepStopsThePipelineAndRunsAgainOnceFixed) {
  json steps =
      json::array({{{"name", "classify"},
                    {"command", {"classify", "{dir}/missing.safetensors", "{dir}/missing.jsonl"}}},
                   {{"name", "after"}, {"command", {"info"}}}});
  std::string path = write(steps);
  auto failed = gradus::testing::run_gradus({"run", path});
  EXPECT_EQ(failed.status, 1) << failed.output;
  EXPECT_NE(failed.output.find("failed (exit status 1)"), std::string::npos) << failed.output;
  EXPECT_NE(failed.output.find("step 1 (classify) failed"), std::string::npos) << failed.output;
  json s = state();
  EXPECT_EQ(s["steps"][0]["status"], "failed");
  EXPECT_EQ(s["steps"][1]["status"], "pending");

  // Fixed (the step now does something that works): it runs again, and so does the next one.
  steps[0]["command"] = {"hardmax-data", "random", "--out", "{step}/d.jsonl", "--n", "5"};
  write(steps);
  auto fixed = gradus::testing::run_gradus({"run", path});
  ASSERT_EQ(fixed.status, 0) << fixed.output;
  EXPECT_EQ(fixed.output.find("skipped"), std::string::npos) << fixed.output;
  EXPECT_EQ(state()["steps"][1]["status"], "done");
}

TEST_F(Pipelines, ADescriptorStepTrainsInItsDirectory) {
  std::ifstream in(repo_root() / "experiments" / "lm_tiny_test.json");
  std::stringstream text;
  text << in.rdbuf();
  json tiny = json::parse(text.str(), nullptr, true, /*ignore_comments=*/true);
  tiny["train"]["steps"] = 4;
  tiny["train"]["warmup_steps"] = 1;
  tiny["eval"]["every"] = 2;
  std::string path = write(json::array({{{"name", "lm"}, {"descriptor", tiny}}}));
  auto r = gradus::testing::run_gradus({"run", path}, repo_root().string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(fs::is_regular_file(dir_ / "p" / "lm" / "descriptor.json"));
  EXPECT_TRUE(fs::is_regular_file(dir_ / "p" / "lm" / "run" / "summary.json")) << r.output;
}

TEST(Tour, TheCommittedTourIsValid) {
  Pipeline p = load_pipeline((repo_root() / "experiments" / "tour.json").string());
  EXPECT_EQ(p.name, "tour");
  std::vector<std::string> names;
  for (const PipelineStep& s : p.steps) names.push_back(s.name);
  EXPECT_EQ(names.front(), "language-models");
  EXPECT_EQ(names.back(), "report");
  // The five kinds of the README's promise, trained on the same text.
  const auto& variants = p.steps.front().descriptor["sweep"]["variants"];
  std::vector<std::string> kinds;
  for (const auto& v : variants) kinds.push_back(v["set"]["model.attention_kind"]);
  EXPECT_EQ(kinds, (std::vector<std::string>{"std", "lgt", "egt", "gin", "pna"}));
}

}  // namespace
}  // namespace gradus::experiments
