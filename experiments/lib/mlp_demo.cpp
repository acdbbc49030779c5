#include "experiments/lib/mlp_demo.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <ostream>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/tape.h"
#include "core/random.h"
#include "models/optim/adam.h"

namespace gradus::experiments {

namespace {

// y = x sin(3x), computed on the host: the data, not the model.
Tensor targets_for(const Tensor& x) {
  std::vector<double> xs = x.to_vector(), ys(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) ys[i] = xs[i] * std::sin(3.0 * xs[i]);
  return Tensor::from_vector(ys, x.shape(), x.dtype());
}

// A linear layer's parameters in nn.Linear layout: weight (out, in) ~ U(-1/sqrt(in), 1/sqrt(in)),
// bias likewise (PyTorch's default initialisation).
struct LinearParams {
  Tensor weight, bias;
  LinearParams(int64_t in, int64_t out, Generator& gen) {
    double bound = 1.0 / std::sqrt(static_cast<double>(in));
    weight = rand_uniform({out, in}, gen, DType::f32, -bound, bound);
    bias = rand_uniform({out}, gen, DType::f32, -bound, bound);
    weight.set_requires_grad();
    bias.set_requires_grad();
  }
  Tensor operator()(const Tensor& x) const { return linear(x, weight, bias); }
};

}  // namespace

MlpDemoResult run_mlp_demo(const MlpDemoOptions& options, std::ostream& log) {
  GRADUS_CHECK(options.steps > 0 && options.hidden > 0 && options.samples > 0, "mlp demo",
               "steps, hidden and samples must be positive (found {}, {}, {})", options.steps,
               options.hidden, options.samples);
  Generator gen(options.seed);
  // x: (N, 1) uniform on [-2, 2); y: (N, 1)
  Tensor x = rand_uniform({options.samples, 1}, gen, DType::f32, -2.0, 2.0);
  Tensor y = targets_for(x);

  // 1 -> hidden -> hidden -> 1, GELU between layers.
  LinearParams l1(1, options.hidden, gen), l2(options.hidden, options.hidden, gen),
      l3(options.hidden, 1, gen);
  auto forward = [&](const Tensor& input) { return l3(gelu(l2(gelu(l1(input))))); };
  Adam optimizer({l1.weight, l1.bias, l2.weight, l2.bias, l3.weight, l3.bias}, options.lr);

  log << fmt::format("Fitting y = x sin(3x) on [-2, 2] with an MLP 1-{}-{}-1 (GELU), {} samples, "
                     "Adam lr {}, seed {}\n",
                     options.hidden, options.hidden, options.samples, options.lr, options.seed);
  MlpDemoResult result;
  auto start = std::chrono::steady_clock::now();
  for (int64_t step = 1; step <= options.steps; ++step) {
    optimizer.zero_grad();
    Tensor loss = mean(square(sub(forward(x), y)));  // MSE
    backward(loss);
    optimizer.step();
    double value = loss.item();
    if (step == 1) result.first_loss = value;
    result.final_loss = value;
    GRADUS_CHECK(std::isfinite(value), "mlp demo", "loss became {} at step {}", value, step);
    if (step == 1 || step % options.log_every == 0 || step == options.steps) {
      double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      log << fmt::format("step {:>5}  loss {:.6f}  ({:.2f} s)\n", step, value, elapsed);
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // Validation on an evenly spaced grid the model never saw.
  std::vector<double> grid(257);
  for (size_t i = 0; i < grid.size(); ++i) grid[i] = -2.0 + 4.0 * static_cast<double>(i) / 256.0;
  Tensor xv = Tensor::from_vector(grid, {static_cast<int64_t>(grid.size()), 1}, DType::f32);
  {
    NoGradGuard no_grad;
    result.validation_mse = mean(square(sub(forward(xv), targets_for(xv)))).item();
  }
  log << fmt::format(
      "training loss {:.6f} -> {:.6f} ({:.0f}x lower), validation MSE {:.6f}, {:.2f} s\n",
      result.first_loss, result.final_loss, result.first_loss / result.final_loss,
      result.validation_mse, result.seconds);
  return result;
}

}  // namespace gradus::experiments
