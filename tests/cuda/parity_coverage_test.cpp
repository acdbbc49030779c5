// The parity suite's promise: in a build with the CUDA backend, every registered op whose forward
// kernels exist on CUDA f32 has a test CudaParity.<op> in this binary. Runs without a GPU (it reads
// the op and kernel registries and the list of linked tests only), so a missing test fails on any
// CUDA build; a build without the backend skips it.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "autodiff/op_registry.h"
#include "kernels/backend_info.h"

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

TEST(CudaParityCoverage, EveryOpWithCudaKernelsHasAParityTest) {
  if (!kernels::cuda_built()) GTEST_SKIP() << "this build has no CUDA backend";
  const std::set<std::string> tests = linked_test_names();
  const std::vector<const OpDef*> ops = all_ops();
  ASSERT_GT(ops.size(), 20u);
  int covered = 0;
  for (const OpDef* op : ops) {
    if (!op_supports_forward(*op, DeviceType::cuda, DType::f32)) continue;
    ++covered;
    EXPECT_TRUE(tests.count("CudaParity." + op->name))
        << op->name << " has CUDA f32 kernels but no parity test CudaParity." << op->name
        << " (tests/cuda/parity_*_test.cpp)";
  }
  EXPECT_GT(covered, 0) << "no op has CUDA f32 kernels in this CUDA build";
}

// The reverse: a CudaParity test names a registered op (a renamed op leaves no stale test behind).
TEST(CudaParityCoverage, EveryParityTestNamesARegisteredOp) {
  const std::string prefix = "CudaParity.";
  for (const std::string& name : linked_test_names()) {
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string op = name.substr(prefix.size());
    EXPECT_NE(find_op(op), nullptr) << name << " names no registered op";
  }
}

}  // namespace
}  // namespace gradus
