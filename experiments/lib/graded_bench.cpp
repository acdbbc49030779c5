// `gradus bench-graded`: what grading costs in a language-model training step, measured as a
// paired comparison. `gradus bench lm --attention lgt` times one kind per process, so on a shared
// machine the load changes between the runs being compared; here the kinds' steps alternate
// (std, lgt, egt, [learned], std, lgt, ...) in one process, and each kind's step time is set
// against the std step beside it: the median of those ratios is the cost of grading.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>

#include "autodiff/tape.h"
#include "core/error.h"
#include "core/random.h"
#include "experiments/lib/commands.h"
#include "kernels/backend_info.h"
#include "models/nn/lm.h"
#include "models/optim/adam.h"

namespace gradus::experiments {

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Contender {
  std::string name;
  std::unique_ptr<DecoderLM> model;
  std::unique_ptr<AdamW> optimizer;
  std::vector<double> ms;
};

int cmd_bench_graded(const std::vector<std::string>& args) {
  std::string preset = "small";
  int64_t steps = 10, threads = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    GRADUS_CHECK(a == "--preset" || a == "--steps" || a == "--threads", "bench-graded",
                 "unknown option \"{}\" (usage: gradus bench-graded [--preset small|medium] "
                 "[--steps N] [--threads T])",
                 a);
    GRADUS_CHECK(i + 1 < args.size(), "bench-graded", "{} needs a value", a);
    const std::string& v = args[++i];
    if (a == "--preset") {
      preset = v;
      continue;
    }
    GRADUS_CHECK(
        !v.empty() && v.find_first_not_of("0123456789") == std::string::npos && std::stoll(v) >= 1,
        "bench-graded", "{} expects a positive integer, found \"{}\"", a, v);
    (a == "--steps" ? steps : threads) = std::stoll(v);
  }
  if (threads > 0) kernels::set_cpu_threads(static_cast<int>(threads));
  const ModelConfig base = ModelConfig::preset(preset);
  const int64_t batch = preset == "medium" ? 16 : 32, seq = base.max_position_embeddings;

  // std; the graded kinds with their defaults (fixed grades at every site: what `gradus bench lm
  // --attention lgt|egt` runs); and learned per-head grades (parameters with gradients).
  std::vector<Contender> cs;
  auto add = [&](const std::string& name, const std::string& kind, bool learned) {
    ModelConfig c = base;
    c.attention_kind = kind;
    if (learned) {
      c.graded_learnable = c.graded_per_head = true;
      c.graded_q_init = kind == "lgt" ? "0.5..2" : "0.01..1.5";
    }
    Generator gen(0);
    Contender k{name, std::make_unique<DecoderLM>(c, gen), nullptr, {}};
    k.optimizer = std::make_unique<AdamW>(k.model->parameters(), 1e-4, 0.1);
    cs.push_back(std::move(k));
  };
  add("std", "std", false);
  add("lgt", "lgt", false);
  add("egt", "egt", false);
  add("lgt-learned", "lgt", true);
  add("egt-learned", "egt", true);

  Generator data(1);
  Tensor ids = raw_to_dtype(
      rand_uniform({batch, seq + 1}, data, DType::f64, 0.0, static_cast<double>(base.vocab_size)),
      DType::i64);
  Tensor inputs = raw_contiguous(raw_slice(ids, 1, 0, seq));
  Tensor targets = raw_contiguous(raw_slice(ids, 1, 1, seq + 1));
  auto step = [&](Contender& k) {
    auto t0 = std::chrono::steady_clock::now();
    k.optimizer->zero_grad();
    Tensor loss = k.model->loss(inputs, targets);
    backward(loss);
    k.optimizer->step();
    loss.item();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  for (Contender& k : cs) step(k);  // warm-up: optimiser state, allocator cache
  for (int64_t s = 0; s < steps; ++s)
    for (Contender& k : cs) k.ms.push_back(step(k));

  const double tokens = static_cast<double>(batch * seq);
  std::cout << fmt::format(
      "graded training-step cost, preset {} (B {} x T {}), {} threads, {} steps each, kinds "
      "alternating\n",
      preset, batch, seq, kernels::cpu_threads(), steps);
  std::cout << fmt::format("{:<14}{:>12}{:>12}{:>12}{:>18}\n", "kind", "parameters", "median ms",
                           "tokens/s", "step / std step");
  for (Contender& k : cs) {
    std::vector<double> ratios;
    for (int64_t s = 0; s < steps; ++s) ratios.push_back(k.ms[s] / cs[0].ms[s]);
    const double m = median(k.ms);
    std::cout << fmt::format("{:<14}{:>12}{:>12.1f}{:>12.0f}{:>18.4f}\n", k.name,
                             k.model->num_parameters(), m, tokens / (m / 1000.0), median(ratios));
  }
  return 0;
}

const bool kRegistered = register_command(
    {"bench-graded",
     "bench-graded [--preset small|medium] [--steps N] [--threads T]\n"
     "                   the cost of grading in an LM training step: std, lgt, egt (fixed and\n"
     "                   learned grades) stepping in turn in one process, each against std",
     cmd_bench_graded});

}  // namespace

}  // namespace gradus::experiments
