// The language-model job end to end on the committed excerpt (experiments/lm_tiny_test.json, a
// few seconds): the run directory's files, resume after a kill ending exactly where an
// uninterrupted run ends, `gradus eval`'s JSON, and errors about the data.
#include "experiments/lib/lm_job.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <set>
#include <sstream>

#include "experiments/lib/descriptor.h"
#include "experiments/lib/run_dir.h"
#include "models/io/safetensors.h"
#include "support/cuda.h"
#include "support/expect_error.h"
#include "support/test_dir.h"
#include "support/tiny_lm_run.h"

namespace gradus::experiments {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

fs::path repo_root() { return fs::path(__FILE__).parent_path().parent_path().parent_path(); }

using gradus::testing::read_json;
using gradus::testing::read_text;

std::vector<json> read_jsonl(const fs::path& p) {
  std::vector<json> out;
  std::istringstream in(read_text(p));
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

// dir_: a fresh directory for this test's runs, removed at the end.
class LmJob : public gradus::testing::TempDirTest {
 protected:
  LmJob() : TempDirTest("lm_job") {}

  LmRunOptions options(const std::vector<std::string>& overrides = {}) const {
    return testing::tiny_lm_run(repo_root(), dir_, overrides);
  }

  std::ostringstream log_;
};

TEST_F(LmJob, TinyRunWritesEveryFile) {
  LmRunResult r = run_lm(options(), log_);
  ASSERT_TRUE(r.completed);
  fs::path run = r.run_dir;
  EXPECT_EQ(run.parent_path(), dir_ / "lm_tiny_test");  // runs/NAME/TIMESTAMP
  for (const char* f : {kResolvedFile, kMetricsFile, kCheckpointFile, kSummaryFile})
    EXPECT_TRUE(fs::is_regular_file(run / f)) << f;

  // resolved.json is the complete descriptor and parses back to itself.
  json resolved = read_json(run / kResolvedFile);
  Descriptor d = parse_descriptor(resolved, "resolved.json");
  EXPECT_EQ(d.to_json(), resolved);
  EXPECT_EQ(d.log.name, "lm_tiny_test");
  EXPECT_EQ(d.train.steps, 30);

  // metrics.jsonl: a line every log.every = 5 steps; val_loss at the evaluations (every 10).
  std::vector<json> lines = read_jsonl(run / kMetricsFile);
  ASSERT_EQ(lines.size(), 6u);
  for (size_t i = 0; i < lines.size(); ++i) {
    const json& l = lines[i];
    EXPECT_EQ(l["step"], static_cast<int64_t>(5 * (i + 1)));
    for (const char* key : {"train_loss", "lr", "grad_norm", "tokens_per_s"}) {
      ASSERT_TRUE(l.contains(key) && l[key].is_number()) << key << " in " << l.dump();
      EXPECT_TRUE(std::isfinite(l[key].get<double>()));
    }
    EXPECT_EQ(l.contains("val_loss"), (i + 1) % 2 == 0) << l.dump();
    EXPECT_GT(l["tokens_per_s"].get<double>(), 0.0);
  }
  // Warm-up of 5 steps, then cosine from 3e-3 to 3e-4 over the remaining 25 (step s used the rate
  // of update s - 1).
  EXPECT_DOUBLE_EQ(lines[0]["lr"].get<double>(), 3e-3);
  EXPECT_NEAR(lines.back()["lr"].get<double>(),
              3e-4 + (3e-3 - 3e-4) * 0.5 * (1 + std::cos(std::numbers::pi * 24.0 / 25.0)), 1e-15);
  // It learns: from about ln 256 = 5.5 nats to well below.
  EXPECT_LT(lines.back()["train_loss"].get<double>(), lines.front()["train_loss"].get<double>());
  EXPECT_LT(lines.back()["val_loss"].get<double>(), 4.5);

  // summary.json
  json s = read_json(run / kSummaryFile);
  for (const char* key : {"final_train_loss", "final_val_loss", "best_val_loss",
                          "val_bits_per_byte", "wall_time_s", "tokens_per_s"}) {
    ASSERT_TRUE(s.contains(key) && s[key].is_number()) << key;
  }
  EXPECT_EQ(s, r.summary);
  EXPECT_EQ(s["steps"], 30);
  EXPECT_EQ(s["tokens_trained"], 30 * 4 * 32);
  EXPECT_EQ(s["final_val_loss"], lines.back()["val_loss"]);
  EXPECT_EQ(s["final_train_loss"], lines.back()["train_loss"]);
  EXPECT_DOUBLE_EQ(s["val_bits_per_byte"].get<double>(),
                   s["final_val_loss"].get<double>() / std::numbers::ln2);
  EXPECT_LE(s["best_val_loss"].get<double>(), s["final_val_loss"].get<double>());

  // The checkpoint is a safetensors file with the Llama names and the training state.
  SafetensorsFile ck = load_safetensors((run / kCheckpointFile).string());
  std::set<std::string> names;
  for (const auto& [name, t] : ck.tensors) names.insert(name);
  EXPECT_TRUE(names.count("model.embed_tokens.weight"));
  EXPECT_TRUE(names.count("model.layers.1.self_attn.q_proj.weight"));
  EXPECT_TRUE(names.count("training.step"));
  EXPECT_EQ(ck.metadata.at("hidden_size"), "32");
  EXPECT_EQ(json::parse(ck.metadata.at("run_descriptor")), resolved);

  // The progress output went to a non-terminal: plain lines, no carriage returns.
  EXPECT_EQ(log_.str().find('\r'), std::string::npos);
  EXPECT_NE(log_.str().find("step 30/30"), std::string::npos);
}

// A run killed at step 17 (after the checkpoint at step 10) and resumed ends exactly as the
// uninterrupted run: same losses, same metrics, same weights, bit for bit.
TEST_F(LmJob, ResumeAfterAKillEndsAsTheUninterruptedRun) {
  // Dropout on, so that the dropout generator's state must be restored too.
  std::vector<std::string> set = {"train.steps=24", "model.attention_dropout=0.1"};
  LmRunResult straight = run_lm(options(set), log_);
  ASSERT_TRUE(straight.completed);

  LmRunOptions first = options(set);
  first.stop_after_step = 17;
  LmRunResult killed = run_lm(first, log_);
  ASSERT_FALSE(killed.completed);
  EXPECT_NE(killed.run_dir, straight.run_dir);
  EXPECT_FALSE(fs::exists(fs::path(killed.run_dir) / kSummaryFile));
  // The metrics went on past the checkpoint at step 10 (lines at 5, 10, 15); the resume drops the
  // line of step 15 and writes it again.
  EXPECT_EQ(read_jsonl(fs::path(killed.run_dir) / kMetricsFile).size(), 3u);

  LmRunOptions again = testing::resume_lm_run(repo_root(), killed.run_dir);
  LmRunResult resumed = run_lm(again, log_);
  ASSERT_TRUE(resumed.completed);
  EXPECT_EQ(resumed.run_dir, killed.run_dir);

  EXPECT_EQ(resumed.summary["final_train_loss"].get<double>(),
            straight.summary["final_train_loss"].get<double>());
  EXPECT_EQ(resumed.summary["final_val_loss"].get<double>(),
            straight.summary["final_val_loss"].get<double>());
  EXPECT_EQ(resumed.summary["best_val_loss"], straight.summary["best_val_loss"]);
  EXPECT_EQ(resumed.summary["sessions"], 2);

  std::vector<json> a = read_jsonl(fs::path(straight.run_dir) / kMetricsFile);
  std::vector<json> b = read_jsonl(fs::path(resumed.run_dir) / kMetricsFile);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    for (const char* key : {"step", "train_loss", "lr", "grad_norm"})
      EXPECT_EQ(a[i][key], b[i][key]);
    EXPECT_EQ(a[i].value("val_loss", -1.0), b[i].value("val_loss", -1.0));
  }
  SafetensorsFile ca = load_safetensors((fs::path(straight.run_dir) / kCheckpointFile).string());
  SafetensorsFile cb = load_safetensors((fs::path(resumed.run_dir) / kCheckpointFile).string());
  ASSERT_EQ(ca.tensors.size(), cb.tensors.size());
  for (size_t i = 0; i < ca.tensors.size(); ++i) {
    EXPECT_EQ(ca.tensors[i].first, cb.tensors[i].first);
    EXPECT_EQ(ca.tensors[i].second.to_vector(), cb.tensors[i].second.to_vector())
        << ca.tensors[i].first;
  }
  // Resuming a completed run changes nothing.
  LmRunResult twice = run_lm(again, log_);
  EXPECT_TRUE(twice.completed);
  EXPECT_EQ(twice.summary, resumed.summary);
  EXPECT_EQ(read_jsonl(fs::path(resumed.run_dir) / kMetricsFile).size(), a.size());
}

// Killed before the first checkpoint: the resume starts over in the same directory.
// A fixed run directory (--run-dir, what sweeps use): created when missing, continued from its
// checkpoint when stopped, left as it is when complete, refused when the descriptor differs.
TEST_F(LmJob, FixedRunDirectoryContinuesAndFinishes) {
  LmRunOptions o = options({"train.steps=20"});
  o.run_dir = (dir_ / "fixed" / "seed-1").string();
  o.stop_after_step = 10;
  LmRunResult stopped = run_lm(o, log_);
  EXPECT_FALSE(stopped.completed);
  EXPECT_EQ(stopped.run_dir, o.run_dir);
  EXPECT_FALSE(fs::exists(fs::path(o.run_dir) / kSummaryFile));

  o.stop_after_step = 0;
  LmRunResult finished = run_lm(o, log_);
  ASSERT_TRUE(finished.completed);
  EXPECT_EQ(finished.step, 20);
  EXPECT_NE(log_.str().find("resuming at step 10"), std::string::npos) << log_.str();

  LmRunOptions plain = options({"train.steps=20"});
  LmRunResult uninterrupted = run_lm(plain, log_);
  EXPECT_EQ(finished.summary["final_val_loss"], uninterrupted.summary["final_val_loss"]);

  std::ostringstream again;
  LmRunResult done = run_lm(o, again);
  EXPECT_TRUE(done.completed);
  EXPECT_NE(again.str().find("is complete"), std::string::npos) << again.str();

  LmRunOptions other = options({"train.steps=21"});
  other.run_dir = o.run_dir;
  testing::expect_error([&] { run_lm(other, log_); },
                        {"--run-dir", "train.steps (20 in the run, 21 given)"});
}

TEST_F(LmJob, ResumeWithoutACheckpointStartsOver) {
  std::vector<std::string> set = {"train.steps=12"};
  LmRunResult straight = run_lm(options(set), log_);
  LmRunOptions first = options(set);
  first.stop_after_step = 3;
  LmRunResult killed = run_lm(first, log_);
  EXPECT_FALSE(fs::exists(fs::path(killed.run_dir) / kCheckpointFile));
  LmRunOptions again = testing::resume_lm_run(repo_root(), killed.run_dir);
  LmRunResult resumed = run_lm(again, log_);
  EXPECT_EQ(resumed.summary["final_val_loss"].get<double>(),
            straight.summary["final_val_loss"].get<double>());
}

TEST_F(LmJob, ResumeRefusesADifferentDescriptor) {
  LmRunOptions first = options({"train.steps=12"});
  first.stop_after_step = 10;
  LmRunResult killed = run_lm(first, log_);
  LmRunOptions again = options({"train.steps=20"});
  again.resume_dir = killed.run_dir;
  try {
    run_lm(again, log_);
    ADD_FAILURE() << "resumed with another descriptor";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.steps (12 in the run, 20 given)"),
              std::string::npos)
        << e.what();
  }
  // The same descriptor and overrides are accepted.
  LmRunOptions same = options({"train.steps=12"});
  same.resume_dir = killed.run_dir;
  EXPECT_TRUE(run_lm(same, log_).completed);
}

TEST_F(LmJob, EvalPrintsTheValidationLossOfTheRun) {
  LmRunResult r = run_lm(options({"train.steps=10"}), log_);
  LmEvalOptions o;
  o.checkpoint = r.run_dir;  // a run directory means its checkpoint
  o.project_root = repo_root().string();
  json e = eval_lm(o);
  for (const char* key : {"checkpoint", "text", "context", "windows", "tokens",
                          "cross_entropy_nats", "bits_per_byte", "step", "device"}) {
    EXPECT_TRUE(e.contains(key)) << key;
  }
  EXPECT_EQ(e["context"], 32);  // max_position_embeddings
  EXPECT_EQ(e["step"], 10);
  EXPECT_EQ(e["tokens"].get<int64_t>(), e["windows"].get<int64_t>() * 32);
  // The same windows and batches as the run's final evaluation: the same number.
  EXPECT_EQ(e["cross_entropy_nats"].get<double>(), r.summary["final_val_loss"].get<double>());
  EXPECT_DOUBLE_EQ(e["bits_per_byte"].get<double>(),
                   e["cross_entropy_nats"].get<double>() / std::numbers::ln2);
  // The validation split is the last floor(0.1 n) bytes; non-overlapping windows of 32 inputs
  // and their 32 targets: floor((size - 1) / 32) of them.
  int64_t n =
      static_cast<int64_t>(fs::file_size(repo_root() / "data-excerpts" / "moby_dick_excerpt.txt"));
  int64_t val = static_cast<int64_t>(std::floor(n * 0.1));
  EXPECT_EQ(e["windows"].get<int64_t>(), (val - 1) / 32);
}

TEST_F(LmJob, EvalOnAFileWithAShorterContext) {
  LmRunResult r = run_lm(options({"train.steps=5"}), log_);
  fs::path text = dir_ / "text.txt";
  std::string body(1000, 'a');
  std::ofstream(text) << body;
  LmEvalOptions o;
  o.checkpoint = (fs::path(r.run_dir) / kCheckpointFile).string();
  o.text_file = text.string();
  o.context = 16;
  json e = eval_lm(o);
  EXPECT_EQ(e["context"], 16);
  EXPECT_EQ(e["windows"], (1000 - 1) / 16);  // the final partial window is dropped
  EXPECT_EQ(e["tokens"], (1000 - 1) / 16 * 16);
  EXPECT_GT(e["cross_entropy_nats"].get<double>(), 0.0);

  o.context = 64;
  try {
    eval_lm(o);
    ADD_FAILURE() << "context beyond max_position_embeddings accepted";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what())
                  .find("--context 64 exceeds the model's "
                        "max_position_embeddings (32)"),
              std::string::npos)
        << err.what();
  }
  o.checkpoint = (dir_ / "nothing").string();
  EXPECT_THROW(eval_lm(o), Error);
}

TEST_F(LmJob, DataProblemsAreReportedBeforeTraining) {
  auto message = [&](std::vector<std::string> set) {
    try {
      run_lm(options(std::move(set)), log_);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  std::string m = message({"data.corpus=" + (dir_ / "absent.txt").string()});
  EXPECT_EQ(m.rfind("data.corpus: no file", 0), 0u) << m;
  m = message({"data.corpus=moby_dik"});
  EXPECT_NE(m.find("did you mean the corpus \"moby_dick\"?"), std::string::npos) << m;
  fs::path small = dir_ / "small.txt";
  std::ofstream(small) << std::string(200, 'x');
  m = message({"data.corpus=" + small.string()});
  EXPECT_EQ(m.rfind("data.context: the validation split of", 0), 0u) << m;
  // Nothing was created for the failed runs.
  EXPECT_FALSE(fs::exists(dir_ / "lm_tiny_test"));
}

TEST_F(LmJob, InvalidDescriptorFailsBeforeAnyWork) {
  try {
    run_lm(options({"train.lrr=0.1"}), log_);
    ADD_FAILURE() << "accepted";
  } catch (const DescriptorError& e) {
    EXPECT_EQ(e.problems().at(0).path, "train.lrr");
  }
  EXPECT_FALSE(fs::exists(dir_ / "lm_tiny_test"));
  EXPECT_EQ(log_.str(), "");
}

// ---- on the GPU
// ----------------------------------------------------------------------------------

TEST_F(LmJob, CudaWithoutAGpuIsAClearErrorBeforeAnyWork) {
  if (kernels::cuda_device_count() > 0) GTEST_SKIP() << "this machine has a GPU";
  // Without the backend the descriptor check refuses it; with it, the job does (no GPU).
  testing::expect_error([&] { run_lm(options({"device=cuda"}), log_); },
                        {"device", "\"cuda\" was asked for"});
  EXPECT_TRUE(fs::is_empty(dir_));  // no run directory was made
}

TEST_F(LmJob, AutoRunsWhereTheGpuIs) {
  LmRunResult r = run_lm(options({"device=auto", "train.steps=10"}), log_);
  ASSERT_TRUE(r.completed);
  const std::string device = r.summary["device"];
  if (kernels::cuda_device_count() > 0)
    EXPECT_NE(device, "cpu");
  else
    EXPECT_EQ(device, "cpu");
}

TEST_F(LmJob, TrainsOnCudaAndResumesExactly) {
  GRADUS_REQUIRE_CUDA();
  std::vector<std::string> set = {"device=cuda", "train.steps=24", "model.attention_dropout=0.1"};
  LmRunResult straight = run_lm(options(set), log_);
  ASSERT_TRUE(straight.completed);
  std::vector<json> lines = read_jsonl(fs::path(straight.run_dir) / kMetricsFile);
  ASSERT_GE(lines.size(), 2u);
  EXPECT_LT(lines.back()["train_loss"].get<double>(), lines.front()["train_loss"].get<double>());

  // Loss within float rounding of the CPU run (same initialisation, data and dropout masks).
  LmRunResult cpu =
      run_lm(options({"device=cpu", "train.steps=24", "model.attention_dropout=0.1"}), log_);
  EXPECT_NEAR(straight.summary["final_train_loss"].get<double>(),
              cpu.summary["final_train_loss"].get<double>(), 1e-3);

  LmRunOptions first = options(set);
  first.stop_after_step = 17;
  LmRunResult killed = run_lm(first, log_);
  LmRunOptions again = testing::resume_lm_run(repo_root(), killed.run_dir);
  LmRunResult resumed = run_lm(again, log_);
  ASSERT_TRUE(resumed.completed);
  // Deterministic on the GPU: the resumed run ends bit for bit where the uninterrupted one does.
  EXPECT_EQ(resumed.summary["final_train_loss"].get<double>(),
            straight.summary["final_train_loss"].get<double>());
  EXPECT_EQ(resumed.summary["final_val_loss"].get<double>(),
            straight.summary["final_val_loss"].get<double>());
}

}  // namespace
}  // namespace gradus::experiments
