#include "experiments/lib/bench_lm.h"

#include <algorithm>
#include <chrono>

#include "autodiff/tape.h"
#include "core/allocator.h"
#include "core/random.h"
#include "kernels/backend_info.h"
#include "models/nn/lm.h"
#include "models/optim/adam.h"

namespace gradus::experiments {

nlohmann::json bench_lm(const BenchLmOptions& o) {
  GRADUS_CHECK(o.device == "cpu", "bench lm", "--device {}: this build runs the benchmark on the CPU only",
               o.device);
  GRADUS_CHECK(o.dtype == "f32", "bench lm", "--dtype {}: the CPU benchmark runs in f32", o.dtype);
  GRADUS_CHECK(o.steps >= 1, "bench lm", "--steps must be at least 1, found {}", o.steps);
  if (o.threads > 0) kernels::set_cpu_threads(o.threads);

  ModelConfig config = ModelConfig::preset(o.preset);
  config.attention_kind = o.attention;
  config.validate();
  // The workload's batch and sequence length (BENCHMARKS.md): small B=32 L=128, medium B=16 L=1024.
  const int64_t batch = o.preset == "medium" ? 16 : 32;
  const int64_t seq = config.max_position_embeddings;

  Generator gen(o.seed);
  DecoderLM model(config, gen);
  AdamW optimizer(model.parameters(), 1e-4, 0.1);
  Generator data(o.seed + 1);
  Tensor ids = raw_to_dtype(
      rand_uniform({batch, seq + 1}, data, DType::f64, 0.0, static_cast<double>(config.vocab_size)),
      DType::i64);
  Tensor inputs = raw_contiguous(raw_slice(ids, 1, 0, seq));
  Tensor targets = raw_contiguous(raw_slice(ids, 1, 1, seq + 1));

  auto step = [&] {
    optimizer.zero_grad();
    Tensor loss = model.loss(inputs, targets);
    backward(loss);
    optimizer.step();
    return loss.item();
  };
  step();  // warm-up: optimiser state, allocator cache
  Allocator& alloc = allocator_for(DeviceType::cpu);
  alloc.reset_peak();
  std::vector<double> ms;
  double last_loss = 0;
  for (int64_t s = 0; s < o.steps; ++s) {
    auto t0 = std::chrono::steady_clock::now();
    last_loss = step();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  double median = sorted[sorted.size() / 2];
  if (sorted.size() % 2 == 0) median = 0.5 * (median + sorted[sorted.size() / 2 - 1]);
  const double tokens = static_cast<double>(batch * seq);
  return {{"preset", o.preset},
          {"attention", o.attention},
          {"device", o.device},
          {"dtype", o.dtype},
          {"batch", batch},
          {"seq", seq},
          {"threads", kernels::cpu_threads()},
          {"steps", o.steps},
          {"ms_per_step", median},
          {"step_ms", ms},
          {"tokens_per_s", tokens / (median / 1000.0)},
          {"peak_bytes", alloc.stats().peak_bytes_in_use},
          {"parameters", model.num_parameters()},
          {"final_loss", last_loss},
          {"cpu", kernels::cpu_model()}};
}

}  // namespace gradus::experiments
