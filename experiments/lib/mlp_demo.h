// The main job until the language model lands: a small MLP fitted to y = x sin(3x) on [-2, 2], trained
// end to end with the engine (matmul, gelu, MSE, backward, Adam), printing the loss as it falls.
#pragma once

#include <cstdint>
#include <iosfwd>

namespace gradus::experiments {

struct MlpDemoOptions {
  int64_t steps = 1500;
  int64_t hidden = 64;
  int64_t samples = 1024;
  double lr = 3e-3;
  uint64_t seed = 0;
  int64_t log_every = 100;
};

struct MlpDemoResult {
  double first_loss = 0.0;
  double final_loss = 0.0;      // training MSE at the last step
  double validation_mse = 0.0;  // on a fresh evenly spaced grid
  double seconds = 0.0;
};

MlpDemoResult run_mlp_demo(const MlpDemoOptions& options, std::ostream& log);

}  // namespace gradus::experiments
