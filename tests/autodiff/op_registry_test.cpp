// The registry's promise: every op registered as differentiable names a gradcheck test that exists in
// this binary, and supports CPU f32 and f64 forward and backward.
#include <gtest/gtest.h>

#include <set>

#include "autodiff/op_registry.h"

namespace gradus {
namespace {

std::set<std::string> linked_test_names() {
  std::set<std::string> names;
  auto* unit = ::testing::UnitTest::GetInstance();
  for (int i = 0; i < unit->total_test_suite_count(); ++i) {
    const auto* suite = unit->GetTestSuite(i);
    for (int j = 0; j < suite->total_test_count(); ++j)
      names.insert(std::string(suite->name()) + "." + suite->GetTestInfo(j)->name());
  }
  return names;
}

TEST(OpRegistry, EveryDifferentiableOpHasAGradcheckTest) {
  std::set<std::string> tests = linked_test_names();
  std::vector<const OpDef*> ops = all_ops();
  ASSERT_GT(ops.size(), 20u);
  for (const OpDef* op : ops) {
    if (!op->differentiable()) continue;
    EXPECT_FALSE(op->gradcheck.empty()) << op->name << " names no gradcheck";
    EXPECT_TRUE(tests.count(op->gradcheck)) << op->name << ": gradcheck test \"" << op->gradcheck
                                            << "\" is not in the suite";
  }
}

TEST(OpRegistry, EveryOpRunsOnTheCpuInF32AndF64) {
  for (const OpDef* op : all_ops()) {
    for (DType dt : {DType::f32, DType::f64}) {
      EXPECT_TRUE(op_supports_forward(*op, DeviceType::cpu, dt)) << op->name << " " << dtype_name(dt);
      if (op->differentiable())
        EXPECT_TRUE(op_supports_backward(*op, DeviceType::cpu, dt)) << op->name << " " << dtype_name(dt);
    }
  }
}

}  // namespace
}  // namespace gradus
