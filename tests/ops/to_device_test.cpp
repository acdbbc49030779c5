// to_device: the differentiable copy between devices. Its gradcheck goes CPU -> GPU -> CPU in f64,
// so it needs a GPU (SKIPPED without one); the CPU-only behaviour is checked everywhere.
#include <gtest/gtest.h>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/view.h"
#include "support/cuda.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::kCUDA;
using testing::noncontiguous_leaf;
using testing::randn_leaf;

TEST(Gradcheck, to_device) {
  GRADUS_REQUIRE_CUDA();
  // x, y: (3, 4) on the CPU; the product is taken on the GPU and brought back.
  auto fn = [](const std::vector<Tensor>& in) {
    return to_device(mul(to_device(in[0], kCUDA), to_device(in[1], kCUDA)), kCPU);
  };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn_leaf({3, 4}, 21), noncontiguous_leaf({3, 4}, 22)}));
}

TEST(ToDevice, SameDeviceIsTheTensorItself) {
  Tensor x = randn_leaf({2, 3}, 23);
  EXPECT_TRUE(to_device(x, kCPU).same(x));
}

TEST(ToDevice, GradientReturnsToTheSourceDevice) {
  GRADUS_REQUIRE_CUDA();
  Tensor x = randn_leaf({2, 3}, 24, 0.0, 1.0, DType::f32);
  Tensor y = to_device(x, kCUDA);
  EXPECT_TRUE(y.device() == kCUDA);
  backward(sum(mul(y, y)));
  ASSERT_TRUE(x.grad().defined());
  EXPECT_TRUE(x.grad().device() == kCPU);
  std::vector<double> g = x.grad().to_vector(), v = x.to_vector();
  for (size_t i = 0; i < g.size(); ++i) EXPECT_FLOAT_EQ(g[i], 2 * v[i]);
}

}  // namespace
}  // namespace gradus
