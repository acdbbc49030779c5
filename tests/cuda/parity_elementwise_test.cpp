// CPU/GPU parity of the elementwise ops (unary, binary, where, masked_fill, causal_masked_fill):
// forward and backward on contiguous, transposed, sliced, broadcast, rank-0 and empty operands, in
// f32 (tolerances: support/cuda_parity.h) and, for a few, f64.
#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/mask.h"
#include "autodiff/ops/swiglu.h"
#include "autodiff/ops/view.h"
#include "support/cuda_parity.h"

namespace gradus {
namespace {

using testing::ParityOptions;
using testing::ParityRun;
using UnaryFn = std::function<Tensor(const Tensor&)>;
using BinaryFn = std::function<Tensor(const Tensor&, const Tensor&)>;

constexpr double kInf = std::numeric_limits<double>::infinity();

// One unary op on inputs drawn by `draw` (a shape -> CPU leaf): a long contiguous vector (more
// elements than one grid-stride pass, with an odd tail for vectorised paths), a transposed matrix,
// a strided slice, a rank-0 tensor and an empty one.
void check_unary(ParityRun& run, const std::string& name, const UnaryFn& op,
                 const std::function<Tensor(const Shape&)>& draw,
                 const ParityOptions& options = {}) {
  auto plain = [&](const std::vector<Tensor>& in) { return op(in[0]); };
  run.check(name + " contiguous", plain, {draw({(1 << 18) + 3})}, options);
  run.check(
      name + " transposed",
      [&](const std::vector<Tensor>& in) { return op(transpose(in[0], 0, 1)); }, {draw({53, 37})},
      options);
  run.check(
      name + " strided slice",
      [&](const std::vector<Tensor>& in) { return op(slice(in[0], -1, 1, 34, 2)); },
      {draw({8, 3, 34})}, options);
  run.check(name + " rank 0", plain, {draw({})}, options);
  run.check(name + " empty", plain, {draw({0, 5})}, options);
}

// Inputs uniform on [lo, hi).
std::function<Tensor(const Shape&)> uniform(ParityRun& run, double lo, double hi) {
  return [&run, lo, hi](const Shape& s) { return run.uniform(s, lo, hi); };
}

TEST(CudaParity, abs) {
  GRADUS_PARITY_SETUP(run);
  check_unary(
      run, "abs", [](const Tensor& x) { return abs(x); }, uniform(run, -3, 3));
}
TEST(CudaParity, neg) {
  GRADUS_PARITY_SETUP(run);
  check_unary(
      run, "neg", [](const Tensor& x) { return neg(x); }, uniform(run, -3, 3));
}
TEST(CudaParity, exp) {
  GRADUS_PARITY_SETUP(run);
  check_unary(
      run, "exp", [](const Tensor& x) { return exp(x); }, uniform(run, -10, 10));
  ParityOptions f64;
  f64.dtype = DType::f64;
  check_unary(
      run, "exp", [](const Tensor& x) { return exp(x); }, uniform(run, -10, 10), f64);
}
TEST(CudaParity, log) {
  GRADUS_PARITY_SETUP(run);
  check_unary(
      run, "log", [](const Tensor& x) { return log(x); }, uniform(run, 0.01, 10));
}
TEST(CudaParity, sqrt) {
  GRADUS_PARITY_SETUP(run);
  check_unary(
      run, "sqrt", [](const Tensor& x) { return sqrt(x); }, uniform(run, 0.01, 10));
}
TEST(CudaParity, rsqrt) {
  GRADUS_PARITY_SETUP(run);
  check_unary(
      run, "rsqrt", [](const Tensor& x) { return rsqrt(x); }, uniform(run, 0.01, 10));
}
TEST(CudaParity, tanh) {
  GRADUS_PARITY_SETUP(run);
  check_unary(
      run, "tanh", [](const Tensor& x) { return tanh(x); }, uniform(run, -6, 6));
  ParityOptions f64;
  f64.dtype = DType::f64;
  check_unary(
      run, "tanh", [](const Tensor& x) { return tanh(x); }, uniform(run, -6, 6), f64);
}
TEST(CudaParity, sigmoid) {
  GRADUS_PARITY_SETUP(run);
  check_unary(
      run, "sigmoid", [](const Tensor& x) { return sigmoid(x); }, uniform(run, -12, 12));
}
TEST(CudaParity, relu) {
  GRADUS_PARITY_SETUP(run);
  check_unary(
      run, "relu", [](const Tensor& x) { return relu(x); }, uniform(run, -3, 3));
}
TEST(CudaParity, leaky_relu) {
  GRADUS_PARITY_SETUP(run);
  check_unary(
      run, "leaky_relu(0.2)", [](const Tensor& x) { return leaky_relu(x, 0.2); },
      uniform(run, -3, 3));
  check_unary(
      run, "leaky_relu(default)", [](const Tensor& x) { return leaky_relu(x); },
      uniform(run, -3, 3));
}
TEST(CudaParity, gelu) {
  GRADUS_PARITY_SETUP(run);
  // Down to -8: the tail where 1 + erf(x / sqrt 2) cancels (covered by the absolute floor).
  check_unary(
      run, "gelu", [](const Tensor& x) { return gelu(x); }, uniform(run, -8, 6));
  ParityOptions f64;
  f64.dtype = DType::f64;
  check_unary(
      run, "gelu", [](const Tensor& x) { return gelu(x); }, uniform(run, -8, 6), f64);
}
TEST(CudaParity, gelu_tanh) {
  GRADUS_PARITY_SETUP(run);
  check_unary(
      run, "gelu_tanh", [](const Tensor& x) { return gelu(x, true); }, uniform(run, -8, 6));
}
TEST(CudaParity, silu) {
  GRADUS_PARITY_SETUP(run);
  check_unary(
      run, "silu", [](const Tensor& x) { return silu(x); }, uniform(run, -12, 8));
}
// The fused SwiGLU gate silu(gate) * up (autodiff/ops/swiglu.h): one kernel each way.
TEST(CudaParity, swiglu) {
  GRADUS_PARITY_SETUP(run);
  auto fn = [](const std::vector<Tensor>& in) { return swiglu(in[0], in[1]); };
  run.check("(37, 129)", fn, {run.uniform({37, 129}, -12, 8), run.normal({37, 129})});
  run.check("transposed gate",
            [](const std::vector<Tensor>& in) { return swiglu(transpose(in[0], 0, 1), in[1]); },
            {run.uniform({129, 37}, -12, 8), run.normal({37, 129})});
  ParityOptions f64;
  f64.dtype = DType::f64;
  run.check("f64", fn, {run.uniform({5, 1001}, -12, 8), run.normal({5, 1001})}, f64);
}
TEST(CudaParity, softplus) {
  GRADUS_PARITY_SETUP(run);
  // Both sides of the threshold (beta x > threshold returns x).
  check_unary(
      run, "softplus", [](const Tensor& x) { return softplus(x); }, uniform(run, -30, 30));
  check_unary(
      run, "softplus(beta 2, threshold 5)", [](const Tensor& x) { return softplus(x, 2.0, 5.0); },
      uniform(run, -6, 6));
}
TEST(CudaParity, clamp) {
  GRADUS_PARITY_SETUP(run);
  check_unary(
      run, "clamp", [](const Tensor& x) { return clamp(x, -0.5, 1.25); }, uniform(run, -3, 3));
}
TEST(CudaParity, pow_scalar) {
  GRADUS_PARITY_SETUP(run);
  check_unary(
      run, "pow 2.5", [](const Tensor& x) { return pow(x, 2.5); }, uniform(run, 0.05, 3));
  check_unary(
      run, "pow -1.5", [](const Tensor& x) { return pow(x, -1.5); }, uniform(run, 0.2, 3));
  check_unary(
      run, "pow 3 (negative base)", [](const Tensor& x) { return pow(x, 3.0); },
      uniform(run, -3, 3));
}
TEST(CudaParity, square) {
  GRADUS_PARITY_SETUP(run);
  check_unary(
      run, "square", [](const Tensor& x) { return square(x); }, uniform(run, -3, 3));
}
TEST(CudaParity, reciprocal) {
  GRADUS_PARITY_SETUP(run);
  check_unary(
      run, "reciprocal", [](const Tensor& x) { return reciprocal(x); },
      [&run](const Shape& s) { return run.away_from_zero(s, 0.1, 4); });
}
TEST(CudaParity, affine) {
  GRADUS_PARITY_SETUP(run);
  check_unary(
      run, "affine", [](const Tensor& x) { return affine(x, -1.75, 0.3); }, uniform(run, -3, 3));
}

// ---------------------------------------------------------------- binary
// One binary op: same shapes (long, with a tail), a transposed operand, broadcasting both ways and
// from a lower rank, a rank-0 operand, and an empty result. `draw_a` / `draw_b` make CPU leaves.
void check_binary(ParityRun& run, const std::string& name, const BinaryFn& op,
                  const std::function<Tensor(const Shape&)>& draw_a,
                  const std::function<Tensor(const Shape&)>& draw_b,
                  const ParityOptions& options = {}) {
  auto plain = [&](const std::vector<Tensor>& in) { return op(in[0], in[1]); };
  // A broadcast operand's gradient sums up to 120 terms, each up to about 10 x the upstream
  // gradient (div's a / b^2 with |b| >= 1/4, pow's a^b log a): sum_tolerance.
  ParityOptions summed = options;
  if (!summed.backward) summed.backward = testing::sum_tolerance(options.dtype, 120, 10.0);
  run.check(name + " same shape", plain, {draw_a({(1 << 18) + 3}), draw_b({(1 << 18) + 3})},
            options);
  run.check(
      name + " transposed a",
      [&](const std::vector<Tensor>& in) { return op(transpose(in[0], 0, 1), in[1]); },
      {draw_a({37, 53}), draw_b({53, 37})}, options);
  run.check(
      name + " sliced b",
      [&](const std::vector<Tensor>& in) { return op(in[0], slice(in[1], 1, 0, 24, 3)); },
      {draw_a({5, 8}), draw_b({5, 24})}, options);
  // (4, 1, 6) with (5, 1) -> (4, 5, 6): both operands broadcast; the gradients are summed back.
  run.check(name + " broadcast (4, 1, 6) (5, 1)", plain, {draw_a({4, 1, 6}), draw_b({5, 1})},
            summed);
  run.check(name + " broadcast (7) (3, 40, 7)", plain, {draw_a({7}), draw_b({3, 40, 7})}, summed);
  run.check(name + " rank-0 b", plain, {draw_a({7, 9}), draw_b({})}, summed);
  run.check(
      name + " expanded a",
      [&](const std::vector<Tensor>& in) {
        return op(expand(in[0], {6, 9}), in[1]);
      },
      {draw_a({1, 9}), draw_b({6, 9})}, summed);
  run.check(name + " empty", plain, {draw_a({0, 3}), draw_b({3})}, summed);
  // Five axes no operand lets merge (a permuted, b broadcast on two of them): the strided kernels'
  // index arithmetic divides by four extents per element (kernels/cuda/strided_layout.h).
  run.check(
      name + " permuted 5-d a, broadcast b",
      [&](const std::vector<Tensor>& in) {
        return op(permute(in[0], {2, 0, 4, 1, 3}), in[1]);
      },
      {draw_a({3, 5, 7, 4, 6}), draw_b({7, 1, 6, 1, 4})}, summed);
}

TEST(CudaParity, add) {
  GRADUS_PARITY_SETUP(run);
  check_binary(
      run, "add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, uniform(run, -3, 3),
      uniform(run, -3, 3));
  ParityOptions f64;
  f64.dtype = DType::f64;
  check_binary(
      run, "add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, uniform(run, -3, 3),
      uniform(run, -3, 3), f64);
}
TEST(CudaParity, sub) {
  GRADUS_PARITY_SETUP(run);
  check_binary(
      run, "sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }, uniform(run, -3, 3),
      uniform(run, -3, 3));
}
TEST(CudaParity, mul) {
  GRADUS_PARITY_SETUP(run);
  check_binary(
      run, "mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, uniform(run, -3, 3),
      uniform(run, -3, 3));
  ParityOptions f64;
  f64.dtype = DType::f64;
  check_binary(
      run, "mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, uniform(run, -3, 3),
      uniform(run, -3, 3), f64);
}
TEST(CudaParity, div) {
  GRADUS_PARITY_SETUP(run);
  check_binary(
      run, "div", [](const Tensor& a, const Tensor& b) { return div(a, b); }, uniform(run, -3, 3),
      [&run](const Shape& s) { return run.away_from_zero(s, 0.25, 4); });
}
// Values on a grid of 1/4 in [-2, 2]: many ties, whose gradient is split equally.
TEST(CudaParity, maximum) {
  GRADUS_PARITY_SETUP(run);
  auto grid = [&run](const Shape& s) { return run.grid(s, -2, 2, 0.25); };
  check_binary(
      run, "maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }, grid, grid);
}
TEST(CudaParity, minimum) {
  GRADUS_PARITY_SETUP(run);
  auto grid = [&run](const Shape& s) { return run.grid(s, -2, 2, 0.25); };
  check_binary(
      run, "minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }, grid, grid);
}
TEST(CudaParity, pow) {
  GRADUS_PARITY_SETUP(run);
  // A positive base: the exponent's gradient is a^b log a.
  check_binary(
      run, "pow", [](const Tensor& a, const Tensor& b) { return pow(a, b); }, uniform(run, 0.25, 3),
      uniform(run, -2.5, 2.5));
}

// ---------------------------------------------------------------- selection
TEST(CudaParity, where) {
  GRADUS_PARITY_SETUP(run);
  auto fn = [](const std::vector<Tensor>& in) { return where(in[0], in[1], in[2]); };
  // The condition in the values' dtype and as i64; all three broadcast.
  run.check(
      "where same shape", fn,
      {run.mask({(1 << 16) + 5}, 0.5), run.normal({(1 << 16) + 5}), run.normal({(1 << 16) + 5})});
  run.check("where broadcast", fn, {run.mask({4, 1, 6}, 0.4), run.normal({5, 1}), run.normal({6})});
  run.check("where i64 condition", fn,
            {run.mask({3, 7}, 0.5, DType::i64), run.normal({3, 7}), run.normal({})});
  run.check("where transposed",
            [](const std::vector<Tensor>& in) {
              return where(transpose(in[0], 0, 1), transpose(in[1], 0, 1), in[2]);
            },
            {run.mask({9, 5}, 0.5), run.normal({9, 5}), run.normal({5, 9})});
  run.check("where empty", fn, {run.mask({0, 4}, 0.5), run.normal({0, 4}), run.normal({4})});
}

TEST(CudaParity, masked_fill) {
  GRADUS_PARITY_SETUP(run);
  run.check("masked_fill broadcast mask",
            [](const std::vector<Tensor>& in) { return masked_fill(in[0], in[1], 0.5); },
            {run.normal({4, 5, 6}), run.mask({1, 6}, 0.5)});
  run.check("masked_fill -inf, transposed input",
            [](const std::vector<Tensor>& in) {
              return masked_fill(transpose(in[0], 0, 1), in[1], -kInf);
            },
            {run.normal({33, 17}), run.mask({17, 33}, 0.3, DType::i64)});
  run.check("masked_fill long",
            [](const std::vector<Tensor>& in) { return masked_fill(in[0], in[1], -1e9); },
            {run.normal({(1 << 16) + 5}), run.mask({(1 << 16) + 5}, 0.5)});
}

TEST(CudaParity, causal_masked_fill) {
  GRADUS_PARITY_SETUP(run);
  run.check("causal_masked_fill -inf",
            [](const std::vector<Tensor>& in) { return causal_masked_fill(in[0]); },
            {run.normal({2, 3, 7, 7})});
  run.check("causal_masked_fill transposed scores",
            [](const std::vector<Tensor>& in) {
              return causal_masked_fill(transpose(in[0], -1, -2), -1e4);
            },
            {run.normal({3, 33, 33})});
  run.check("causal_masked_fill (1, 1)",
            [](const std::vector<Tensor>& in) { return causal_masked_fill(in[0], 0.0); },
            {run.normal({1, 1})});
}

}  // namespace
}  // namespace gradus
