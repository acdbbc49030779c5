// swiglu: forward and both gradients against the composite silu(gate) * up in f64 and f32 (values
// across the sigmoid's range, non-contiguous operands, only one operand requiring a gradient);
// f64 gradchecks; accumulation; autocast promotion; what it keeps for the backward; the errors.
#include "autodiff/ops/swiglu.h"

#include <cmath>

#include "autodiff/autocast.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/view.h"
#include "core/allocator.h"
#include "support/compare.h"
#include "support/expect_error.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::expect_error;
using testing::max_abs_difference;
using testing::noncontiguous_leaf;
using testing::randn_leaf;

void expect_matches_composite(DType dtype, double tolerance) {
  SCOPED_TRACE(dtype_name(dtype));
  // gate over (-30, 30): the sigmoid's saturated tails as well as its middle.
  Tensor gate = randn_leaf({3, 50, 70}, 1, 0, 10, dtype),
         up = randn_leaf({3, 50, 70}, 2, 0, 1, dtype);
  Generator weights(3);
  const Tensor w = rand_normal(gate.shape(), weights, dtype);
  Tensor fused = swiglu(gate, up);
  backward(sum(fused * w));
  const Tensor gg = gate.grad(), gu = up.grad();
  gate.zero_grad();
  up.zero_grad();
  Tensor reference = silu(gate) * up;
  backward(sum(reference * w));
  EXPECT_LE(max_abs_difference(fused, reference), tolerance);
  EXPECT_LE(max_abs_difference(gg, gate.grad()), tolerance) << "grad gate";
  EXPECT_LE(max_abs_difference(gu, up.grad()), tolerance) << "grad up";
}

TEST(Swiglu, MatchesTheCompositeInF64) { expect_matches_composite(DType::f64, 1e-13); }
TEST(Swiglu, MatchesTheCompositeInF32) { expect_matches_composite(DType::f32, 1e-4); }

TEST(Gradcheck, swiglu) {
  auto fn = [](const std::vector<Tensor>& in) { return swiglu(in[0], in[1]); };
  EXPECT_GRADCHECK(fn,
                   (std::vector<Tensor>{randn_leaf({2, 3, 5}, 1, 0, 2), randn_leaf({2, 3, 5}, 2)}));
  // Non-contiguous operands (a transpose and a strided slice), copied before the kernel.
  auto views = [](const std::vector<Tensor>& in) { return swiglu(transpose(in[0], 0, 1), in[1]); };
  EXPECT_GRADCHECK(
      views, (std::vector<Tensor>{noncontiguous_leaf({4, 3}, 3), noncontiguous_leaf({3, 4}, 4)}));
}

TEST(Swiglu, OneOperandWithoutGradient) {
  Tensor gate = randn_leaf({4, 6}, 10), up = randn_leaf({4, 6}, 11);
  up.set_requires_grad(false);
  backward(sum(swiglu(gate, up)));
  const Tensor only_gate = gate.grad();
  gate.zero_grad();
  backward(sum(silu(gate) * up));
  EXPECT_LE(max_abs_difference(only_gate, gate.grad()), 1e-14);
  EXPECT_FALSE(up.grad().defined());
}

TEST(Swiglu, GradientsAccumulate) {
  Tensor gate = randn_leaf({5, 4}, 20), up = randn_leaf({5, 4}, 21);
  backward(sum(swiglu(gate, up)));
  const std::vector<double> once = gate.grad().to_vector();
  backward(sum(swiglu(gate, up)));
  const std::vector<double> twice = gate.grad().to_vector();
  for (size_t i = 0; i < once.size(); ++i) EXPECT_DOUBLE_EQ(twice[i], 2 * once[i]);
}

// Under autocast an f32 gate meets an f64 up: both promote to f64 before the gate's sigmoid (the
// composite would round silu(gate) in f32 first, 1e-8 away).
TEST(Swiglu, AutocastPromotesMixedOperands) {
  Tensor gate = randn_leaf({3, 4}, 30, 0, 1, DType::f32), up = randn_leaf({3, 4}, 31);
  AutocastGuard mixed(DType::f32, DType::f64);
  Tensor out = swiglu(gate, up);
  EXPECT_EQ(out.dtype(), DType::f64);
  EXPECT_LE(max_abs_difference(out, silu(raw_to_dtype(gate, DType::f64)) * up), 1e-14);
}

// The composite keeps silu(gate) for the product's backward; the fused op keeps nothing new.
TEST(Swiglu, KeepsNoIntermediateForTheBackward) {
  Tensor gate = randn_leaf({256, 1024}, 40), up = randn_leaf({256, 1024}, 41);
  Allocator& alloc = allocator_for(DeviceType::cpu);
  auto kept = [&](bool fused) {
    const int64_t before = alloc.stats().bytes_in_use;
    Tensor out = fused ? swiglu(gate, up) : silu(gate) * up;
    const int64_t after = alloc.stats().bytes_in_use;
    return after - before - static_cast<int64_t>(out.numel() * 8);  // beyond the output itself
  };
  const int64_t tensor_bytes = 256 * 1024 * 8;
  EXPECT_LT(kept(true), tensor_bytes / 16);
  EXPECT_GE(kept(false), tensor_bytes) << "silu(gate), kept by the product";
}

TEST(Swiglu, ErrorsNameTheProblem) {
  expect_error(
      [] {
        swiglu(Tensor::zeros({2, 3}, DType::f64), Tensor::zeros({2, 4}, DType::f64));
      },
      {"swiglu", "same shape", "(2, 3)", "(2, 4)"});
  expect_error(
      [] {
        swiglu(Tensor::zeros({2, 3}, DType::f64), Tensor::zeros({2, 3}, DType::f32));
      },
      {"swiglu"});
}

}  // namespace
}  // namespace gradus
