// `gradus verify hardmax --quick` passes (every dataset exact, counts within bounds, length
// invariance, permutation equivariance, f32 at small N) and prints its tables.
#include <gtest/gtest.h>

#include <sstream>

#include "experiments/lib/commands.h"

namespace gradus::experiments {
namespace {

TEST(HardmaxVerify, QuickSuitePasses) {
  const VerifySuite* s = find_verify_suite("hardmax");
  ASSERT_NE(s, nullptr);
  std::ostringstream out;
  EXPECT_TRUE(s->run({"--quick"}, out)) << out.str();
  EXPECT_NE(out.str().find("| nested |"), std::string::npos);
  EXPECT_EQ(out.str().find("FAIL"), std::string::npos) << out.str();
}

}  // namespace
}  // namespace gradus::experiments
