// `gradus verify hardmax [--quick] [--seed S]`: the checks of the hardmax construction (spec
// section 3, docs/hardmax.md): exact classification on synthetic datasets of every kind, blocks
// and parameters against the formulas and the paper's 4N + 1, margins and noise tolerance, length
// invariance, permutation equivariance, and f32 against f64. Prints markdown tables; returns false
// (the CLI exits non-zero) when any check fails.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <ostream>

#include "core/error.h"
#include "experiments/lib/commands.h"
#include "experiments/lib/hardmax_args.h"
#include "models/hardmax/builder.h"
#include "models/hardmax/forward.h"
#include "models/hardmax/random.h"
#include "models/hardmax/synthetic.h"

namespace gradus::experiments {
namespace {

using namespace gradus::hardmax;

struct Case {
  std::string name;
  SyntheticSpec spec;
  bool noise = true;  // measure the noise tolerance (a forward pass per noise level)
};

SyntheticSpec spec(const std::string& kind, int64_t n, int64_t d, int64_t vocab, int64_t lmin,
                   int64_t lmax, int64_t classes, uint64_t seed, int64_t repeat = 4) {
  SyntheticSpec s;
  s.kind = kind;
  s.n = n;
  s.d = d;
  s.vocab = vocab;
  s.min_length = lmin;
  s.max_length = lmax;
  s.classes = classes;
  s.seed = seed;
  s.repeat = repeat;
  return s;
}

std::vector<Case> cases(bool quick, uint64_t seed) {
  if (quick)
    return {{"random", spec("random", 10, 2, 6, 2, 8, 2, seed)},
            {"random", spec("random", 100, 4, 16, 2, 16, 3, seed)},
            {"gaussian", spec("gaussian", 200, 8, 1, 2, 32, 2, seed)},
            {"nested", spec("nested", 40, 3, 1, 1, 1, 2, seed)},
            {"pairs", spec("pairs", 1, 2, 12, 2, 2, 3, seed)},
            {"grid", spec("grid", 100, 2, 4, 2, 6, 2, seed)},
            {"duplicates", spec("duplicates", 100, 4, 12, 2, 8, 2, seed, 6)}};
  return {{"random", spec("random", 10, 2, 6, 2, 8, 2, seed)},
          {"random", spec("random", 100, 4, 16, 2, 16, 3, seed)},
          {"random", spec("random", 1000, 16, 64, 2, 64, 2, seed)},
          {"random", spec("random", 3000, 16, 64, 2, 64, 2, seed), false},
          {"random", spec("random", 10000, 16, 64, 2, 64, 2, seed), false},
          {"random (d 64, long)", spec("random", 200, 64, 512, 2, 400, 2, seed)},
          {"gaussian", spec("gaussian", 10000, 16, 1, 2, 64, 2, seed), false},
          {"nested", spec("nested", 400, 8, 1, 1, 1, 2, seed)},
          {"pairs", spec("pairs", 1, 4, 60, 2, 2, 3, seed)},
          {"grid", spec("grid", 1000, 3, 4, 2, 12, 2, seed)},
          {"duplicates", spec("duplicates", 1000, 8, 32, 2, 16, 2, seed, 8)}};
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Dataset with_noise(const Dataset& data, double sigma, uint64_t seed) {
  Dataset out = data;
  Rng rng(seed);
  for (double& x : out.tokens) x += sigma * (2 * rng.uniform() - 1);
  return out;
}

// The largest sigma in {1e-1, 3e-2, 1e-2, ...} for which uniform noise in [-sigma, sigma] on every
// coordinate of every token keeps 100% (0 when none down to 1e-12 does).
double noise_tolerance(const Net& net, const Dataset& data, uint64_t seed) {
  for (int k = 2; k <= 24; ++k) {
    const double sigma = (k % 2 == 0 ? 1.0 : 0.3) * std::pow(10.0, -(k / 2));
    if (classify(net, with_noise(data, sigma, seed)).correct == data.size()) return sigma;
  }
  return 0.0;
}

std::string g3(double x) { return fmt::format("{:.3g}", x); }

bool run_hardmax_suite(const std::vector<std::string>& args, std::ostream& out) {
  HardmaxArgs a("verify hardmax", args, {"--seed"}, {"--quick"});
  const bool quick = a.has("--quick");
  const uint64_t seed = static_cast<uint64_t>(a.integer("--seed", 0));
  bool all_ok = true;
  auto verdict = [&](bool ok) {
    all_ok = all_ok && ok;
    return ok ? "ok" : "FAIL";
  };
  out << fmt::format("{} run, seed {}\n\n", quick ? "quick" : "full", seed);

  // ---- 1. exact classification, counts, margins, time ----
  out << "### Exact classification (f64)\n\n"
         "| data | N | d | lengths | classes | K0 | K | rounds | blocks | 2+2K-K0 | 2N+1 | 4N+1 "
         "| parameters | bound | accuracy | isolation gap | label gap | leader gap | noise kept | "
         "build s | verify s | |\n"
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
         "\n";
  for (const Case& c : cases(quick, seed)) {
    const Dataset data = make_synthetic(c.spec);
    int64_t lmin = data.length(0);
    for (int64_t n = 0; n < data.size(); ++n) lmin = std::min(lmin, data.length(n));
    BuildOptions o;
    o.seed = seed;
    try {
      const BuildResult r = build(data, o);
      const BuildReport& p = r.report;
      const double noise = c.noise ? noise_tolerance(r.net, data, seed + 1) : -1;
      const bool ok = p.train_accuracy == 1.0 && p.blocks == p.block_formula &&
                      p.blocks <= p.block_bound && p.parameters <= p.parameter_bound;
      out << fmt::format(
          "| {} | {} | {} | {}-{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} "
          "| "
          "{} | {} | {:.2f} | {:.2f} | {} |\n",
          c.name, p.sequences, p.d, lmin, p.max_length, p.classes, p.groups_initial, p.groups_final,
          p.rounds, p.blocks, p.block_formula, p.block_bound, p.paper_blocks, p.parameters,
          p.parameter_bound, p.train_accuracy, g3(p.min_isolation_gap), g3(p.label_gap),
          g3(p.min_leader_gap), noise < 0 ? "-" : g3(noise), p.build_seconds, p.verify_seconds,
          verdict(ok));
    } catch (const Error& e) {
      out << fmt::format("| {} | {} | {} | | | | | | | | | | | | | | | | | | | {}: {} |\n", c.name,
                         data.size(), data.d, verdict(false), e.what());
    }
  }

  // ---- 2. length invariance ----
  out << "\n### Length invariance: every token repeated r times (same token sets)\n\n"
         "| r | max length | blocks | parameters | accuracy of its own model | accuracy of the r = "
         "1 "
         "model | |\n|---|---|---|---|---|---|---|\n";
  {
    const Dataset base = make_synthetic(spec("random", quick ? 60 : 200, 8, 16, 2, 16, 2, seed));
    BuildOptions o;
    o.seed = seed;
    const BuildResult b0 = build(base, o);
    for (int64_t r : {int64_t{1}, int64_t{4}, int64_t{25}}) {
      Dataset rep;
      rep.d = base.d;
      rep.source = fmt::format("{} repeated {}x", base.source, r);
      for (int64_t n = 0; n < base.size(); ++n) {
        std::vector<double> x;
        for (int64_t i = base.offsets[n]; i < base.offsets[n + 1]; ++i)
          for (int64_t k = 0; k < r; ++k)
            x.insert(x.end(), base.tokens.begin() + i * base.d,
                     base.tokens.begin() + (i + 1) * base.d);
        rep.add(x, base.labels[n]);
      }
      const BuildResult br = build(rep, o);
      const double cross = classify(b0.net, rep).accuracy;
      const bool ok = br.report.blocks == b0.report.blocks &&
                      br.report.parameters == b0.report.parameters &&
                      br.report.train_accuracy == 1.0 && cross == 1.0;
      out << fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", r, rep.max_length(),
                         br.report.blocks, br.report.parameters, br.report.train_accuracy, cross,
                         verdict(ok));
    }
  }

  // ---- 3. permutation equivariance ----
  out << "\n### Permutation equivariance: T(pi X) = pi T(X), bit for bit\n\n"
         "| data | blocks run | tokens | equal bit for bit | predictions equal | |\n"
         "|---|---|---|---|---|---|\n";
  {
    const Dataset data = make_synthetic(spec("random", quick ? 60 : 300, 4, 12, 2, 12, 2, seed));
    BuildOptions o;
    o.seed = seed;
    const BuildResult r = build(data, o);
    int64_t before_collapse = 0;
    while (r.net.blocks[before_collapse].role != BlockRole::collapse) ++before_collapse;
    Dataset perm = data;
    std::vector<std::vector<int64_t>> pis;
    Rng rng(seed + 7);
    for (int64_t n = 0; n < data.size(); ++n) {
      const int64_t L = data.length(n);
      std::vector<int64_t> pi(static_cast<size_t>(L));
      for (int64_t i = 0; i < L; ++i) pi[i] = i;
      for (int64_t i = L - 1; i > 0; --i) std::swap(pi[i], pi[rng.below(i + 1)]);
      for (int64_t i = 0; i < L; ++i)
        for (int64_t c = 0; c < data.d; ++c)
          perm.tokens[(data.offsets[n] + i) * data.d + c] =
              data.tokens[(data.offsets[n] + pi[i]) * data.d + c];
      pis.push_back(pi);
    }
    for (int64_t blocks : {before_collapse, r.net.num_blocks()}) {
      const std::vector<double> y = forward_tokens(r.net, data, blocks);
      const std::vector<double> yp = forward_tokens(r.net, perm, blocks);
      bool equal = true;
      for (int64_t n = 0; n < data.size() && equal; ++n)
        for (int64_t i = 0; i < data.length(n) && equal; ++i)
          for (int64_t c = 0; c < data.d; ++c)
            if (yp[(data.offsets[n] + i) * data.d + c] !=
                y[(data.offsets[n] + pis[n][i]) * data.d + c])
              equal = false;
      const bool preds = classify(r.net, perm).predicted == classify(r.net, data).predicted;
      out << fmt::format("| {} | {} of {} | {} | {} | {} | {} |\n", data.source, blocks,
                         r.net.num_blocks(), data.num_tokens(), equal ? "yes" : "no",
                         preds ? "yes" : "no", verdict(equal && preds));
    }
  }

  // ---- 4. f32 against f64 ----
  out << "\n### f32 against f64 (random, d 16, lengths 2-64, vocabulary 64)\n\n"
         "| N | f64 build | f32 build (attempts) | f64 model run in f32 | f32 model run in f64 | "
         "f32 build s | |\n|---|---|---|---|---|---|---|\n";
  {
    const std::vector<int64_t> sizes =
        quick ? std::vector<int64_t>{30, 100} : std::vector<int64_t>{100, 300, 1000, 3000};
    for (int64_t n : sizes) {
      const Dataset data = make_synthetic(spec("random", n, 16, 64, 2, 64, 2, seed));
      BuildOptions o;
      o.seed = seed;
      const BuildResult r64 = build(data, o);
      const double f64_in_f32 = classify(r64.net, data, DType::f32).accuracy;
      o.dtype = DType::f32;
      std::string f32 = "failed", f32_in_f64 = "-", secs = "-";
      bool f32_ok = false;
      const double t0 = now_s();
      try {
        const BuildResult r32 = build(data, o);
        f32_ok = r32.report.train_accuracy == 1.0;
        f32 = fmt::format("{} ({})", r32.report.train_accuracy, r32.report.attempts);
        f32_in_f64 = fmt::format("{}", classify(r32.net, data, DType::f64).accuracy);
      } catch (const Error&) {
        f32 = fmt::format("failed ({} attempts)", o.retries + 1);
      }
      secs = fmt::format("{:.2f}", now_s() - t0);
      // f64 must always be exact; f32 must be at the smallest size (it degrades as N grows).
      const bool ok = r64.report.train_accuracy == 1.0 && (n != sizes.front() || f32_ok);
      out << fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", n, r64.report.train_accuracy,
                         f32, f64_in_f32, f32_in_f64, secs, verdict(ok));
    }
  }
  out << "\n";
  return all_ok;
}

const bool kRegistered = register_verify_suite(
    {"hardmax",
     "constructive hardmax classifiers: exact on every dataset, blocks and parameters within the "
     "bounds, length invariance, permutation equivariance, f32 vs f64 (--quick: small N)",
     run_hardmax_suite});

}  // namespace
}  // namespace gradus::experiments
