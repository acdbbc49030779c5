// `gradus verify graded` as a test: every check of the theory suite on a few random instances
// (the command runs 200 per check).
#include "experiments/lib/graded_verify.h"

#include <gtest/gtest.h>

#include <sstream>

#include "core/error.h"
#include "experiments/lib/commands.h"

namespace gradus::experiments {
namespace {

TEST(GradedVerify, EveryCheckPassesOnRandomInstances) {
  std::vector<CheckResult> results = run_graded_checks({.instances = 8, .seed = 3});
  std::vector<std::string> ids;
  for (const CheckResult& r : results) {
    ids.push_back(r.id);
    EXPECT_TRUE(r.passed) << r.id << " " << r.name << ": worst ratio " << r.worst_ratio;
    EXPECT_GT(r.instances, 0) << r.id;
    EXPECT_LE(r.worst_ratio, 1.0) << r.id;
  }
  // Every check of the spec's section 5 (1-8) and the graded loss's bounds (L1, L2).
  EXPECT_EQ(ids, (std::vector<std::string>{"1", "1b", "2", "3", "3b", "3c", "4", "4b", "5", "5b",
                                           "6", "6b", "6c", "7", "7b", "7c", "8", "L1", "L2"}));
}

TEST(GradedVerify, SuiteIsRegisteredAndRejectsUnknownOptions) {
  const VerifySuite* suite = find_verify_suite("graded");
  ASSERT_NE(suite, nullptr);
  std::ostringstream out;
  EXPECT_TRUE(suite->run({"--instances", "2", "--seed", "1"}, out));
  EXPECT_NE(out.str().find("all checks passed"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("PASS"), std::string::npos);
  EXPECT_THROW(suite->run({"--instance", "2"}, out), Error);
  EXPECT_THROW(suite->run({"--instances", "zero"}, out), Error);
}

TEST(GradedVerify, TableMarksAFailure) {
  std::vector<CheckResult> results(1);
  results[0] = {"9", "a check that failed", 3, 1.5, false, ""};
  std::ostringstream out;
  print_check_table(results, out);
  EXPECT_NE(out.str().find("FAIL"), std::string::npos);
  EXPECT_NE(out.str().find("SOME CHECKS FAILED"), std::string::npos);
}

}  // namespace
}  // namespace gradus::experiments
