// Unary elementwise ops: forward against std:: reference formulas in f32 and f64, f64 gradchecks on
// contiguous and non-contiguous inputs (domains chosen away from kinks), accumulation (in
// gradcheck).
#include <cmath>
#include <functional>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/tape.h"
#include "core/allocator.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::noncontiguous_leaf;
using testing::uniform_leaf;
using UnaryTensorFn = std::function<Tensor(const Tensor&)>;
using RefFn = std::function<double(double)>;

struct UnaryCase {
  const char* name;
  UnaryTensorFn op;
  RefFn ref;
  double lo, hi;  // input domain for the test (kinks of relu/abs/clamp are avoided by the check)
};

double sigmoid_ref(double x) { return 1.0 / (1.0 + std::exp(-x)); }

std::vector<UnaryCase> cases() {
  return {
      {"neg", [](const Tensor& x) { return neg(x); }, [](double x) { return -x; }, -2, 2},
      {"exp", [](const Tensor& x) { return exp(x); }, [](double x) { return std::exp(x); }, -2, 2},
      {"log", [](const Tensor& x) { return log(x); }, [](double x) { return std::log(x); }, 0.2, 3},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, [](double x) { return std::sqrt(x); }, 0.2,
       3},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, [](double x) { return 1 / std::sqrt(x); },
       0.2, 3},
      {"abs", [](const Tensor& x) { return abs(x); }, [](double x) { return std::abs(x); }, -2, 2},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](double x) { return std::tanh(x); }, -2,
       2},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, sigmoid_ref, -3, 3},
      {"relu", [](const Tensor& x) { return relu(x); }, [](double x) { return x > 0 ? x : 0; }, -2,
       2},
      {"leaky_relu", [](const Tensor& x) { return leaky_relu(x, 0.1); },
       [](double x) { return x > 0 ? x : 0.1 * x; }, -2, 2},
      {"gelu", [](const Tensor& x) { return gelu(x); },
       [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }, -3, 3},
      {"gelu_tanh", [](const Tensor& x) { return gelu(x, true); },
       [](double x) {
         return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
       },
       -3, 3},
      {"silu", [](const Tensor& x) { return silu(x); }, [](double x) { return x * sigmoid_ref(x); },
       -3, 3},
      {"softplus", [](const Tensor& x) { return softplus(x, 2.0, 3.0); },
       [](double x) { return 2.0 * x > 3.0 ? x : std::log1p(std::exp(2.0 * x)) / 2.0; }, -3, 3},
      {"clamp", [](const Tensor& x) { return clamp(x, -0.5, 0.7); },
       [](double x) { return std::min(std::max(x, -0.5), 0.7); }, -2, 2},
      {"pow_scalar", [](const Tensor& x) { return pow(x, 2.5); },
       [](double x) { return std::pow(x, 2.5); }, 0.2, 2},
      {"affine", [](const Tensor& x) { return affine(x, -1.5, 0.25); },
       [](double x) { return -1.5 * x + 0.25; }, -2, 2},
      {"square", [](const Tensor& x) { return square(x); }, [](double x) { return x * x; }, -2, 2},
      {"reciprocal", [](const Tensor& x) { return reciprocal(x); }, [](double x) { return 1 / x; },
       0.3, 2},
  };
}

const UnaryCase& find_case(const std::string& name) {
  static const std::vector<UnaryCase> all = cases();
  for (const auto& c : all)
    if (name == c.name) return c;
  throw Error("no unary case " + name);
}

// Kinks (relu/abs at 0, clamp at its bounds, softplus at its threshold) are measure-zero for random
// inputs, but an element within eps of one would make the finite difference meaningless.
void check_grad(const std::string& name) {
  const UnaryCase& c = find_case(name);
  auto fn = [&](const std::vector<Tensor>& in) { return c.op(in[0]); };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{uniform_leaf({4, 5}, 11, c.lo, c.hi)}));
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{noncontiguous_leaf({4, 5}, 12, c.lo, c.hi)}));
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{noncontiguous_leaf({2, 3, 4}, 13, c.lo, c.hi)}));
}

TEST(Gradcheck, neg) { check_grad("neg"); }
TEST(Gradcheck, exp) { check_grad("exp"); }
TEST(Gradcheck, log) { check_grad("log"); }
TEST(Gradcheck, sqrt) { check_grad("sqrt"); }
TEST(Gradcheck, rsqrt) { check_grad("rsqrt"); }
TEST(Gradcheck, abs) { check_grad("abs"); }
TEST(Gradcheck, tanh) { check_grad("tanh"); }
TEST(Gradcheck, sigmoid) { check_grad("sigmoid"); }
TEST(Gradcheck, relu) { check_grad("relu"); }
TEST(Gradcheck, leaky_relu) { check_grad("leaky_relu"); }
TEST(Gradcheck, gelu) { check_grad("gelu"); }
TEST(Gradcheck, gelu_tanh) { check_grad("gelu_tanh"); }
TEST(Gradcheck, silu) { check_grad("silu"); }
TEST(Gradcheck, softplus) { check_grad("softplus"); }
TEST(Gradcheck, clamp) { check_grad("clamp"); }
TEST(Gradcheck, pow_scalar) { check_grad("pow_scalar"); }
TEST(Gradcheck, affine) { check_grad("affine"); }
TEST(Gradcheck, square) { check_grad("square"); }
TEST(Gradcheck, reciprocal) { check_grad("reciprocal"); }

TEST(ElementwiseUnary, ForwardMatchesReferenceInBothDtypes) {
  for (const UnaryCase& c : cases()) {
    for (DType dt : {DType::f32, DType::f64}) {
      Generator gen(21);
      Tensor x = rand_uniform({7, 9}, gen, dt, c.lo, c.hi);
      Tensor y = c.op(x);
      std::vector<double> xs = x.to_vector(), ys = y.to_vector();
      double tol = dt == DType::f32 ? 2e-6 : 1e-13;
      for (size_t i = 0; i < xs.size(); ++i) {
        double expect = c.ref(xs[i]);
        EXPECT_NEAR(ys[i], expect, tol * (1 + std::abs(expect))) << c.name << " " << dtype_name(dt);
      }
    }
  }
}

TEST(ElementwiseUnary, SoftplusIsStableForLargeInputs) {
  Tensor x = Tensor::from_vector(std::vector<double>{-800, 800}, {2}, DType::f64);
  std::vector<double> y = softplus(x).to_vector();
  EXPECT_EQ(y[1], 800.0);
  EXPECT_GE(y[0], 0.0);
  EXPECT_TRUE(std::isfinite(y[0]));
}

// What a unary op keeps for its backward: relu its output only (x > 0 is y > 0), affine nothing
// (its derivative is a constant). So in relu(x * 2) the product is freed once relu has run, and the
// gradient is still right.
TEST(UnaryOps, ReluAndAffineKeepOnlyWhatTheirBackwardReads) {
  Allocator& alloc = allocator_for(DeviceType::cpu);
  Tensor x = testing::randn_leaf({256, 1024}, 3);  // f64: 2 MiB per tensor
  const int64_t tensor_bytes = static_cast<int64_t>(x.nbytes());
  const int64_t before = alloc.stats().bytes_in_use;
  Tensor y = relu(x * 2.0);
  // y alone is alive: the product (relu's input) went when its last reference did.
  EXPECT_LT(alloc.stats().bytes_in_use - before, 2 * tensor_bytes);
  backward(sum(y));
  const std::vector<double> xs = x.to_vector(), g = x.grad().to_vector();
  for (size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(g[i], xs[i] > 0 ? 2.0 : 0.0) << i;
}

}  // namespace
}  // namespace gradus
