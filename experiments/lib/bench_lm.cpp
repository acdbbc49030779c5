#include "experiments/lib/bench_lm.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "autodiff/autocast.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/tape.h"
#include "core/allocator.h"
#include "core/kernel_census.h"
#include "core/random.h"
#include "kernels/backend_info.h"
#include "models/nn/lm.h"
#include "models/optim/adam.h"

namespace gradus::experiments {

namespace {

// Matrix-product FLOPs of one training step (forward + backward = 3x forward): every Linear
// (2 N P forward for P weights) and the two attention products (4 B L^2 C per layer forward).
// The graph kinds (docs/graph_attention.md): gin has q, k (and o with gin_o_proj) and per-head
// MLPs d_h -> m -> d_h (m = floor(gamma d_h)); pna has q, k, v, o, per-head MLPs
// n d_h -> m -> d_h over n aggregator blocks, and its L^2 products: q k^T, A v for sum or mean,
// and A v^2 as well for var or std (one product A [v | v^2]).
double step_matmul_flops(const ModelConfig& c, int64_t batch, int64_t seq) {
  const double n = static_cast<double>(batch * seq), C = static_cast<double>(c.hidden_size);
  const double F = static_cast<double>(c.intermediate_size), V = static_cast<double>(c.vocab_size);
  const double layers = static_cast<double>(c.num_hidden_layers);
  const double m = std::floor(c.graph_mlp_multiplier * static_cast<double>(c.head_dim()));
  double attn_weights = 4 * C * C, products = 4.0;  // per layer; products in units of B L^2 C
  if (c.attention_kind == "gin") {
    attn_weights = (c.gin_o_proj ? 3 : 2) * C * C + 2 * C * m;
  } else if (c.attention_kind == "pna") {
    const auto blocks = static_cast<double>(
        (std::count(c.pna_aggregators.begin(), c.pna_aggregators.end(), ',') + 1) *
        (std::count(c.pna_scalers.begin(), c.pna_scalers.end(), ',') + 1));
    attn_weights = 4 * C * C + C * m * (blocks + 1);
    const bool second = c.pna_aggregators.find("var") != std::string::npos ||
                        c.pna_aggregators.find("std") != std::string::npos;
    const bool first = second || c.pna_aggregators.find("sum") != std::string::npos ||
                       c.pna_aggregators.find("mean") != std::string::npos;
    products = 2.0 + (first ? 2.0 : 0.0) + (second ? 2.0 : 0.0);
  }
  const double linear_weights = layers * (attn_weights + 3 * C * F) + V * C;
  const double attention =
      layers * products * static_cast<double>(batch) * static_cast<double>(seq * seq) * C;
  return 3.0 * (2.0 * n * linear_weights + attention);
}

// The device's sgemm rate through the engine (f32; n = 1024 on the CPU, 8192 on a GPU, where a
// smaller product does not fill the chip), median of 5: the ceiling for every matrix product of
// the step. Reading one element back waits for the GPU.
double measure_sgemm_gflops(Device device) {
  const int64_t n = device.is_cpu() ? 1024 : 8192;
  Generator gen(123);
  Tensor a = raw_to_device(rand_uniform({n, n}, gen), device);
  Tensor b = raw_to_device(rand_uniform({n, n}, gen), device);
  std::vector<double> rates;
  for (int i = 0; i < 6; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    Tensor c = matmul(a, b);
    (void)raw_slice(raw_slice(c, 0, 0, 1), 1, 0, 1).item();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (i > 0) rates.push_back(2.0 * static_cast<double>(n) * n * n / s / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

// Peak resident set of the process, comparable with PyTorch's (which has no allocator statistics
// on the CPU).
int64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

}  // namespace

nlohmann::json bench_lm(const BenchLmOptions& o) {
  GRADUS_CHECK(o.device == "cpu" || o.device == "cuda", "bench lm",
               "--device: expected cpu or cuda, found \"{}\"", o.device);
  const Device device = o.device == "cpu" ? kCPU : Device{DeviceType::cuda, 0};
  GRADUS_CHECK(device.is_cpu() || kernels::cuda_device_count() > 0, "bench lm", "--device cuda: {}",
               kernels::cuda_description());
  GRADUS_CHECK(o.precision == "f32" || o.precision == "bf16" || o.precision == "f32-f64",
               "bench lm",
               "--precision: expected f32, bf16 (mixed: bf16 compute, f32 parameters) or f32-f64 "
               "(mixed: f32 compute, f64 parameters), found \"{}\"",
               o.precision);
  // The mixed-precision code path: products in `compute`, parameters and the wide ops in `wide`.
  const bool mixed = o.precision != "f32";
  const DType compute = o.precision == "bf16" ? DType::bf16 : DType::f32;
  const DType wide = o.precision == "f32-f64" ? DType::f64 : DType::f32;
  GRADUS_CHECK(o.precision != "bf16" || !device.is_cpu(), "bench lm",
               "--precision bf16 needs --device cuda: the CPU backend has no bf16 arithmetic");
  GRADUS_CHECK(o.steps >= 1, "bench lm", "--steps must be at least 1, found {}", o.steps);
  if (o.threads > 0) kernels::set_cpu_threads(o.threads);

  ModelConfig config = ModelConfig::preset(o.preset);
  config.attention_kind = o.attention;
  config.validate();
  // The workload's batch and sequence length (BENCHMARKS.md): small B=32 L=128, medium B=16 L=1024.
  GRADUS_CHECK(o.batch >= 0, "bench lm", "--batch must be positive (or 0: the preset's), found {}",
               o.batch);
  const int64_t batch = o.batch > 0 ? o.batch : o.preset == "medium" ? 16 : 32;
  const int64_t seq = config.max_position_embeddings;

  Generator gen(o.seed);
  DecoderLM model(config, gen);
  model.to(wide);
  model.to(device);
  AdamW optimizer(model.parameters(), 1e-4, 0.1);
  Generator data(o.seed + 1);
  Tensor ids = raw_to_dtype(
      rand_uniform({batch, seq + 1}, data, DType::f64, 0.0, static_cast<double>(config.vocab_size)),
      DType::i64);
  Tensor inputs = raw_to_device(raw_contiguous(raw_slice(ids, 1, 0, seq)), device);
  Tensor targets = raw_to_device(raw_contiguous(raw_slice(ids, 1, 1, seq + 1)), device);

  AutocastWeights cast_weights;  // every step casts the weights in one call on entry
  auto step = [&] {
    optimizer.zero_grad();
    Tensor loss;
    if (mixed) {
      AutocastGuard autocast(compute, wide, &cast_weights);
      loss = model.loss(inputs, targets);
    } else {
      loss = model.loss(inputs, targets);
    }
    backward(loss);
    optimizer.step();
    return loss.item();  // waits for the GPU: the step is timed whole
  };
  step();  // warm-up: optimiser state, allocator cache
  Allocator& alloc = allocator_for(device.type);
  alloc.reset_peak();
  std::vector<double> ms;
  double last_loss = 0;
  const kernels::CudaActivity before = kernels::cuda_activity();
  for (int64_t s = 0; s < o.steps; ++s) {
    auto t0 = std::chrono::steady_clock::now();
    last_loss = step();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  const kernels::CudaActivity after = kernels::cuda_activity();
  const auto per_step = [&](int64_t a, int64_t b) {
    return static_cast<double>(b - a) / static_cast<double>(o.steps);
  };
  // Read before the sgemm probe below, whose three n x n matrices (768 MiB at n = 8192 on a GPU)
  // are not part of the step.
  const int64_t step_peak_bytes = alloc.stats().peak_bytes_in_use;
  // One more step under a census: its kernel calls by name (each at least one launch on a GPU).
  std::vector<std::pair<std::string, int64_t>> census;
  if (o.census) {
    census::open();
    step();
    census = census::close();
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  double median = sorted[sorted.size() / 2];
  if (sorted.size() % 2 == 0) median = 0.5 * (median + sorted[sorted.size() / 2 - 1]);
  const double tokens = static_cast<double>(batch * seq);
  const double flops = step_matmul_flops(config, batch, seq);
  const double sgemm = measure_sgemm_gflops(device);
  const double floor_s = flops / (sgemm * 1e9);
  nlohmann::json out = {{"preset", o.preset},
                        {"attention", o.attention},
                        {"device", o.device},
                        {"precision", o.precision},
                        {"batch", batch},
                        {"seq", seq},
                        {"threads", kernels::cpu_threads()},
                        {"steps", o.steps},
                        {"ms_per_step", median},
                        {"step_ms", ms},
                        {"tokens_per_s", tokens / (median / 1000.0)},
                        {"peak_bytes", step_peak_bytes},
                        {"peak_rss_bytes", peak_rss_bytes()},
                        {"step_matmul_gflop", flops / 1e9},
                        {"sgemm_gflops", sgemm},
                        {"floor_tokens_per_s", tokens / floor_s},
                        {"fraction_of_floor", floor_s / (median / 1000.0)},
                        {"parameters", model.num_parameters()},
                        {"final_loss", last_loss},
                        {"cpu", kernels::cpu_model()},
                        {"gpu", device.is_cpu() ? "" : kernels::cuda_description()}};
  if (o.census) {
    nlohmann::json calls = nlohmann::json::array();
    int64_t total = 0;
    for (const auto& [name, count] : census) {
      calls.push_back({{"kernel", name}, {"calls", count}});
      total += count;
    }
    out["kernel_calls_per_step"] = total;
    out["kernel_census"] = calls;
  }
  if (!device.is_cpu()) {  // what the host asked of the GPU per step (launch-bound presets)
    out["kernel_launches_per_step"] = per_step(before.kernel_launches, after.kernel_launches);
    out["library_calls_per_step"] = per_step(before.library_calls, after.library_calls);
    out["host_syncs_per_step"] = per_step(before.host_syncs, after.host_syncs);
  }
  return out;
}

}  // namespace gradus::experiments
