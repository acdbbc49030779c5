// The tape engine (autodiff/tape): what gets recorded, accumulation into leaves, retain_graph and
// the freeing of records, pruning of unreachable graphs, retain_grad, diamonds, gradient aliasing,
// the NaN/Inf anomaly mode and the reduction of broadcast gradients. Expected gradients are derived
// by hand in each test.
#include "autodiff/tape.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <initializer_list>
#include <string>
#include <thread>
#include <vector>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/view.h"
#include "support/expect_error.h"

namespace gradus {
namespace {

using testing::error_message;
using testing::expect_error;

struct AnomalyGuard {
  bool previous = detect_anomaly();
  explicit AnomalyGuard(bool on) { set_detect_anomaly(on); }
  ~AnomalyGuard() { set_detect_anomaly(previous); }
};

Tensor leaf(const std::vector<double>& v, const Shape& shape, DType dt = DType::f64) {
  Tensor t = Tensor::from_vector(v, shape, dt);
  t.set_requires_grad(true);
  return t;
}

void expect_values(const Tensor& t, const std::vector<double>& expect, double tol = 1e-12) {
  ASSERT_TRUE(t.defined());
  std::vector<double> got = t.to_vector();
  ASSERT_EQ(got.size(), expect.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expect[i], tol) << "element " << i;
}

// ------------------------------------------------------------------ recording

TEST(Tape, RequiresGradPropagatesThroughOps) {
  Tensor x = leaf({1, 2, 3}, {3});
  Tensor c = Tensor::from_vector({4, 5, 6}, {3}, DType::f64);
  const size_t before = tape_size();

  Tensor y = mul(x, c);
  EXPECT_TRUE(y.requires_grad());
  EXPECT_FALSE(y.is_leaf());
  EXPECT_TRUE(x.is_leaf());
  EXPECT_EQ(tape_size(), before + 1);

  Tensor z = mul(c, c);  // nothing requires gradients: no record, a plain leaf
  EXPECT_FALSE(z.requires_grad());
  EXPECT_TRUE(z.is_leaf());
  EXPECT_EQ(tape_size(), before + 1);

  Tensor w = exp(y) + z;  // a requiring input anywhere is enough
  EXPECT_TRUE(w.requires_grad());
  EXPECT_EQ(tape_size(), before + 3);
  expect_error([&] { w.set_requires_grad(false); }, {"set_requires_grad", "leaf"});
}

TEST(Tape, NoGradGuardRecordsNothing) {
  Tensor x = leaf({1, 2}, {2});
  const size_t before = tape_size();
  EXPECT_TRUE(grad_enabled());
  {
    NoGradGuard guard;
    EXPECT_FALSE(grad_enabled());
    Tensor y = sum(exp(x) * x);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_TRUE(y.is_leaf());
    {
      NoGradGuard nested;
      EXPECT_FALSE(grad_enabled());
    }
    EXPECT_FALSE(grad_enabled());  // the inner guard restores "off", not "on"
    EXPECT_EQ(tape_size(), before);
    expect_error([&] { backward(y); }, {"backward", "does not require gradients"});
  }
  EXPECT_TRUE(grad_enabled());
  EXPECT_TRUE(exp(x).requires_grad());
}

TEST(Tape, DetachCutsTheGraph) {
  Tensor x = leaf({1, 2}, {2});
  Tensor d = detach(x * x);
  EXPECT_FALSE(d.requires_grad());
  Tensor y = sum(d * x);  // gradient flows to x only through the second factor: d = x^2
  backward(y);
  expect_values(x.grad(), {1, 4});
}

// ------------------------------------------------------------------ backward basics

TEST(Tape, LeavesAccumulateAcrossBackwardCalls) {
  Tensor x = leaf({1, -2, 3}, {3});
  backward(sum(x * x));  // d/dx sum(x^2) = 2x
  expect_values(x.grad(), {2, -4, 6});
  backward(sum(x * x));
  expect_values(x.grad(), {4, -8, 12});
  backward(sum(exp(x)));
  expect_values(x.grad(), {4 + std::exp(1.0), -8 + std::exp(-2.0), 12 + std::exp(3.0)});
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
  backward(sum(x));
  expect_values(x.grad(), {1, 1, 1});
}

TEST(Tape, F32GradientsHaveTheLeafDtype) {
  Tensor x = leaf({0.5, 1.5}, {2}, DType::f32);
  backward(mean(x * x));  // d/dx mean(x^2) = x
  ASSERT_EQ(x.grad().dtype(), DType::f32);
  expect_values(x.grad(), {0.5, 1.5}, 1e-6);
}

TEST(Tape, NonScalarRootNeedsAGradient) {
  Tensor x = leaf({1, 2, 3, 4}, {2, 2});
  Tensor y = x * x;
  expect_error([&] { backward(y); }, {"backward", "scalar", "f64 (2, 2) cpu", "pass the gradient"});
  expect_error([&] { backward(y, Tensor::ones({4}, DType::f64)); },
               {"backward", "f64 (4,) cpu", "f64 (2, 2) cpu"});
  expect_error([&] { backward(y, Tensor::ones({2, 2}, DType::f32)); }, {"backward", "f32 (2, 2)"});
  // The failed calls freed nothing.
  Tensor g = Tensor::from_vector({1, 10, 100, 1000}, {2, 2}, DType::f64);
  backward(y, g);  // dL/dx = 2 x g
  expect_values(x.grad(), {2, 40, 600, 8000});
  // A one-element root of any rank is seeded with 1.
  Tensor x1 = leaf({3}, {1, 1});
  backward(x1 * x1);
  expect_values(x1.grad(), {6});
}

TEST(Tape, BackwardOnALeafRoot) {
  Tensor x = leaf({1, 2}, {2});
  Tensor g = Tensor::from_vector({3, 4}, {2}, DType::f64);
  backward(x, g);
  expect_values(x.grad(), {3, 4});
  EXPECT_FALSE(x.grad().shares_storage(g));  // the caller may reuse g
  raw_fill_(g, 0.0);
  expect_values(x.grad(), {3, 4});
}

TEST(Tape, BackwardTwiceNeedsRetainGraph) {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = sum(exp(x));
  backward(y);
  expect_error([&] { backward(y); }, {"backward", "freed", "retain_graph"});
  // A new root on top of the freed graph cannot reach x either.
  Tensor z = y * y;
  expect_error([&] { backward(z); }, {"freed", "retain_graph"});
  expect_values(x.grad(), {std::exp(1.0), std::exp(2.0)});  // unchanged by the failures
}

TEST(Tape, RetainGraphAllowsASecondPassThatAccumulates) {
  Tensor x = leaf({1, 2}, {2});
  const size_t before = tape_size();
  Tensor y = sum(x * x * x);  // d/dx = 3 x^2
  EXPECT_EQ(tape_size(), before + 3);
  backward(y, Tensor(), /*retain_graph=*/true);
  EXPECT_EQ(tape_size(), before + 3);
  expect_values(x.grad(), {3, 12});
  backward(y, Tensor(), true);
  expect_values(x.grad(), {6, 24});
  backward(y);  // the last pass frees
  expect_values(x.grad(), {9, 36});
  EXPECT_EQ(tape_size(), before);
  expect_error([&] { backward(y); }, {"retain_graph"});
}

TEST(Tape, BackwardFreesItsRecordsOnly) {
  Tensor x = leaf({1, 2}, {2});
  const size_t before = tape_size();
  Tensor other = sum(exp(x));  // another live graph on the same tape
  Tensor y = sum(x * x + x);
  EXPECT_EQ(tape_size(), before + 5);
  backward(y);
  EXPECT_EQ(tape_size(), before + 2);  // exp and its sum stay for `other`
  expect_values(x.grad(), {3, 5});
  backward(other);
  EXPECT_EQ(tape_size(), before);
  expect_values(x.grad(), {3 + std::exp(1.0), 5 + std::exp(2.0)});
}

// ------------------------------------------------------------------ pruning

TEST(Tape, DroppedGraphsArePruned) {
  Tensor x = leaf({0.5, -0.5, 0.25}, {3});
  Tensor kept = sum(x * x);  // must survive the pruning
  const size_t before = tape_size();
  size_t largest = 0;
  for (int i = 0; i < 20000; ++i) {
    Tensor y = exp(x);  // results dropped at once (evaluation without no_grad)
    largest = std::max(largest, tape_size());
  }
  EXPECT_LT(largest, before + 10000);
  // Chains whose intermediates die only when the chain's end is dropped.
  for (int i = 0; i < 5000; ++i) {
    Tensor h = x;
    for (int k = 0; k < 4; ++k) h = tanh(h) * x;
    largest = std::max(largest, tape_size());
  }
  EXPECT_LT(largest, before + 10000);
  backward(kept);
  expect_values(x.grad(), {1, -1, 0.5});
}

TEST(Tape, ClearTapeDropsEverything) {
  Tensor x = leaf({1}, {1});
  Tensor y = exp(x);
  EXPECT_GT(tape_size(), 0u);
  clear_tape();
  EXPECT_EQ(tape_size(), 0u);
  expect_error([&] { backward(sum(y)); }, {"backward", "no longer on this thread's tape"});
}

TEST(Tape, GraphsFromAnotherThreadAreRefused) {
  // Each thread has its own tape. A graph recorded on one thread cannot be differentiated on
  // another: that must be an error, not a silent lack of gradients, even when the other thread's
  // tape holds records of its own (fresh threads number their first records alike).
  Tensor x = leaf({1, 2}, {2});
  Tensor from_a, root_a;
  std::thread([&] {
    from_a = exp(x);
    root_a = sum(exp(x));
  }).join();
  std::string msg_input, msg_root;
  std::thread([&] {
    Tensor own = exp(x);  // records of this thread, alive during the backward calls
    Tensor own2 = exp(own);
    Tensor own3 = exp(own2);
    msg_input = error_message([&] { backward(sum(from_a)); });
    msg_root = error_message([&] { backward(root_a); });
  }).join();
  EXPECT_NE(msg_input.find("no longer on this thread's tape"), std::string::npos) << msg_input;
  EXPECT_NE(msg_root.find("no longer on this thread's tape"), std::string::npos) << msg_root;
  EXPECT_FALSE(x.grad().defined());
}

// ------------------------------------------------------------------ graph shapes

TEST(Tape, RetainGradOnANonLeaf) {
  Tensor x = leaf({1, 2, 3}, {3});
  Tensor c = Tensor::from_vector({3, 3, 3}, {3}, DType::f64);
  Tensor y = x * c;  // y = 3x
  Tensor h = y * y;  // not retained
  retain_grad(y);
  backward(sum(h));  // dL/dy = 2y = 6x; dL/dx = 18x
  expect_values(y.grad(), {6, 12, 18});
  EXPECT_FALSE(h.grad().defined());
  expect_values(x.grad(), {18, 36, 54});
  expect_error([&] { retain_grad(c); }, {"retain_grad", "does not require gradients"});
}

TEST(Tape, RetainGradOnTheRoot) {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = x * x;
  retain_grad(y);
  Tensor g = Tensor::from_vector({5, 7}, {2}, DType::f64);
  backward(y, g);
  expect_values(y.grad(), {5, 7});
  EXPECT_FALSE(y.grad().shares_storage(g));
  expect_values(x.grad(), {10, 28});
}

TEST(Tape, DiamondGraphsAccumulate) {
  // x feeds both operands: d/dx (x*x + x) = 2x + 1.
  Tensor x = leaf({1, -3}, {2});
  backward(sum(x * x + x));
  expect_values(x.grad(), {3, -5});
  // A diamond through a non-leaf: y = exp(x), z = y * y + y, dz/dx = (2y + 1) y.
  Tensor a = leaf({0.5, -1}, {2});
  Tensor y = exp(a);
  backward(sum(y * y + y));
  const double y0 = std::exp(0.5), y1 = std::exp(-1.0);
  expect_values(a.grad(), {(2 * y0 + 1) * y0, (2 * y1 + 1) * y1});
  // The same tensor as both operands of a pass-through rule.
  Tensor b = leaf({1, 2}, {2});
  backward(sum(add(b, b)));
  expect_values(b.grad(), {2, 2});
  Tensor s = leaf({1, 2}, {2});
  backward(sum(sub(s, s)));
  expect_values(s.grad(), {0, 0});
}

TEST(Tape, PassThroughGradientsDoNotAlias) {
  // add hands one gradient tensor to both inputs; each leaf must own its own copy, so an optimiser
  // that scales one gradient in place does not change the other.
  Tensor a = leaf({1, 2, 3}, {3});
  Tensor b = leaf({4, 5, 6}, {3});
  backward(sum(add(a, b)));
  ASSERT_TRUE(a.grad().defined() && b.grad().defined());
  EXPECT_FALSE(a.grad().shares_storage(b.grad()));
  raw_fill_(a.grad(), 7.0);
  expect_values(b.grad(), {1, 1, 1});
  raw_fill_(b.grad(), -1.0);
  expect_values(a.grad(), {7, 7, 7});

  // Through a retained non-leaf, and with a non-scalar root whose gradient the caller keeps.
  Tensor p = leaf({1, 2}, {2});
  Tensor q = leaf({3, 4}, {2});
  Tensor r = add(p, q);
  retain_grad(r);
  Tensor g = Tensor::from_vector({1, 1}, {2}, DType::f64);
  backward(add(r, p), g);
  EXPECT_FALSE(p.grad().shares_storage(q.grad()));
  EXPECT_FALSE(q.grad().shares_storage(r.grad()));
  EXPECT_FALSE(p.grad().shares_storage(g));
  EXPECT_FALSE(q.grad().shares_storage(g));
  raw_fill_(g, 100.0);
  raw_fill_(r.grad(), 50.0);
  expect_values(p.grad(), {2, 2});
  expect_values(q.grad(), {1, 1});
}

TEST(Tape, LeafGradientsOfViewsAreWritableInPlace) {
  // The gradient of a transposed leaf arrives as a view of the upstream gradient; what lands in
  // grad() must still be safe to write in place (no other holder, one slot per element).
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = transpose(x, 0, 1);  // (3, 2)
  Tensor w = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {3, 2}, DType::f64);
  backward(sum(y * w));  // dL/dx[i, j] = w[j, i]
  expect_values(x.grad(), {1, 3, 5, 2, 4, 6});
  raw_fill_(raw_slice(x.grad(), 0, 0, 1), 0.0);  // in-place write to row 0 only
  expect_values(x.grad(), {0, 0, 0, 2, 4, 6});

  Tensor e = leaf({2}, {1});
  Tensor big = expand(e, {4});
  backward(sum(big * Tensor::from_vector({1, 2, 3, 4}, {4}, DType::f64)));
  expect_values(e.grad(), {10});
}

// ------------------------------------------------------------------ broadcasting

TEST(Tape, BroadcastGradientsAreReducedToInputShapes) {
  Tensor a = leaf({1, 2, 3}, {3, 1});
  Tensor b = leaf({10, 20, 30, 40}, {1, 4});
  backward(sum(a * b));  // dL/da[i] = sum_j b[j] = 100; dL/db[j] = sum_i a[i] = 6
  ASSERT_EQ(a.grad().shape(), (Shape{3, 1}));
  ASSERT_EQ(b.grad().shape(), (Shape{1, 4}));
  expect_values(a.grad(), {100, 100, 100});
  expect_values(b.grad(), {6, 6, 6, 6});

  // Leading axes and a rank-0 operand; the pass-through rule (add) is reduced too.
  Tensor v = leaf({1, 2, 3}, {3});
  Tensor s = leaf({0.5}, {});
  Tensor m = leaf({1, 2, 3, 4, 5, 6}, {2, 1, 3});
  Tensor out = add(m, v) * s;  // (2, 1, 3)
  Tensor big = expand(out, {2, 4, 3});
  backward(sum(big));
  // d/dv = sum over the 2 x 4 broadcast copies of s = 8 * 0.5; d/dm = 4 s; d/ds = 4 sum(m + v).
  expect_values(v.grad(), {4, 4, 4});
  ASSERT_EQ(m.grad().shape(), (Shape{2, 1, 3}));
  expect_values(m.grad(), {2, 2, 2, 2, 2, 2});
  ASSERT_EQ(s.grad().dim(), 0);
  expect_values(s.grad(), {4.0 * (21 + 2 * 6)});
}

TEST(Tape, ViewGradientsMapBack) {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  // y = x[:, 1:] reshaped to (4,), then permuted pieces: L = sum(y * k)
  Tensor y = reshape(slice(x, 1, 1, 3), {4});
  Tensor k = Tensor::from_vector({10, 20, 30, 40}, {4}, DType::f64);
  backward(sum(y * k));
  expect_values(x.grad(), {0, 10, 20, 0, 30, 40});
  // unsqueeze / squeeze / permute round trip: gradient is the upstream one in x's layout.
  Tensor z = leaf({1, 2, 3, 4, 5, 6}, {1, 2, 3});
  Tensor p = squeeze(permute(unsqueeze(z, 3), {3, 2, 0, 1}), 0);  // (3, 1, 2)
  backward(sum(p * reshape(Tensor::arange(6, DType::f64), {3, 1, 2})));
  // p[c, 0, b] = z[0, b, c] is weighted by 2c + b.
  expect_values(z.grad(), {0, 2, 4, 1, 3, 5});
}

// ------------------------------------------------------------------ anomaly mode

TEST(Tape, DetectAnomalyNamesTheOpAndShapes) {
  Tensor x = leaf({1, -1}, {2});
  {
    AnomalyGuard on(true);
    expect_error([&] { log(x); }, {"detect_anomaly", "\"log\"", "f64 (2,) cpu", "1 NaN/Inf"});
    // Also when nothing requires gradients (evaluation), and in f32.
    expect_error(
        [] {
          log(Tensor::from_vector(std::vector<float>{-1.0f, 2.0f, 3.0f}, {3}));
        },
        {"\"log\"", "f32 (3,) cpu"});
    // In backward: sqrt is finite at 0 but its derivative 1 / (2 sqrt x) is not.
    Tensor z = leaf({0, 4}, {2});
    Tensor r = sum(sqrt(z));
    expect_error([&] { backward(r); }, {"detect_anomaly", "\"sqrt\"", "input gradient", "(2,)"});
  }
  {
    AnomalyGuard off(false);
    Tensor y;
    EXPECT_NO_THROW(y = log(x));
    EXPECT_TRUE(std::isnan(y.at({1})));
    EXPECT_EQ(y.at({0}), 0.0);
  }
}

}  // namespace
}  // namespace gradus
