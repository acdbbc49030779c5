// Nothing is lost under faults, tested through the real `gradus` binary: a kill -9 during training,
// inside a checkpoint, metrics or summary write (placed there by GRADUS_FAULT_INJECT), a full disk
// (injected, and a real tiny tmpfs where mounting is permitted) and a log.dir that cannot be
// written. After each, the earlier files are intact and `gradus run --resume` ends bit for bit as
// the uninterrupted run of the same descriptor.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "experiments/lib/run_dir.h"
#include "models/io/atomic_file.h"
#include "models/io/fault_injection.h"
#include "models/io/safetensors.h"
#include "support/subprocess.h"
#include "support/test_dir.h"

namespace gradus::experiments {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using gradus::testing::CommandResult;
using gradus::testing::run_gradus;
using gradus::testing::spawn_gradus;
using gradus::testing::wait_for;

constexpr int kKilled = 128 + SIGKILL;  // wait_for's status of a process ended by SIGKILL

// The tiny descriptor with checkpoints at steps 10, 20, ..., 60 and metrics lines every 5 steps.
constexpr int64_t kSteps = 60;
constexpr int64_t kEvalEvery = 10;

fs::path repo_root() { return fs::path(__FILE__).parent_path().parent_path().parent_path(); }

std::vector<std::string> run_args(const fs::path& log_dir) {
  return {"run", (repo_root() / "experiments" / "lm_tiny_test.json").string(),
          // Checkpoints at steps 10, 20, ..., 60; metrics lines every 5 steps.
          "--set", "log.dir=" + log_dir.string(), "--set", fmt::format("train.steps={}", kSteps),
          "--set", fmt::format("eval.every={}", kEvalEvery),
          // Dropout on, so that the dropout generator must survive the kill too.
          "--set", "model.attention_dropout=0.1",
          // One thread: results do not depend on it, and a busy machine (CI on 2 cores) runs the
          // tiny model fastest so.
          "--threads", "1"};
}

using gradus::testing::read_text;

std::vector<json> read_jsonl(const fs::path& p) {
  std::vector<json> out;
  std::istringstream in(read_text(p));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

std::vector<int64_t> metric_steps(const fs::path& run_dir) {
  std::vector<int64_t> steps;
  for (const json& l : read_jsonl(run_dir / kMetricsFile)) steps.push_back(l["step"]);
  return steps;
}

int64_t checkpoint_step(const fs::path& run_dir) {
  for (const auto& [name, t] : load_safetensors((run_dir / kCheckpointFile).string()).tensors)
    if (name == "training.step") return static_cast<int64_t>(t.item());
  ADD_FAILURE() << "no training.step in the checkpoint of " << run_dir;
  return -1;
}

// The files of write_file_atomic's temporaries (".NAME.tmp.PID.N") in a run directory.
std::vector<std::string> temporaries(const fs::path& run_dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(run_dir)) {
    std::string name = e.path().filename().string();
    if (name.find(".tmp.") != std::string::npos) out.push_back(name);
  }
  return out;
}

// The lines of a command's output that report an error.
std::vector<std::string> error_lines(const std::string& output) {
  std::vector<std::string> out;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);)
    if (line.find("error") != std::string::npos) out.push_back(line);
  return out;
}

// Sets an environment variable for the children started in its lifetime. The test process itself
// never reads GRADUS_FAULT_INJECT while it is set: nothing between the set and the unset writes
// a file atomically.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() { ::unsetenv(name_); }

 private:
  const char* name_;
};

// What the uninterrupted run wrote that is deterministic.
struct RunRecord {
  json summary;
  std::vector<json> metrics;
  SafetensorsFile checkpoint;
};

RunRecord record_of(const fs::path& run_dir) {
  return {json::parse(read_text(run_dir / kSummaryFile)), read_jsonl(run_dir / kMetricsFile),
          load_safetensors((run_dir / kCheckpointFile).string())};
}

// A checkpoint's bytes differ between an interrupted and an uninterrupted run only in three
// metadata values: run_wall_s and run_train_s (measured times) and run_sessions (1 + resumes); a
// different log.dir also changes run_descriptor's log.dir. Everything else - every tensor (weights,
// Adam moments, step, the data and dropout generators) and every other metadata value - must be
// identical.
void expect_same_checkpoint(const SafetensorsFile& want, const SafetensorsFile& got) {
  ASSERT_EQ(want.tensors.size(), got.tensors.size());
  for (size_t i = 0; i < want.tensors.size(); ++i) {
    const auto& [name, a] = want.tensors[i];
    const auto& [got_name, b] = got.tensors[i];
    ASSERT_EQ(name, got_name);
    ASSERT_EQ(a.dtype(), b.dtype()) << name;
    ASSERT_EQ(a.nbytes(), b.nbytes()) << name;
    EXPECT_EQ(std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()), 0) << name << " differs";
  }
  ASSERT_EQ(want.metadata.size(), got.metadata.size());
  for (const auto& [key, value] : want.metadata) {
    ASSERT_TRUE(got.metadata.count(key)) << key;
    if (key == "run_wall_s" || key == "run_train_s" || key == "run_sessions") continue;
    if (key == "run_descriptor") {
      json a = json::parse(value), b = json::parse(got.metadata.at(key));
      a["log"].erase("dir");
      b["log"].erase("dir");
      EXPECT_EQ(a, b);
      continue;
    }
    EXPECT_EQ(value, got.metadata.at(key)) << key;
  }
}

// The resumed run ends as the uninterrupted one: same losses, same metrics, same checkpoint.
void expect_same_run(const RunRecord& want, const fs::path& run_dir) {
  ASSERT_TRUE(fs::is_regular_file(run_dir / kSummaryFile)) << run_dir;
  RunRecord got = record_of(run_dir);
  for (const char* key : {"final_train_loss", "final_val_loss", "best_val_loss", "best_val_step",
                          "val_bits_per_byte", "steps", "tokens_trained", "val_tokens"})
    EXPECT_EQ(want.summary[key], got.summary[key]) << key;
  ASSERT_EQ(want.metrics.size(), got.metrics.size());
  for (size_t i = 0; i < want.metrics.size(); ++i) {
    // elapsed_s and tokens_per_s are measured times; everything else is computed.
    for (const char* key : {"step", "train_loss", "lr", "grad_norm", "val_loss"})
      EXPECT_EQ(want.metrics[i].value(key, json()), got.metrics[i].value(key, json()))
          << key << " of line " << i + 1;
  }
  expect_same_checkpoint(want.checkpoint, got.checkpoint);
  EXPECT_TRUE(temporaries(run_dir).empty());
}

class Faults : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    suite_dir_ = fs::temp_directory_path() /
                 fmt::format("gradus_faults_reference_{}", static_cast<long>(::getpid()));
    fs::remove_all(suite_dir_);
  }
  static void TearDownTestSuite() {
    fs::remove_all(suite_dir_);
    reference_.reset();
  }

  void SetUp() override {
    dir_ = gradus::testing::fresh_test_dir("faults");
    log_dir_ = dir_ / "runs";
  }
  void TearDown() override {
    for (const fs::path& m : mounts_) ::umount2(m.c_str(), MNT_DETACH);
    fs::remove_all(dir_);
  }

  // The uninterrupted run, run once for the whole suite.
  static const RunRecord& reference() {
    if (!reference_) {
      CommandResult r = run_gradus(run_args(suite_dir_));
      EXPECT_EQ(r.status, 0) << r.output;
      reference_ = record_of(only_run(suite_dir_));
    }
    return *reference_;
  }

  // The run directory of the one run under `log_dir`.
  static fs::path only_run(const fs::path& log_dir) {
    std::vector<fs::path> runs;
    for (const auto& e : fs::directory_iterator(log_dir / "lm_tiny_test")) runs.push_back(e.path());
    EXPECT_EQ(runs.size(), 1u) << log_dir;
    return runs.empty() ? fs::path() : runs.front();
  }

  // Runs the descriptor with GRADUS_FAULT_INJECT=spec; returns the status and output.
  CommandResult run_with_fault(const std::string& spec) {
    std::vector<std::string> args = run_args(log_dir_);
    ScopedEnv env(kFaultInjectEnv, spec);
    pid_t pid = spawn_gradus(args, (dir_ / "output.txt").string());
    CommandResult r;
    r.status = wait_for(pid);
    r.output = read_text(dir_ / "output.txt");
    return r;
  }

  CommandResult resume(const fs::path& run_dir) {
    return run_gradus({"run", "--resume", run_dir.string(), "--threads", "1"});
  }

  // Checks of a run directory and a command's output.
  using RunCheck = std::function<void(const fs::path& run, const std::string& output)>;

  // `gradus run --resume run` finishes, check_output(run, its output) holds, and the run ends bit
  // for bit as the uninterrupted one.
  void resume_to_the_end(const fs::path& run, const RunCheck& check_output = nullptr) {
    CommandResult again = resume(run);
    ASSERT_EQ(again.status, 0) << again.output;
    if (check_output) ASSERT_NO_FATAL_FAILURE(check_output(run, again.output));
    expect_same_run(reference(), run);
  }

  // What every fault-then-resume test does: the descriptor run with GRADUS_FAULT_INJECT=spec ends
  // with `status`, check_left(run, its output) holds of what it left in its run directory, and
  // resume_to_the_end(run, check_resume).
  void fault_then_resume(const std::string& spec, int status, const RunCheck& check_left,
                         const RunCheck& check_resume = nullptr) {
    reference();  // the uninterrupted run (once per suite) before any faulted one
    CommandResult r = run_with_fault(spec);
    ASSERT_EQ(r.status, status) << r.output;
    const fs::path run = only_run(log_dir_);
    ASSERT_NO_FATAL_FAILURE(check_left(run, r.output));
    resume_to_the_end(run, check_resume);
  }

  // Mounts a tmpfs of `size` bytes (with extra mount options) at `where`; false when this process
  // may not mount (not root, or no CAP_SYS_ADMIN in a container), with the reason in `why`.
  bool mount_tmpfs(const fs::path& where, size_t size, unsigned long flags, std::string& why) {
    fs::create_directories(where);
    std::string options = fmt::format("size={}", size);
    if (::mount("tmpfs", where.c_str(), "tmpfs", flags, options.c_str()) != 0) {
      why = std::strerror(errno);
      return false;
    }
    mounts_.push_back(where);
    return true;
  }

  static inline fs::path suite_dir_;
  static inline std::optional<RunRecord> reference_;
  fs::path dir_, log_dir_;
  std::vector<fs::path> mounts_;
};

// ---- kill -9 ------------------------------------------------------------------------------------

// A real SIGKILL while the run trains (not at a chosen point): once the metrics show step 15 (the
// checkpoint of step 10 is on disk), the process is killed wherever it is.
TEST_F(Faults, KillDuringTrainingResumesToTheUninterruptedRun) {
  reference();
  // Starts a run and kills it once its metrics reach step 15; its exit status (0 when it finished
  // first, which a machine busy enough to stall this thread can cause: then it is tried again).
  auto run_and_kill = [&]() {
    fs::remove_all(log_dir_);
    pid_t pid = spawn_gradus(run_args(log_dir_), (dir_ / "output.txt").string());
    for (;;) {
      int raw = 0;
      if (::waitpid(pid, &raw, WNOHANG) == pid)
        return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(log_dir_ / "lm_tiny_test", ec)) {
        std::vector<int64_t> steps = fs::exists(e.path() / kMetricsFile, ec)
                                         ? metric_steps(e.path())
                                         : std::vector<int64_t>{};
        if (!steps.empty() && steps.back() >= 15) {
          ::kill(pid, SIGKILL);
          return wait_for(pid);
        }
      }
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  };
  int status = -1;
  for (int attempt = 0; attempt < 3 && status != kKilled; ++attempt) status = run_and_kill();
  ASSERT_EQ(status, kKilled) << "the run was not killed while training:\n"
                             << read_text(dir_ / "output.txt");
  fs::path run = only_run(log_dir_);
  EXPECT_FALSE(fs::exists(run / kSummaryFile));
  const int64_t at = checkpoint_step(run);
  EXPECT_GE(at, kEvalEvery);
  EXPECT_LT(at, kSteps);
  resume_to_the_end(run, [&](const fs::path&, const std::string& output) {
    EXPECT_NE(output.find(fmt::format("resuming at step {}", at)), std::string::npos) << output;
  });
}

// A kill inside the second checkpoint write, after its temporary file is complete and before the
// rename: the checkpoint of step 10 is intact, the temporary is left behind, and the resume removes
// it and continues from step 10.
TEST_F(Faults, KillInsideACheckpointWriteKeepsThePreviousCheckpoint) {
  std::vector<std::string> stale;
  fault_then_resume(
      "kill:checkpoint:2", kKilled,
      [&](const fs::path& run, const std::string&) {
        EXPECT_EQ(checkpoint_step(run), 10);
        // Written before the kill.
        EXPECT_EQ(metric_steps(run), (std::vector<int64_t>{5, 10, 15, 20}));
        stale = temporaries(run);
        ASSERT_EQ(stale.size(), 1u);
        EXPECT_EQ(stale[0].rfind(".checkpoint.safetensors.tmp.", 0), 0u) << stale[0];
      },
      [&](const fs::path&, const std::string& output) {
        EXPECT_NE(output.find("removed 1 temporary file(s) of a killed run: " + stale[0]),
                  std::string::npos)
            << output;
        EXPECT_NE(output.find("resuming at step 10"), std::string::npos) << output;
      });
}

// A kill inside the metrics write of step 15: metrics.jsonl keeps the lines of steps 5 and 10.
TEST_F(Faults, KillInsideAMetricsWriteKeepsTheEarlierLines) {
  fault_then_resume("kill:metrics:3", kKilled, [](const fs::path& run, const std::string&) {
    EXPECT_EQ(metric_steps(run), (std::vector<int64_t>{5, 10}));
    EXPECT_EQ(checkpoint_step(run), 10);
    EXPECT_EQ(temporaries(run).size(), 1u);
  });
}

// A kill inside the summary write: the final checkpoint is complete, so the resume trains nothing
// and writes the summary.
TEST_F(Faults, KillInsideTheSummaryWriteIsFinishedByTheResume) {
  fault_then_resume(
      "kill:summary:1", kKilled,
      [](const fs::path& run, const std::string&) {
        EXPECT_FALSE(fs::exists(run / kSummaryFile));
        EXPECT_EQ(checkpoint_step(run), kSteps);
      },
      [](const fs::path& run, const std::string& output) {
        EXPECT_NE(output.find(fmt::format("resuming at step {}", kSteps)), std::string::npos);
        EXPECT_EQ(json::parse(read_text(run / kSummaryFile))["sessions"], 2);
      });
}

// ---- full disk ----------------------------------------------------------------------------------

// The second checkpoint write fails as on a full disk: exit status 1, one error line naming the
// file, the reason and how to resume; the checkpoint of step 10 is intact and nothing is left
// behind; once the "disk" is free the resume ends as the uninterrupted run.
TEST_F(Faults, FullDiskDuringACheckpointIsAClearErrorAndResumable) {
  fault_then_resume("enospc:checkpoint:2", 1, [](const fs::path& run, const std::string& output) {
    std::vector<std::string> errors = error_lines(output);
    ASSERT_EQ(errors.size(), 1u) << output;
    const std::string& e = errors[0];
    EXPECT_EQ(e.rfind("gradus: error: ", 0), 0u) << e;
    for (const std::string& part :
         {(run / kCheckpointFile).string(), std::string(std::strerror(ENOSPC)),
          std::string("stopped after step 20"), std::string("checkpoint of step 10 is intact"),
          "gradus run --resume " + run.string()})
      EXPECT_NE(e.find(part), std::string::npos) << "\"" << part << "\" not in: " << e;
    EXPECT_EQ(checkpoint_step(run), 10);
    EXPECT_TRUE(temporaries(run).empty());
    EXPECT_FALSE(fs::exists(run / kSummaryFile));
  });
}

// The very first metrics write fails: there is no checkpoint yet, and the message says that the
// resume starts over.
TEST_F(Faults, FullDiskBeforeTheFirstCheckpointSaysTheResumeStartsOver) {
  fault_then_resume("enospc:metrics:1", 1, [](const fs::path& run, const std::string& output) {
    std::vector<std::string> errors = error_lines(output);
    ASSERT_EQ(errors.size(), 1u) << output;
    EXPECT_NE(errors[0].find((run / kMetricsFile).string()), std::string::npos) << errors[0];
    EXPECT_NE(errors[0].find(std::strerror(ENOSPC)), std::string::npos) << errors[0];
    EXPECT_NE(errors[0].find("no checkpoint yet"), std::string::npos) << errors[0];
    EXPECT_FALSE(fs::exists(run / kCheckpointFile));
    EXPECT_FALSE(fs::exists(run / kMetricsFile));
  });
}

// A real full disk: log.dir on a tmpfs with room for one checkpoint but not for the temporary of
// the next one beside it. After the error the tmpfs is enlarged (the disk freed) and the run
// resumed.
TEST_F(Faults, RealFullTmpfsStopsCleanlyAndResumes) {
  reference();  // its checkpoint gives the size of the disk
  // The checkpoint's size from the reference; the metrics and resolved.json need a few pages more.
  const size_t checkpoint_bytes =
      fs::file_size(only_run(suite_dir_) / kCheckpointFile);  // about 0.45 MB
  std::string why;
  fs::path disk = dir_ / "disk";
  if (!mount_tmpfs(disk, checkpoint_bytes + checkpoint_bytes / 2, 0, why))
    GTEST_SKIP() << "mounting a tmpfs is not permitted here (" << why
                 << "); needs root with CAP_SYS_ADMIN";
  log_dir_ = disk;
  std::vector<std::string> args = run_args(log_dir_);
  CommandResult r = run_gradus(args);
  ASSERT_EQ(r.status, 1) << r.output;
  fs::path run = only_run(log_dir_);
  std::vector<std::string> errors = error_lines(r.output);
  ASSERT_EQ(errors.size(), 1u) << r.output;
  EXPECT_NE(errors[0].find(std::strerror(ENOSPC)), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find(run.string()), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("checkpoint of step 10 is intact"), std::string::npos) << errors[0];
  EXPECT_EQ(checkpoint_step(run), 10);
  EXPECT_TRUE(temporaries(run).empty());

  // Free the disk: grow the tmpfs in place.
  ASSERT_EQ(::mount("tmpfs", disk.c_str(), "tmpfs", MS_REMOUNT, "size=16m"), 0)
      << std::strerror(errno);
  resume_to_the_end(run);
}

// ---- report -------------------------------------------------------------------------------------

// The files of a directory by name, with their contents.
std::map<std::string, std::string> files_of(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) out[e.path().filename().string()] = read_text(e.path());
  return out;
}

// A kill inside the report's writes leaves every file either absent, as it was or complete, and
// `gradus report` run again rebuilds the report byte for byte (its output depends on the run
// directory only).
TEST_F(Faults, KillDuringReportWritingIsRebuiltIdentically) {
  reference();
  fs::path run = dir_ / "run";
  fs::copy(only_run(suite_dir_), run, fs::copy_options::recursive);
  const std::map<std::string, std::string> run_files = files_of(run);
  CommandResult r = run_gradus({"report", run.string()});
  ASSERT_EQ(r.status, 0) << r.output;
  std::map<std::string, std::string> want = files_of(run);
  for (const auto& [name, text] : run_files) want.erase(name);  // the report's files only
  ASSERT_TRUE(want.count("report.html") && want.count("report.md")) << r.output;
  for (const auto& [name, text] : want) fs::remove(run / name);

  // Killed in the last write (report.html), then in the first rewrite of report.md over a
  // complete report.
  for (const char* spec : {"kill:report.html:1", "kill:report.md:1"}) {
    SCOPED_TRACE(spec);
    CommandResult killed;
    {
      ScopedEnv env(kFaultInjectEnv, spec);
      killed.status = wait_for(spawn_gradus({"report", run.string()}, (dir_ / "out.txt").string()));
    }
    ASSERT_EQ(killed.status, kKilled) << read_text(dir_ / "out.txt");
    for (const auto& [name, text] : files_of(run)) {
      if (name.find(".tmp.") != std::string::npos || run_files.count(name)) continue;
      ASSERT_TRUE(want.count(name)) << name;
      EXPECT_EQ(text, want.at(name)) << name << " is torn";
    }
    EXPECT_EQ(temporaries(run).size(), 1u);
    CommandResult again = run_gradus({"report", run.string()});
    ASSERT_EQ(again.status, 0) << again.output;
    std::map<std::string, std::string> got = files_of(run);
    for (const auto& [name, text] : run_files) got.erase(name);
    for (auto it = got.begin(); it != got.end();)  // the killed write's temporary
      it = it->first.find(".tmp.") != std::string::npos ? got.erase(it) : std::next(it);
    EXPECT_EQ(got, want);
    remove_stale_temporaries(run.string());
  }
}

// ---- unwritable log.dir -------------------------------------------------------------------------

// log.dir below a regular file cannot be created: a one-line error naming the directory, before
// any training.
TEST_F(Faults, LogDirBelowAFileFailsBeforeTraining) {
  std::ofstream(dir_ / "a_file") << "not a directory\n";
  CommandResult r = run_gradus(run_args(dir_ / "a_file" / "runs"));
  EXPECT_EQ(r.status, 1) << r.output;
  std::vector<std::string> errors = error_lines(r.output);
  ASSERT_EQ(errors.size(), 1u) << r.output;
  EXPECT_NE(errors[0].find((dir_ / "a_file" / "runs").string()), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find(std::strerror(ENOTDIR)), std::string::npos) << errors[0];
  EXPECT_EQ(r.output.find("step "), std::string::npos) << "trained before failing:\n" << r.output;
}

// A log.dir that exists but cannot be written: a read-only tmpfs as root (root ignores file
// modes), a directory without write permission otherwise.
TEST_F(Faults, ReadOnlyLogDirFailsBeforeTraining) {
  fs::path ro = dir_ / "read_only";
  std::string reason;
  if (::geteuid() == 0) {
    std::string why;
    if (!mount_tmpfs(ro, 1 << 20, MS_RDONLY, why))
      GTEST_SKIP() << "running as root, where file modes do not stop writes, and mounting a "
                      "read-only tmpfs is not permitted here ("
                   << why << ")";
    reason = std::strerror(EROFS);
  } else {
    fs::create_directories(ro);
    fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
    reason = std::strerror(EACCES);
  }
  CommandResult r = run_gradus(run_args(ro));
  if (::geteuid() != 0) fs::permissions(ro, fs::perms::owner_all);
  EXPECT_EQ(r.status, 1) << r.output;
  std::vector<std::string> errors = error_lines(r.output);
  ASSERT_EQ(errors.size(), 1u) << r.output;
  EXPECT_NE(errors[0].find((ro / "lm_tiny_test").string()), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find(reason), std::string::npos) << errors[0];
  EXPECT_EQ(r.output.find("step "), std::string::npos) << "trained before failing:\n" << r.output;
}

// A malformed GRADUS_FAULT_INJECT is an error, not a fault silently not injected.
TEST_F(Faults, MalformedInjectionSpecIsAnError) {
  CommandResult r = run_with_fault("kill:checkpoint");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("GRADUS_FAULT_INJECT: expected kill|enospc:SUBSTRING:N"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace gradus::experiments
