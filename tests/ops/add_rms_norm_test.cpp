// add_rms_norm: f64 gradchecks (both outputs used, either alone, no weight, non-contiguous and
// op-produced inputs); bit-for-bit equality with the composite (x + delta, then rms_norm) in f32
// and f64, forward and every gradient; under autocast a narrower delta is widened in the kernel (no
// cast, one kernel each way, the same bits as the composite's promotion); the composite where the
// fused kernel does not apply; and the errors.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "autodiff/autocast.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/norm.h"
#include "autodiff/ops/reduce.h"
#include "core/kernel_census.h"
#include "support/census.h"
#include "support/expect_error.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::census_of;
using testing::noncontiguous_leaf;
using testing::randn_leaf;

// Both outputs into one scalar-friendly tensor: sum's gradient and y's gradient both non-trivial.
Tensor both(const SumAndNorm& r) { return r.sum * 0.7 + r.norm * r.norm; }

TEST(Gradcheck, add_rms_norm) {
  auto with_w = [](const std::vector<Tensor>& in) {
    return both(add_rms_norm(in[0], in[1], in[2]));
  };
  auto no_w = [](const std::vector<Tensor>& in) {
    return both(add_rms_norm(in[0], in[1], Tensor(), 1e-3));
  };
  auto norm_only = [](const std::vector<Tensor>& in) {
    return add_rms_norm(in[0], in[1], in[2]).norm;
  };
  auto sum_only = [](const std::vector<Tensor>& in) {
    return add_rms_norm(in[0], in[1], in[2]).sum * 1.5;
  };
  const auto inputs = [](uint64_t seed) {
    return std::vector<Tensor>{randn_leaf({4, 6}, seed), randn_leaf({4, 6}, seed + 1),
                               randn_leaf({6}, seed + 2)};
  };
  EXPECT_GRADCHECK(with_w, inputs(1));
  EXPECT_GRADCHECK(no_w, (std::vector<Tensor>{randn_leaf({3, 7}, 4), randn_leaf({3, 7}, 5)}));
  EXPECT_GRADCHECK(norm_only, inputs(6));
  EXPECT_GRADCHECK(sum_only, inputs(9));
  EXPECT_GRADCHECK(with_w, (std::vector<Tensor>{noncontiguous_leaf({2, 3, 5}, 12),
                                                noncontiguous_leaf({2, 3, 5}, 13),
                                                noncontiguous_leaf({5}, 14)}));
  // Inside a graph: x from another op, delta used twice.
  auto composed = [](const std::vector<Tensor>& in) {
    return both(add_rms_norm(in[0] * 2.0 + 0.5, in[1], in[2])) * in[1];
  };
  EXPECT_GRADCHECK(composed, inputs(15));
}

// Loss, outputs and gradients of `fn` with the fused kernel and with the composite.
struct Outcome {
  std::vector<std::vector<double>> values;
};
Outcome run(const std::function<SumAndNorm(const std::vector<Tensor>&)>& fn,
            const std::vector<Tensor>& inputs, bool fused) {
  set_fused_norm(fused);
  for (const Tensor& t : inputs) t.zero_grad();
  const SumAndNorm r = fn(inputs);
  Generator gen(3);
  const Tensor a = rand_normal(r.sum.shape(), gen, r.sum.dtype());
  const Tensor b = rand_normal(r.norm.shape(), gen, r.norm.dtype());
  backward(sum(r.sum * a) + sum(r.norm * b));
  set_fused_norm(true);
  Outcome out;
  out.values = {r.sum.to_vector(), r.norm.to_vector()};
  for (const Tensor& t : inputs) out.values.push_back(t.grad().to_vector());
  return out;
}

TEST(AddRmsNorm, EqualsTheCompositeBitForBit) {
  for (DType dt : {DType::f32, DType::f64})
    for (bool weighted : {true, false}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + (weighted ? " weighted" : " no weight"));
      Generator gen(5);
      std::vector<Tensor> in = {rand_normal({3, 5, 40}, gen, dt), rand_normal({3, 5, 40}, gen, dt)};
      if (weighted) in.push_back(rand_normal({40}, gen, dt, 1.0, 0.3));
      for (const Tensor& t : in) t.set_requires_grad(true);
      auto fn = [&](const std::vector<Tensor>& v) {
        return add_rms_norm(v[0], v[1], weighted ? v[2] : Tensor());
      };
      const Outcome fused = run(fn, in, true), composite = run(fn, in, false);
      ASSERT_EQ(fused.values.size(), composite.values.size());
      for (size_t i = 0; i < fused.values.size(); ++i)
        EXPECT_EQ(fused.values[i], composite.values[i]) << "value set " << i;
    }
}

// Under autocast (f32 compute, f64 wide: the CPU's stand-in for bf16 / f32) a delta in the compute
// dtype is added to the wide stream in the kernel: one kernel forward, one backward, no cast, and
// the composite's bits (its promotion cast is exact, its cast back rounds as the kernel does).
TEST(AddRmsNorm, WidensANarrowDeltaInTheKernel) {
  Generator gen(6);
  const Tensor x = rand_normal({4, 33}, gen, DType::f64).set_requires_grad(true);
  const Tensor delta = rand_normal({4, 33}, gen, DType::f32).set_requires_grad(true);
  const Tensor w = rand_normal({33}, gen, DType::f64, 1.0, 0.3).set_requires_grad(true);
  auto fn = [](const std::vector<Tensor>& v) {
    AutocastGuard mixed(DType::f32, DType::f64);
    return add_rms_norm(v[0], v[1], v[2]);
  };
  const Outcome fused = run(fn, {x, delta, w}, true), composite = run(fn, {x, delta, w}, false);
  for (size_t i = 0; i < fused.values.size(); ++i)
    EXPECT_EQ(fused.values[i], composite.values[i]) << "value set " << i;
  EXPECT_EQ(delta.grad().dtype(), DType::f32);
  EXPECT_EQ(x.grad().dtype(), DType::f64);

  SumAndNorm r;
  const auto forward = census_of([&] {
    AutocastGuard mixed(DType::f32, DType::f64);
    r = add_rms_norm(x, delta, w);
  });
  EXPECT_EQ(forward, (std::map<std::string, int64_t>{{"add_rms_norm_forward", 1}}));
  const Tensor loss = sum(r.sum) + sum(r.norm * r.norm);
  const Tensor seed = Tensor::ones({}, DType::f64);
  const auto back = census_of([&] { backward(loss, seed); });
  EXPECT_EQ(back.count("add_rms_norm_backward"), 1u);
  EXPECT_EQ(back.count("copy (dtype conversion)"), 0u);
}

// Where the fused kernel does not apply, the composite runs (and its errors are the ones raised).
TEST(AddRmsNorm, FallsBackToTheComposite) {
  Generator gen(7);
  const Tensor x = rand_normal({2, 8}, gen), w = rand_normal({8}, gen);
  auto calls_of = [&](const Tensor& a, const Tensor& b, const Tensor& weight) {
    return census_of([&] { add_rms_norm(a, b, weight); });
  };
  // A delta broadcast over the rows: not the fused kernel's one shape.
  EXPECT_EQ(calls_of(x, rand_normal({8}, gen), w).count("add_rms_norm_forward"), 0u);
  {
    AutocastGuard mixed(DType::f32, DType::f64);  // x (f32) narrower than delta (f64)
    const auto calls = calls_of(x, rand_normal({2, 8}, gen, DType::f64), Tensor());
    EXPECT_EQ(calls.count("add_rms_norm_forward"), 0u);
    EXPECT_EQ(calls.count("rms_norm_forward"), 1u);
  }
  {
    // A delta two widths narrower (bf16 beside f64): the kernels pair only the next narrower.
    AutocastGuard mixed(DType::bf16, DType::f64);
    const Tensor x64 = rand_normal({2, 8}, gen, DType::f64);
    const Tensor d16 = raw_to_dtype(rand_normal({2, 8}, gen), DType::bf16);
    const auto calls = calls_of(x64, d16, Tensor());
    EXPECT_EQ(calls.count("add_rms_norm_forward"), 0u);
    EXPECT_EQ(calls.count("rms_norm_forward"), 1u);
  }
  EXPECT_EQ(calls_of(x, rand_normal({2, 8}, gen), w).count("add_rms_norm_forward"), 1u);
  // Mixed dtypes outside autocast, and mismatched shapes, are the add's errors.
  EXPECT_THROW(add_rms_norm(x, rand_normal({2, 8}, gen, DType::f64), w), Error);
  EXPECT_THROW(add_rms_norm(x, rand_normal({3, 8}, gen), w), Error);
  EXPECT_THROW(add_rms_norm(x, rand_normal({2, 8}, gen), rand_normal({7}, gen)), Error);
  EXPECT_THROW(add_rms_norm(x, Tensor(), w), Error);
  EXPECT_TRUE(fused_norm_enabled());
}

}  // namespace
}  // namespace gradus
