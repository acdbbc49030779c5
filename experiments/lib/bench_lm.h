// `gradus bench lm`: times language-model training steps (forward, backward, AdamW) on random
// tokens for a preset of ../shared/BENCHMARKS.md and reports the median tokens/s, ms per step and
// peak memory.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace gradus::experiments {

struct BenchLmOptions {
  std::string preset = "small";
  std::string attention = "std";
  std::string device = "cpu";
  // "f32": everything in f32. "bf16": mixed precision (autodiff/autocast.h): products and
  // attention in bf16, norms, softmax and the loss in f32, f32 parameters and optimiser state.
  // "f32-f64": the same mixed-precision code path one step wider (f32 compute, f64 parameters),
  // which the CPU runs: its kernel census is the bf16 step's.
  std::string precision = "f32";
  int64_t steps = 5;  // timed steps (after one warm-up step)
  int64_t batch = 0;  // 0: the preset's (small 32, medium 16)
  int threads = 0;    // 0: leave the OpenMP default
  uint64_t seed = 0;
  // Also run one step under a kernel census (core/kernel_census.h): "kernel_census" lists its
  // kernel calls by name, "kernel_calls_per_step" their total.
  bool census = false;
};

// Runs the benchmark; the JSON has tokens_per_s (median), ms_per_step (median), every step's ms,
// peak_bytes (the allocator's peak during the timed steps), the configuration and the machine.
nlohmann::json bench_lm(const BenchLmOptions& options);

}  // namespace gradus::experiments
