// Binary elementwise ops: forward against a naive loop (with broadcasting), f64 gradchecks on
// contiguous, non-contiguous and broadcast inputs, and gradient accumulation (inside gradcheck).
#include <cmath>
#include <functional>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::noncontiguous_leaf;
using testing::randn_leaf;
using testing::uniform_leaf;
using BinaryFnT = Tensor (*)(const Tensor&, const Tensor&);
using RefFn = std::function<double(double, double)>;

// Naive broadcast reference: a (R, 1) with b (1, C) -> (R, C).
void check_forward_broadcast(BinaryFnT op, RefFn ref, DType dtype, double lo, double hi) {
  Generator gen(7);
  Tensor a = rand_uniform({3, 1}, gen, dtype, lo, hi);
  Tensor b = rand_uniform({1, 4}, gen, dtype, lo, hi);
  Tensor y = op(a, b);
  ASSERT_EQ(y.shape(), (Shape{3, 4}));
  double tol = dtype == DType::f32 ? 1e-6 : 1e-14;
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 4; ++j) {
      double expect = ref(a.at({i, 0}), b.at({0, j}));
      EXPECT_NEAR(y.at({i, j}), expect, tol * (1 + std::abs(expect))) << i << "," << j;
    }
}

void check_all_grads(BinaryFnT op, double lo, double hi) {
  auto fn = [op](const std::vector<Tensor>& in) { return op(in[0], in[1]); };
  // Same shape, contiguous.
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{uniform_leaf({3, 4}, 1, lo, hi), uniform_leaf({3, 4}, 2, lo, hi)}));
  // Non-contiguous (transposed) inputs.
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{noncontiguous_leaf({3, 4}, 3, lo, hi),
                                            noncontiguous_leaf({3, 4}, 4, lo, hi)}));
  // Broadcast both ways, and a lower-rank operand.
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{uniform_leaf({3, 1}, 5, lo, hi), uniform_leaf({1, 4}, 6, lo, hi)}));
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{uniform_leaf({2, 3, 4}, 7, lo, hi), uniform_leaf({4}, 8, lo, hi)}));
  // Scalar (rank-0) operand.
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{uniform_leaf({}, 9, lo, hi), uniform_leaf({2, 3}, 10, lo, hi)}));
}

TEST(Gradcheck, add) { check_all_grads(&add, -2, 2); }
TEST(Gradcheck, sub) { check_all_grads(&sub, -2, 2); }
TEST(Gradcheck, mul) { check_all_grads(&mul, -2, 2); }
TEST(Gradcheck, div) { check_all_grads(&div, 0.5, 2); }
TEST(Gradcheck, maximum) { check_all_grads(&maximum, -2, 2); }
TEST(Gradcheck, minimum) { check_all_grads(&minimum, -2, 2); }
TEST(Gradcheck, pow) { check_all_grads(static_cast<BinaryFnT>(&pow), 0.5, 2); }

TEST(ElementwiseBinary, ForwardMatchesNaiveReference) {
  for (DType dt : {DType::f32, DType::f64}) {
    check_forward_broadcast(&add, [](double x, double y) { return x + y; }, dt, -2, 2);
    check_forward_broadcast(&sub, [](double x, double y) { return x - y; }, dt, -2, 2);
    check_forward_broadcast(&mul, [](double x, double y) { return x * y; }, dt, -2, 2);
    check_forward_broadcast(&div, [](double x, double y) { return x / y; }, dt, 0.5, 2);
    check_forward_broadcast(&maximum, [](double x, double y) { return std::max(x, y); }, dt, -2, 2);
    check_forward_broadcast(&minimum, [](double x, double y) { return std::min(x, y); }, dt, -2, 2);
    check_forward_broadcast(static_cast<BinaryFnT>(&pow),
                            [](double x, double y) { return std::pow(x, y); }, dt, 0.5, 2);
  }
}

TEST(ElementwiseBinary, MaximumSplitsGradientAtTies) {
  Tensor a = Tensor::from_vector(std::vector<double>{1, 2, 3}, {3}, DType::f64);
  Tensor b = Tensor::from_vector(std::vector<double>{1, 5, 0}, {3}, DType::f64);
  a.set_requires_grad();
  b.set_requires_grad();
  backward(sum(maximum(a, b)));
  EXPECT_EQ(a.grad().to_vector(), (std::vector<double>{0.5, 0, 1}));
  EXPECT_EQ(b.grad().to_vector(), (std::vector<double>{0.5, 1, 0}));
}

TEST(ElementwiseBinary, MismatchedShapesNameTheOpAndShapes) {
  Tensor a = Tensor::zeros({2, 3});
  Tensor b = Tensor::zeros({4, 3});
  try {
    add(a, b);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("add"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(2, 3)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(4, 3)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(add(Tensor::zeros({2}), Tensor::zeros({2}, DType::f64)), Error);
}

TEST(ElementwiseBinary, ScalarOperatorsMatchTensorOps) {
  Tensor a = Tensor::from_vector(std::vector<double>{1, -2, 4}, {3}, DType::f64);
  EXPECT_EQ((a + 1.0).to_vector(), (std::vector<double>{2, -1, 5}));
  EXPECT_EQ((a * 2.0).to_vector(), (std::vector<double>{2, -4, 8}));
  EXPECT_EQ((1.0 - a).to_vector(), (std::vector<double>{0, 3, -3}));
  EXPECT_EQ((a / 2.0).to_vector(), (std::vector<double>{0.5, -1, 2}));
  EXPECT_EQ((4.0 / a).to_vector(), (std::vector<double>{4, -2, 1}));
  EXPECT_EQ((-a).to_vector(), (std::vector<double>{-1, 2, -4}));
}

}  // namespace
}  // namespace gradus
