// The synthetic tasks of the graded experiments (graded_experiment.h): data, model and training
// of one variant for one seed, returning its metrics. Everything is small enough to train in
// seconds on two cores.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/nn/config.h"

namespace gradus::experiments {

struct TaskTraining {
  int64_t steps = 300;
  int64_t batch_size = 32;
  double lr = 3e-3;
  double weight_decay = 0.0;    // AdamW, matrices only
  double grade_lr_scale = 0.1;  // grade parameters: lr x this, no weight decay
  double clip_grad_norm = 1.0;  // 0: none
  int64_t warmup_steps = 0;     // then cosine to lr / 10
  uint64_t seed = 0;            // initialisation and batches
};

// The graded loss of a variant (models/graded/graded_loss.h): weights from a grading of the
// output components initialised at the task's prior grades q0.
struct LossSpec {
  bool graded = false;
  std::string kind = "lgt";   // lgt | egt
  double base = 2.0;          // egt's lambda
  bool learnable = false;     // the loss grades are parameters (with the prior term)
  bool detach = true;         // the weights are cut from q (stop-gradient)
  double prior_weight = 0.0;  // alpha of alpha ||q - q0||^2
};

struct TaskResult {
  std::map<std::string, double> metrics;  // per-seed numbers, averaged by the runner
  nlohmann::json extra;                   // learned grades and other per-seed detail
};

// ---- weighted-homogeneous polynomial regression
// --------------------------------------------------
struct PolynomialTask {
  std::vector<double> weights = {2, 4, 6, 10};  // q0: x_i has weight q0_i
  int64_t degree = 12;  // every monomial prod x_i^a_i has sum a_i q0_i = degree
  double spread = 1.3;  // x = lambda * u, lambda log-uniform in [1/spread, spread], u in [-1, 1]^d
  int64_t train_size = 4096, test_size = 2048;
  int64_t hidden = 64;     // two hidden SiLU layers
  uint64_t data_seed = 1;  // the polynomial and the data (the same for every seed)
};
struct PolynomialVariant {
  std::string grading = "none";  // none | lgt | egt: a grading of the inputs
  std::string model = "mlp";     // mlp: net(x Phi); gauge: rho^degree net(rho^-1 * x), rho the
                                 // mean 2-gauge of the grades (ours)
  bool learnable = false;
  std::vector<double> q_init;  // initial grades (empty: the kind's identity)
  double base = 2.0;
  bool folded = false;  // Phi absorbed into the first layer at initialisation
};
TaskResult run_polynomial(const PolynomialTask& task, const PolynomialVariant& variant,
                          const TaskTraining& training);

// ---- multi-scale sequences
// ------------------------------------------------------------------------
struct MultiscaleTask {
  std::vector<double> scales = {0, 1, 2, 3};  // channel i varies on the time scale 2^scales_i
  int64_t context = 32;
  double noise = 0.02;
  int64_t test_sequences = 256;
  uint64_t data_seed = 1;
};
TaskResult run_multiscale(const MultiscaleTask& task, const ModelConfig& model,
                          const LossSpec& loss, const TaskTraining& training);

// ---- bracket-depth tagging
// ------------------------------------------------------------------------
struct BracketsTask {
  int64_t length = 32;
  int64_t max_depth = 8;
  int64_t types = 2;       // kinds of bracket: tokens 2 types (open and close of each)
  double open_prob = 0.5;  // at depth 1 .. max_depth - 1
  int64_t test_sequences = 512;
  uint64_t data_seed = 1;
};
TaskResult run_brackets(const BracketsTask& task, const ModelConfig& model, const LossSpec& loss,
                        const TaskTraining& training);

}  // namespace gradus::experiments
