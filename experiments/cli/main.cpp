// The `gradus` command line.
//   gradus run DESCRIPTOR [--set path=value ...] [--resume RUN_DIR] [--run-dir DIR] [--threads T]
//                                                      train a language model (docs/experiments.md)
//   gradus run [--steps N] [--seed S] [--threads T]   without a descriptor: the MLP demo
//   gradus eval CHECKPOINT [--text FILE] [--context N] [--device D]
//                                                      next-byte cross-entropy of a checkpoint
//   gradus ops [--json]                                the op registry with backend support
//   gradus info                                        version, CPU, BLAS, threads, CUDA
//   gradus verify [SUITE ...]                          the theory checks
//   (experiments/lib/commands.h)
// Model families add further commands from their own files (register_command).
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/error.h"
#include "experiments/lib/bench_lm.h"
#include "experiments/lib/commands.h"
#include "experiments/lib/lm_job.h"
#include "experiments/lib/mlp_demo.h"
#include "experiments/lib/ops_table.h"
#include "experiments/lib/pipeline.h"
#include "experiments/lib/progress.h"
#include "experiments/lib/sweep.h"
#include "kernels/backend_info.h"

namespace {

constexpr const char* kUsage = R"(usage: gradus <command> [options]

commands:
  run DESCRIPTOR [--set path=value ...] [--resume RUN_DIR] [--run-dir DIR] [--threads T]
                   train a language model as the JSON descriptor says (docs/experiments.md);
                   writes runs/NAME/TIMESTAMP/ (or DIR: a fixed directory, continued if it holds
                   the same run); --resume continues a stopped run (DESCRIPTOR may then be left
                   out). A descriptor with a "sweep" object runs the sweep (gradus sweep); a
                   pipeline document (experiments/tour.json) runs its steps ([--dry-run])
  run [--steps N] [--seed S] [--threads T] [--lr LR]
                   without a descriptor: an MLP fitting y = x sin(3x), loss printed as it falls
  eval CHECKPOINT [--text FILE] [--context N] [--device cpu|cuda|auto] [--threads T]
                   mean next-byte cross-entropy and bits per byte of a checkpoint (or run
                   directory) over FILE, default the run's validation split, as one JSON object
  ops [--json]     list every op with its CPU/CUDA forward and backward support per dtype
  info             version, CPU, BLAS library, thread count, CUDA backend
  bench lm [--preset small|medium] [--attention KIND] [--device cpu|cuda]
           [--precision f32|bf16|f32-f64] [--steps N] [--batch B] [--threads T] [--seed S]
           [--census] [--json]
                   time language-model training steps (forward, backward, AdamW) on random tokens;
                   --census: the kernel calls of one step by name (a GPU's launch budget)
  verify [SUITE ...] [suite options]
                   run the theory checks of each SUITE (default: all), a table per suite; exit
                   status 1 if any check fails
  help             this text
)";

std::string usage_text() {
  std::string out = kUsage;
  auto commands = gradus::experiments::all_commands();
  if (!commands.empty()) {
    out += "\nmodel commands:\n";
    for (const auto* c : commands) out += "  " + c->usage + "\n";
  }
  auto suites = gradus::experiments::all_verify_suites();
  out += "\nverify suites:";
  if (suites.empty()) out += " (none in this build)";
  out += "\n";
  for (const auto* s : suites) out += fmt::format("  {:<15}{}\n", s->name, s->description);
  return out;
}

// Minimal flag reader: --name VALUE pairs after the command.
struct Flags {
  std::vector<std::string> args;
  size_t used = 0;
  bool has(const std::string& name) const {
    for (const auto& a : args)
      if (a == name) return true;
    return false;
  }
  std::string value(const std::string& name, const std::string& fallback) const {
    for (size_t i = 0; i < args.size(); ++i)
      if (args[i] == name) {
        GRADUS_CHECK(i + 1 < args.size(), "gradus", "flag {} needs a value", name);
        return args[i + 1];
      }
    return fallback;
  }
  int64_t integer(const std::string& name, int64_t fallback) const {
    std::string v = value(name, std::to_string(fallback));
    try {
      size_t end = 0;
      int64_t out = std::stoll(v, &end);
      if (end == v.size()) return out;
    } catch (const std::exception&) {
    }
    GRADUS_FAIL("gradus", "flag {} expects an integer but found \"{}\"", name, v);
  }
  double real(const std::string& name, double fallback) const {
    std::string v = value(name, fmt::format("{}", fallback));
    try {
      size_t end = 0;
      double out = std::stod(v, &end);
      if (end == v.size()) return out;
    } catch (const std::exception&) {
    }
    GRADUS_FAIL("gradus", "flag {} expects a number but found \"{}\"", name, v);
  }
  // Rejects flags the command does not know, so a typo is not silently ignored.
  void allow(std::initializer_list<std::string> valued,
             std::initializer_list<std::string> bare) const {
    for (size_t i = 0; i < args.size(); ++i) {
      bool is_valued = std::find(valued.begin(), valued.end(), args[i]) != valued.end();
      bool is_bare = std::find(bare.begin(), bare.end(), args[i]) != bare.end();
      GRADUS_CHECK(is_valued || is_bare, "gradus", "unknown option \"{}\" (see gradus help)",
                   args[i]);
      if (is_valued) ++i;
    }
  }
};

// gradus run DESCRIPTOR [--set path=value ...] [--resume RUN_DIR] [--threads T]
int cmd_run_lm(const Flags& f) {
  // A pipeline document (experiments/tour.json) runs its steps; --dry-run prints them.
  if (!f.args.empty() && !f.args[0].starts_with("--") &&
      gradus::experiments::is_pipeline_document(f.args[0])) {
    Flags rest{std::vector<std::string>(f.args.begin() + 1, f.args.end())};
    rest.allow({}, {"--dry-run"});
    return gradus::experiments::run_pipeline({f.args[0], rest.has("--dry-run")}, std::cout);
  }
  gradus::experiments::LmRunOptions o;
  for (size_t i = 0; i < f.args.size(); ++i) {
    const std::string& a = f.args[i];
    if (a == "--set" || a == "--resume" || a == "--threads" || a == "--run-dir") {
      GRADUS_CHECK(i + 1 < f.args.size(), "gradus run", "{} needs a value", a);
      const std::string& v = f.args[++i];
      if (a == "--set") {
        o.overrides.push_back(v);
      } else if (a == "--resume") {
        o.resume_dir = v;
      } else if (a == "--run-dir") {
        o.run_dir = v;
      } else {
        gradus::kernels::set_cpu_threads(static_cast<int>(f.integer("--threads", 1)));
      }
    } else if (!a.starts_with("--") && o.descriptor_path.empty()) {
      o.descriptor_path = a;
    } else {
      GRADUS_FAIL("gradus run",
                  "unexpected argument \"{}\" (usage: gradus run DESCRIPTOR [--set "
                  "path=value ...] [--resume RUN_DIR] [--threads T])",
                  a);
    }
  }
  // A descriptor with a "sweep" object runs its sweep (one run after another), as gradus sweep.
  if (o.resume_dir.empty() && o.run_dir.empty() &&
      gradus::experiments::is_sweep_descriptor(o.descriptor_path)) {
    gradus::experiments::SweepOptions s;
    s.descriptor_path = o.descriptor_path;
    s.overrides = o.overrides;
    s.threads = f.has("--threads") ? f.integer("--threads", 1) : 0;
    return gradus::experiments::run_sweep(s, std::cout);
  }
  o.tty = gradus::experiments::stdout_is_tty();
  auto r = gradus::experiments::run_lm(o, std::cout);
  return r.completed ? 0 : 1;
}

// gradus eval CHECKPOINT [--text FILE] [--context N] [--device D] [--threads T]
int cmd_eval(const Flags& f) {
  GRADUS_CHECK(!f.args.empty() && !f.args[0].starts_with("--"), "gradus eval",
               "expected a checkpoint file or run directory first (usage: gradus eval CHECKPOINT "
               "[--text FILE] [--context N] [--device D])");
  Flags rest{std::vector<std::string>(f.args.begin() + 1, f.args.end())};
  rest.allow({"--text", "--context", "--device", "--threads"}, {});
  if (rest.has("--threads"))
    gradus::kernels::set_cpu_threads(static_cast<int>(rest.integer("--threads", 1)));
  gradus::experiments::LmEvalOptions o;
  o.checkpoint = f.args[0];
  o.text_file = rest.value("--text", "");
  o.context = rest.integer("--context", 0);
  GRADUS_CHECK(o.context >= 0, "gradus eval", "--context must be positive, found {}", o.context);
  o.device = rest.value("--device", o.device);
  std::cout << gradus::experiments::eval_lm(o).dump() << "\n";
  return 0;
}

int cmd_run(const Flags& f) {
  // A descriptor (a first argument that is not a flag) or --resume selects the language model.
  if ((!f.args.empty() && !f.args[0].starts_with("--")) || f.has("--resume") || f.has("--set"))
    return cmd_run_lm(f);
  f.allow({"--steps", "--seed", "--threads", "--lr"}, {});
  if (f.has("--threads"))
    gradus::kernels::set_cpu_threads(static_cast<int>(f.integer("--threads", 1)));
  gradus::experiments::MlpDemoOptions o;
  o.steps = f.integer("--steps", o.steps);
  o.seed = static_cast<uint64_t>(f.integer("--seed", static_cast<int64_t>(o.seed)));
  o.lr = f.real("--lr", o.lr);
  auto r = gradus::experiments::run_mlp_demo(o, std::cout);
  auto stats = gradus::allocator_for(gradus::DeviceType::cpu).stats();
  std::cout << fmt::format("peak tensor memory {:.2f} MiB, {} allocations ({} from the system)\n",
                           stats.peak_bytes_in_use / 1048576.0, stats.allocations,
                           stats.system_allocations);
  return r.final_loss < r.first_loss ? 0 : 1;
}

int cmd_ops(const Flags& f) {
  f.allow({}, {"--json"});
  if (f.has("--json"))
    std::cout << gradus::experiments::ops_json().dump(2) << "\n";
  else
    std::cout << gradus::experiments::ops_table_text();
  return 0;
}

int cmd_bench(const Flags& f) {
  GRADUS_CHECK(!f.args.empty() && f.args[0] == "lm", "gradus bench",
               "expected a benchmark name (lm), found \"{}\"", f.args.empty() ? "" : f.args[0]);
  Flags rest{std::vector<std::string>(f.args.begin() + 1, f.args.end())};
  rest.allow({"--preset", "--attention", "--device", "--precision", "--steps", "--batch",
              "--threads", "--seed"},
             {"--json", "--census"});
  gradus::experiments::BenchLmOptions o;
  o.preset = rest.value("--preset", o.preset);
  o.attention = rest.value("--attention", o.attention);
  o.device = rest.value("--device", o.device);
  o.precision = rest.value("--precision", o.precision);
  o.steps = rest.integer("--steps", o.steps);
  o.batch = rest.integer("--batch", o.batch);
  o.threads = static_cast<int>(rest.integer("--threads", o.threads));
  o.seed = static_cast<uint64_t>(rest.integer("--seed", 0));
  o.census = rest.has("--census");
  nlohmann::json r = gradus::experiments::bench_lm(o);
  if (rest.has("--json")) {
    std::cout << r.dump() << "\n";
  } else {
    std::cout << fmt::format(
        "{} / {} / {}: {:.0f} tokens/s, {:.1f} ms per step (median of {}), peak {:.1f} MiB\n",
        o.preset, o.attention, o.precision, r["tokens_per_s"].get<double>(),
        r["ms_per_step"].get<double>(), o.steps, r["peak_bytes"].get<double>() / 1048576.0);
    if (r.contains("kernel_census")) {
      std::cout << fmt::format("kernel calls in one step: {}\n",
                               r["kernel_calls_per_step"].get<int64_t>());
      for (const auto& entry : r["kernel_census"])
        std::cout << fmt::format("  {:>6}  {}\n", entry["calls"].get<int64_t>(),
                                 entry["kernel"].get<std::string>());
    }
    if (r.contains("host_syncs_per_step"))
      std::cout << fmt::format(
          "per step: {:.0f} kernel launches, {:.0f} cuBLAS calls, {:.0f} host "
          "synchronisations\n",
          r["kernel_launches_per_step"].get<double>(), r["library_calls_per_step"].get<double>(),
          r["host_syncs_per_step"].get<double>());
  }
  return 0;
}

// gradus verify [SUITE ...] [options]: options (arguments starting with "--", and the value after
// an option that takes one) go to every suite named; unknown suites are an error listing the known.
int cmd_verify(const std::vector<std::string>& args) {
  using gradus::experiments::VerifySuite;
  std::vector<const VerifySuite*> suites;
  std::vector<std::string> options;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].rfind("--", 0) == 0) {
      options.push_back(args[i]);
      if (i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0 &&
          gradus::experiments::find_verify_suite(args[i + 1]) == nullptr)
        options.push_back(args[++i]);
      continue;
    }
    const VerifySuite* s = gradus::experiments::find_verify_suite(args[i]);
    if (s == nullptr) {
      std::vector<std::string> known;
      for (const auto* k : gradus::experiments::all_verify_suites()) known.push_back(k->name);
      GRADUS_FAIL("gradus verify", "no suite \"{}\" (known: {})", args[i],
                  known.empty() ? "none" : fmt::format("{}", fmt::join(known, ", ")));
    }
    suites.push_back(s);
  }
  if (suites.empty()) suites = gradus::experiments::all_verify_suites();
  GRADUS_CHECK(!suites.empty(), "gradus verify", "this build has no verify suites");
  bool ok = true;
  for (const VerifySuite* s : suites) {
    std::cout << fmt::format("== verify {}: {}\n", s->name, s->description);
    const bool passed = s->run(options, std::cout);
    std::cout << fmt::format("== verify {}: {}\n\n", s->name, passed ? "PASS" : "FAIL");
    ok = ok && passed;
  }
  return ok ? 0 : 1;
}

int cmd_info(const Flags& f) {
  f.allow({}, {});
  std::cout << fmt::format(
      "gradus {}\nCPU: {}\nBLAS: {}\nCPU threads: {}\nOpenMP wait: {}\nCUDA: {}\n", GRADUS_VERSION,
      gradus::kernels::cpu_model(), gradus::kernels::blas_description(),
      gradus::kernels::cpu_threads(), gradus::kernels::openmp_wait_policy(),
      gradus::kernels::cuda_description());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  gradus::kernels::use_passive_openmp_wait_by_default(argv);
  if (argc < 2) {
    std::cerr << usage_text();
    return 2;
  }
  std::string cmd = argv[1];
  Flags flags{std::vector<std::string>(argv + 2, argv + argc)};
  try {
    if (cmd == "run") return cmd_run(flags);
    if (cmd == "eval") return cmd_eval(flags);
    if (cmd == "ops") return cmd_ops(flags);
    if (cmd == "info") return cmd_info(flags);
    if (cmd == "bench") return cmd_bench(flags);
    if (cmd == "verify") return cmd_verify(flags.args);
    if (const auto* c = gradus::experiments::find_command(cmd)) return c->run(flags.args);
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
      std::cout << usage_text();
      return 0;
    }
    std::cerr << fmt::format("gradus: unknown command \"{}\"\n\n{}", cmd, usage_text());
    return 2;
  } catch (const gradus::Error& e) {
    std::cerr << "gradus: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "gradus: internal error: " << e.what() << "\n";
    return 1;
  }
}
