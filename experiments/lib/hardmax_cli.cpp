// `gradus build-hardmax`, `gradus classify` and `gradus hardmax-data`: the constructive hardmax
// classifier on JSON Lines data (models/hardmax/, docs/hardmax.md).
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "experiments/lib/commands.h"
#include "experiments/lib/hardmax_args.h"
#include "kernels/backend_info.h"
#include "models/hardmax/builder.h"
#include "models/hardmax/forward.h"
#include "models/hardmax/synthetic.h"

namespace gradus::experiments {
namespace {

using namespace gradus::hardmax;

void set_threads(const HardmaxArgs& a) {
  if (a.has("--threads")) {
    const int64_t t = a.integer("--threads", 1);
    GRADUS_CHECK(t >= 1, "--threads", "expected a positive integer, found {}", t);
    kernels::set_cpu_threads(static_cast<int>(t));
  }
}

int build_hardmax(const std::vector<std::string>& args) {
  HardmaxArgs a("build-hardmax", args,
                {"--out", "--dtype", "--seed", "--retries", "--candidates", "--alpha", "--threads"},
                {"--no-verify"});
  GRADUS_CHECK(
      a.positional().size() == 1, "build-hardmax",
      "expected one data file (build-hardmax DATA.jsonl --out MODEL.safetensors), found {}",
      a.positional().size());
  GRADUS_CHECK(a.has("--out"), "build-hardmax", "--out MODEL.safetensors is required");
  set_threads(a);
  BuildOptions o;
  o.dtype = parse_dtype(a.value("--dtype", "f64"));
  GRADUS_CHECK(o.dtype == DType::f64 || o.dtype == DType::f32, "build-hardmax",
               "--dtype must be f64 or f32, found {}", a.value("--dtype", ""));
  o.seed = static_cast<uint64_t>(a.integer("--seed", 0));
  o.retries = a.integer("--retries", o.retries);
  o.candidates = a.integer("--candidates", o.candidates);
  o.alpha = a.number("--alpha", 0.0);
  o.verify = !a.has("--no-verify");
  const Dataset data = load_jsonl(a.positional()[0]);
  const BuildResult r = build(data, o);
  save_net(r.net, a.value("--out", ""));
  nlohmann::json j = r.report.to_json();
  j["data"] = a.positional()[0];
  j["model"] = a.value("--out", "");
  std::cout << j.dump() << "\n";
  return 0;
}

int classify_cmd(const std::vector<std::string>& args) {
  HardmaxArgs a("classify", args, {"--dtype", "--threads"}, {"--predictions"});
  GRADUS_CHECK(a.positional().size() == 2, "classify",
               "expected MODEL.safetensors DATA.jsonl, found {} arguments", a.positional().size());
  set_threads(a);
  const Net net = load_net(a.positional()[0]);
  const Dataset data = load_jsonl(a.positional()[1]);
  const DType arith = a.has("--dtype") ? parse_dtype(a.value("--dtype", "")) : net.dtype;
  const Classification c = classify(net, data, arith);
  nlohmann::json j;
  j["model"] = a.positional()[0];
  j["data"] = a.positional()[1];
  j["N"] = data.size();
  j["correct"] = c.correct;
  j["accuracy"] = c.accuracy;
  j["dtype"] = std::string(dtype_name(arith));
  j["model_dtype"] = std::string(dtype_name(net.dtype));
  j["readout_margin"] = c.readout_margin;
  j["seconds"] = c.seconds;
  std::cout << j.dump() << "\n";
  if (a.has("--predictions"))
    for (int64_t n = 0; n < data.size(); ++n)
      std::cout << nlohmann::json{{"line", n + 1},
                                  {"predicted", c.predicted[n]},
                                  {"label", data.labels[n]},
                                  {"readout", c.readout[n]}}
                       .dump()
                << "\n";
  return 0;
}

int hardmax_data(const std::vector<std::string>& args) {
  HardmaxArgs a("hardmax-data", args,
                {"--out", "--n", "--d", "--vocab", "--min-length", "--max-length", "--classes",
                 "--repeat", "--seed"},
                {});
  GRADUS_CHECK(a.positional().size() == 1, "hardmax-data",
               "expected one kind ({}), found {} arguments", fmt::join(synthetic_kinds(), ", "),
               a.positional().size());
  GRADUS_CHECK(a.has("--out"), "hardmax-data", "--out DATA.jsonl is required");
  SyntheticSpec s;
  s.kind = a.positional()[0];
  s.n = a.integer("--n", s.n);
  s.d = a.integer("--d", s.d);
  s.vocab = a.integer("--vocab", s.vocab);
  s.min_length = a.integer("--min-length", s.min_length);
  s.max_length = a.integer("--max-length", s.max_length);
  s.classes = a.integer("--classes", s.classes);
  s.repeat = a.integer("--repeat", s.repeat);
  s.seed = static_cast<uint64_t>(a.integer("--seed", 0));
  const Dataset data = make_synthetic(s);
  save_jsonl(data, a.value("--out", ""));
  std::cout << nlohmann::json{{"out", a.value("--out", "")},
                              {"N", data.size()},
                              {"d", data.d},
                              {"tokens", data.num_tokens()},
                              {"max_length", data.max_length()}}
                   .dump()
            << "\n";
  return 0;
}

const bool kRegistered = [] {
  register_command(
      {"build-hardmax",
       "build-hardmax DATA.jsonl --out MODEL.safetensors [--dtype f64|f32] [--seed S]\n"
       "      [--retries R] [--candidates C] [--alpha A] [--no-verify] [--threads T]\n"
       "    build the hardmax transformer that classifies every sequence of DATA exactly\n"
       "    (JSON Lines {\"x\": [[...], ...], \"y\": LABEL}); prints a JSON summary",
       build_hardmax});
  register_command(
      {"classify",
       "classify MODEL.safetensors DATA.jsonl [--predictions] [--dtype f64|f32]\n"
       "    accuracy of a hardmax model on DATA as JSON (--predictions: one line each)",
       classify_cmd});
  register_command(
      {"hardmax-data",
       "hardmax-data KIND --out DATA.jsonl [--n N] [--d D] [--vocab V] [--classes C]\n"
       "      [--min-length A] [--max-length B] [--repeat R] [--seed S]\n"
       "    write a synthetic dataset (random, gaussian, nested, pairs, grid, duplicates)",
       hardmax_data});
  return true;
}();

}  // namespace
}  // namespace gradus::experiments
