// GRADUS_FAULT_INJECT's parser and the clean-up of temporary files left by a killed writer. What
// the injected faults do to a run is tested through the binary in tests/experiments/fault_test.cpp
// (the variable is read once per process, so it cannot be switched on inside this one).
#include "models/io/fault_injection.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "models/io/atomic_file.h"
#include "support/expect_error.h"
#include "support/test_dir.h"

namespace gradus {
namespace {

namespace fs = std::filesystem;
using gradus::testing::expect_error;

TEST(FaultInjection, ParsesKillAndEnospc) {
  FaultSpec k = parse_fault_spec("kill:checkpoint:2");
  EXPECT_EQ(k.action, FaultAction::kill);
  EXPECT_EQ(k.name_substring, "checkpoint");
  EXPECT_EQ(k.nth, 2);
  FaultSpec e = parse_fault_spec("enospc:metrics.jsonl:17");
  EXPECT_EQ(e.action, FaultAction::enospc);
  EXPECT_EQ(e.name_substring, "metrics.jsonl");
  EXPECT_EQ(e.nth, 17);
  EXPECT_EQ(parse_fault_spec("").action, FaultAction::none);
}

TEST(FaultInjection, MalformedSpecsNameTheVariableAndWhatWasFound) {
  expect_error([] { parse_fault_spec("kill:checkpoint"); },
               {"GRADUS_FAULT_INJECT", "kill|enospc:SUBSTRING:N", "\"kill:checkpoint\""});
  expect_error([] { parse_fault_spec("crash:checkpoint:1"); },
               {"GRADUS_FAULT_INJECT", "the action \"crash\""});
  expect_error([] { parse_fault_spec("kill::1"); }, {"empty file name substring"});
  expect_error([] { parse_fault_spec("kill:summary:0"); }, {"the count \"0\""});
  expect_error([] { parse_fault_spec("kill:summary:2x"); }, {"the count \"2x\""});
  expect_error([] { parse_fault_spec("kill:summary:"); }, {"the count \"\""});
}

// Without the variable (as in this test process) no write is touched.
TEST(FaultInjection, NoVariableNoFault) {
  ASSERT_EQ(std::getenv(kFaultInjectEnv), nullptr) << "run the tests without " << kFaultInjectEnv;
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(fault_for_atomic_write("checkpoint.safetensors"), FaultAction::none);
}

class StaleTemporaries : public gradus::testing::TempDirTest {
 protected:
  StaleTemporaries() : TempDirTest("stale") {}
  void touch(const std::string& name) { std::ofstream(dir_ / name) << "x"; }
  std::vector<std::string> listing() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
};

// The pid of a process that has ended (and been reaped): no process has it until it is reused.
pid_t dead_pid() {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

TEST_F(StaleTemporaries, RemovesOnlyTemporariesOfDeadWriters) {
  const pid_t dead = dead_pid(), alive = ::getppid(), self = ::getpid();
  const std::string stale_ck = fmt::format(".checkpoint.safetensors.tmp.{}.3", dead);
  const std::string stale_metrics = fmt::format(".metrics.jsonl.tmp.{}.0", dead);
  const std::string live = fmt::format(".checkpoint.safetensors.tmp.{}.4", alive);
  const std::string own = fmt::format(".summary.json.tmp.{}.1", self);
  for (const std::string& n : {stale_ck, stale_metrics, live, own}) touch(n);
  // Files that only look similar are never touched.
  for (const char* n : {"checkpoint.safetensors", "notes.tmp.1.2", ".x.tmp.12", ".x.tmp.a.1",
                        ".x.tmp.1.b", ".tmp.1.2"})
    touch(n);

  std::vector<std::string> removed = remove_stale_temporaries(dir_.string());
  EXPECT_EQ(removed, (std::vector<std::string>{stale_ck, stale_metrics}));
  std::vector<std::string> want = {own,
                                   live,
                                   ".tmp.1.2",
                                   ".x.tmp.1.b",
                                   ".x.tmp.12",
                                   ".x.tmp.a.1",
                                   "checkpoint.safetensors",
                                   "notes.tmp.1.2"};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(listing(), want);
  EXPECT_TRUE(remove_stale_temporaries(dir_.string()).empty());
  EXPECT_TRUE(remove_stale_temporaries((dir_ / "absent").string()).empty());
}

// A temporary that write_file_atomic itself leaves when its process dies before the rename has
// the name the clean-up looks for: shown with a child that is killed in the middle of a write.
TEST_F(StaleTemporaries, MatchesWhatAKilledWriterLeaves) {
  const std::string target = (dir_ / "checkpoint.safetensors").string();
  write_text_atomic(target, "previous");
  pid_t pid = ::fork();
  if (pid == 0) {
    write_file_atomic(target, [](std::ostream& out) {
      out << "partial";
      out.flush();
      ::kill(::getpid(), SIGKILL);  // dies with the temporary file open
    });
    ::_exit(1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  ASSERT_EQ(listing().size(), 2u);
  std::vector<std::string> removed = remove_stale_temporaries(dir_.string());
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].rfind(fmt::format(".checkpoint.safetensors.tmp.{}.", pid), 0), 0u)
      << removed[0];
  EXPECT_EQ(listing(), std::vector<std::string>{"checkpoint.safetensors"});
  std::ifstream in(target);
  std::string text;
  std::getline(in, text);
  EXPECT_EQ(text, "previous");
}

}  // namespace
}  // namespace gradus
