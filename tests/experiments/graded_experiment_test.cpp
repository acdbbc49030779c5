// `gradus graded-experiment`: descriptors are validated with every problem named by its path;
// each task runs end to end on a few steps; the committed descriptors are valid.
#include "experiments/lib/graded_experiment.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/error.h"
#include "experiments/lib/descriptor.h"
#include "support/expect_error.h"
#include "support/test_dir.h"

namespace gradus::experiments {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

fs::path repo_root() { return fs::path(__FILE__).parent_path().parent_path().parent_path(); }

// dir_: a fresh directory for this test, removed at the end.
class GradedExperiment : public testing::TempDirTest {
 protected:
  GradedExperiment() : TempDirTest("graded") {}

  // Runs `doc` as a descriptor file in the test's directory.
  json run(const json& doc, std::vector<std::string> overrides = {}) {
    const fs::path path = dir_ / "exp.json";
    std::ofstream(path) << doc.dump();
    GradedExperimentOptions o;
    o.descriptor_path = path.string();
    o.overrides = std::move(overrides);
    o.out_dir = (dir_ / "out").string();
    o.project_root = repo_root().string();
    std::ostringstream log;
    return run_graded_experiment(o, log);
  }
};

std::string problems(const json& doc) {
  return testing::error_message([&] { validate_graded_experiment(doc, "exp.json"); });
}

TEST_F(GradedExperiment, EveryProblemIsReportedWithItsPath) {
  json doc = {{"task", "multiscal"},
              {"seeds", {0, -1}},
              {"train", {{"stepz", 10}, {"lr", -1}}},
              {"variants",
               {{{"name", "a"}, {"model", {{"attention_kind", "lgt"}, {"graded_q_init", "big"}}}},
                {{"name", "a"}}}}};
  std::string msg = problems(doc);
  for (const char* part :
       {"invalid experiment exp.json", "task: expected one of", "(did you mean \"multiscale\"?)",
        "seeds: expected a non-empty array of integers >= 0",
        "train.stepz: unknown key (did you mean \"steps\"?)",
        "train.lr: expected a number > 0, found -1", "variants[1].name: \"a\" names two variants"})
    EXPECT_NE(msg.find(part), std::string::npos) << part << " not in:\n" << msg;
  // Keys of another task, and the model's own checks.
  json seq = {{"task", "brackets"},
              {"variants",
               {{{"name", "x"},
                 {"grading", {{"kind", "lgt"}}},
                 {"model",
                  {{"attention_kind", "egt"}, {"graded_learn_base", true}, {"graded_base", 1}}}}}}};
  msg = problems(seq);
  EXPECT_NE(msg.find("variants[0].grading: only the polynomial task has this key"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("variants[0].model"), std::string::npos) << msg;
  EXPECT_NE(msg.find("graded_learn_base"), std::string::npos) << msg;
  json poly = {{"task", "polynomial"},
               {"variants",
                {{{"name", "g"}, {"grading", {{"kind", "lgt"}, {"q_init", {1, 2}}}}},
                 {{"name", "h"}, {"grading", {{"model", "gauge"}}}}}}};
  msg = problems(poly);
  EXPECT_NE(msg.find("variants[0].grading.q_init: expected 4 grades"), std::string::npos) << msg;
  EXPECT_NE(msg.find("variants[1].grading.kind: the gauge model needs grades"), std::string::npos)
      << msg;
  EXPECT_NE(problems({{"task", "lm"}, {"variants", {{{"name", "b"}}}}}).find("descriptor: missing"),
            std::string::npos);
}

TEST_F(GradedExperiment, RunDescriptorsCheckTheGradedOptions) {
  json doc = {{"data", {{"corpus", "moby_dick_excerpt"}}},
              {"model", {{"attention_kind", "lgt"}, {"graded_learn_base", true}}}};
  testing::expect_error([&] { parse_descriptor(doc, "d.json"); },
                        {"invalid descriptor d.json",
                         "model.graded_learn_base: the base lambda "
                         "belongs to egt"});
  doc["model"] = {{"attention_kind", "egt"}, {"graded_norm", "l2"}};
  testing::expect_error([&] { parse_descriptor(doc, "d.json"); },
                        {"model.graded_norm: expected one of \"none\", \"rms\""});
  doc["model"] = {{"attention_kind", "egt"},
                  {"graded_q_init", "0.1..2"},
                  {"graded_learnable", true},
                  {"graded_per_head", true}};
  Descriptor d = parse_descriptor(doc, "d.json");
  EXPECT_TRUE(d.model.graded_learnable);
  EXPECT_EQ(parse_descriptor(d.to_json(), "resolved.json").to_json(), d.to_json());
}

TEST_F(GradedExperiment, CommittedDescriptorsAreValid) {
  for (const char* name : {"graded_polynomial", "graded_multiscale", "graded_brackets"}) {
    const std::string text =
        testing::read_text(repo_root() / "experiments" / (std::string(name) + ".json"));
    EXPECT_NO_THROW(validate_graded_experiment(json::parse(text, nullptr, true, true), name))
        << name;
  }
}

TEST_F(GradedExperiment, SyntheticTasksRunAndAggregateOverSeeds) {
  json poly = {{"task", "polynomial"},
               {"seeds", {0, 1}},
               {"task_options", {{"train_size", 64}, {"test_size", 32}, {"hidden", 8}}},
               {"train", {{"steps", 3}, {"batch_size", 8}}},
               {"variants",
                {{{"name", "base"}},
                 {{"name", "learned"},
                  {"grading", {{"kind", "egt"}, {"learnable", true}, {"q_init", {1, 1, 1, 1}}}}},
                 {{"name", "gauge"},
                  {"grading", {{"kind", "lgt"}, {"model", "gauge"}, {"q_init", {2, 4, 6, 10}}}}}}}};
  json r = run(poly);
  ASSERT_EQ(r["variants"].size(), 3u);
  const json& base = r["variants"][0]["metrics"]["test_nmse"];
  EXPECT_EQ(base["values"].size(), 2u);
  EXPECT_TRUE(std::isfinite(base["mean"].get<double>()));
  EXPECT_TRUE(r["variants"][1]["metrics"].contains("corr_q_w"));
  // The gauge model with the true weights as fixed grades reports them back exactly.
  EXPECT_DOUBLE_EQ(r["variants"][2]["metrics"]["corr_q_w"]["mean"].get<double>(), 1.0);
  EXPECT_TRUE(fs::is_regular_file(dir_ / "out" / "exp.json"));

  json model = {{"hidden_size", 8},
                {"intermediate_size", 8},
                {"num_hidden_layers", 1},
                {"num_attention_heads", 2},
                {"max_position_embeddings", 8}};
  json lgt = {{"attention_kind", "lgt"}, {"graded_q_init", "0.5..2"}, {"graded_learnable", true}};
  json ms = {{"task", "multiscale"},
             {"seeds", {0}},
             {"task_options", {{"context", 8}, {"test_sequences", 4}}},
             {"model", model},
             {"train", {{"steps", 2}, {"batch_size", 2}}},
             {"variants", {{{"name", "g"}, {"model", lgt}, {"loss", {{"graded", true}}}}}}};
  json m = run(ms)["variants"][0]["metrics"];
  for (const char* k : {"test_mse", "mse_ch0", "mse_ch3", "kappa", "grad_ratio", "loss_kappa"})
    EXPECT_TRUE(m.contains(k)) << k;
  EXPECT_NEAR(m["kappa"]["mean"].get<double>(), 4.0, 0.1);  // the ramp 0.5..2, barely moved
  json br = {{"task", "brackets"},
             {"seeds", {0}},
             {"task_options", {{"length", 8}, {"max_depth", 3}, {"test_sequences", 4}}},
             {"model", model},
             {"train", {{"steps", 2}, {"batch_size", 2}}},
             {"variants", {{{"name", "g"}, {"model", lgt}}}}};
  json b = run(br)["variants"][0]["metrics"];
  for (const char* k : {"token_acc", "seq_acc", "deep_acc"}) EXPECT_TRUE(b.contains(k)) << k;
}

TEST_F(GradedExperiment, LmVariantsRunThroughGradusRun) {
  json lm = {{"task", "lm"},
             {"descriptor", (repo_root() / "experiments" / "lm_tiny_test.json").string()},
             {"seeds", {0}},
             {"set", {"train.steps=6", "train.warmup_steps=1", "eval.every=0"}},
             {"variants",
              {{{"name", "std"}, {"set", json::array()}},
               {{"name", "egt"},
                {"set",
                 {"model.attention_kind=egt", "model.graded_q_init=0.1..1",
                  "model.graded_learnable=true"}}}}}};
  json r = run(lm);
  const json& egt = r["variants"][1];
  EXPECT_TRUE(egt["metrics"].contains("val_loss"));
  EXPECT_GT(egt["metrics"]["params"]["mean"].get<double>(),
            r["variants"][0]["metrics"]["params"]["mean"].get<double>());  // the grades
  EXPECT_TRUE(egt["seeds"][0]["extra"].contains("grading"));
}

}  // namespace
}  // namespace gradus::experiments
