#include "experiments/lib/graded_verify.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <ostream>
#include <random>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/softmax.h"
#include "autodiff/ops/view.h"
#include "autodiff/tape.h"
#include "core/error.h"
#include "experiments/lib/commands.h"
#include "experiments/lib/dense_linalg.h"
#include "models/graded/gauge.h"
#include "models/graded/graded_loss.h"
#include "models/graded/graded_mlp.h"
#include "models/graded/grading.h"
#include "models/nn/lm.h"
#include "models/optim/adam.h"

namespace gradus::experiments {

namespace {

using graded::GradingKind;
using graded::GradingOperator;
using graded::GradingOptions;
using Rng = std::mt19937_64;
constexpr double kInf = std::numeric_limits<double>::infinity();

double uniform(Rng& r, double lo, double hi) {
  return std::uniform_real_distribution<double>(lo, hi)(r);
}
int64_t randint(Rng& r, int64_t lo, int64_t hi) {  // inclusive
  return std::uniform_int_distribution<int64_t>(lo, hi)(r);
}
std::vector<double> randn(Rng& r, int64_t n, double sd = 1.0) {
  std::normal_distribution<double> normal(0.0, sd);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = normal(r);
  return v;
}
Tensor f64(const std::vector<double>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape, DType::f64);
}
Matrix to_matrix(const Tensor& t) {
  GRADUS_CHECK(t.dim() == 2, "to_matrix", "expected a matrix, found {}", t.describe());
  Matrix m(t.size(0), t.size(1));
  m.a = t.to_vector();
  return m;
}

// The worst ratio of one check over its instances.
struct Tracker {
  CheckResult r;
  Tracker(std::string id, std::string name) {
    r.id = std::move(id);
    r.name = std::move(name);
  }
  void add(double ratio) {
    ++r.instances;
    if (std::isnan(ratio)) ratio = kInf;
    r.worst_ratio = std::max(r.worst_ratio, ratio);
    if (!(ratio <= 1.0)) r.passed = false;
  }
  CheckResult done(std::string note = "") {
    r.note = std::move(note);
    return r;
  }
};

// A fixed grading of d channels with random grades: LGT q in [0.1, q_hi], EGT q in [0, q_hi] with
// lambda in [1.2, 3]; rms normalisation on half of them.
GradingOperator random_grading(Rng& r, int64_t d, double q_hi = 3.0) {
  GradingOptions o;
  o.kind = randint(r, 0, 1) ? GradingKind::linear : GradingKind::exponential;
  o.dim = d;
  o.base = uniform(r, 1.2, 3.0);
  o.rms_norm = randint(r, 0, 1) == 1;
  for (int64_t i = 0; i < d; ++i)
    o.init_values.push_back(o.kind == GradingKind::linear ? uniform(r, 0.1, q_hi)
                                                          : uniform(r, 0.0, q_hi));
  return GradingOperator(o);
}

// The Jacobian (m x d) of f: R^d -> R^m at x0, one reverse pass per output (the engine's VJPs).
Matrix jacobian(const std::function<Tensor(const Tensor&)>& f, const std::vector<double>& x0) {
  const int64_t d = static_cast<int64_t>(x0.size());
  Tensor x = f64(x0, {d});
  x.set_requires_grad(true);
  Tensor y = reshape(f(x), {-1});
  const int64_t m = y.numel();
  Matrix j(m, d);
  for (int64_t k = 0; k < m; ++k) {
    std::vector<double> e(static_cast<size_t>(m), 0.0);
    e[static_cast<size_t>(k)] = 1.0;
    x.zero_grad();
    backward(y, f64(e, {m}), /*retain_graph=*/k + 1 < m);
    std::vector<double> g = x.grad().to_vector();
    for (int64_t i = 0; i < d; ++i) j(k, i) = g[static_cast<size_t>(i)];
  }
  return j;
}

double vmax(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }
double vmin(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

// ---- 1: Lipschitz constant of Phi -------------------------------------------------------------
std::vector<CheckResult> check_phi_lipschitz(Rng& rng, int64_t n) {
  Tracker bound("1", "Phi is s_max-Lipschitz: ||Phi x - Phi y|| <= s_max ||x - y||");
  Tracker tight("1b", "the bound is attained on the top channel (|ratio - 1| / 1e-12)");
  for (int64_t k = 0; k < n; ++k) {
    const int64_t d = randint(rng, 1, 16);
    GradingOperator phi = random_grading(rng, d);
    const std::vector<double> s = phi.scale_values();
    const double smax = vmax(s);
    std::vector<double> x = randn(rng, d), y = randn(rng, d, uniform(rng, 1e-3, 3));
    NoGradGuard no_grad;
    Tensor dx = phi.apply(f64(x, {d})) - phi.apply(f64(y, {d}));
    std::vector<double> diff(static_cast<size_t>(d));
    for (int64_t i = 0; i < d; ++i) diff[static_cast<size_t>(i)] = x[i] - y[i];
    // d = 1 or a difference on the top channel alone gives equality; allow its rounding.
    bound.add(norm2(dx.to_vector()) / (smax * norm2(diff)) / (1 + 1e-12));
    // y = x + t e_top: the ratio is 1 up to rounding.
    const int64_t top = std::max_element(s.begin(), s.end()) - s.begin();
    std::vector<double> z = x;
    const double t = uniform(rng, 0.1, 2);
    z[static_cast<size_t>(top)] += t;
    Tensor dz = phi.apply(f64(z, {d})) - phi.apply(f64(x, {d}));
    tight.add(std::fabs(norm2(dz.to_vector()) / (smax * t) - 1.0) / 1e-12);
  }
  return {bound.done(), tight.done()};
}

// ---- 2: single-query graded attention ---------------------------------------------------------
CheckResult check_attention_lipschitz(Rng& rng, int64_t n) {
  Tracker t("2",
            "graded attention a(x) = V^T softmax(K Phi^2 x / sqrt d): ||J|| <= "
            "||V|| ||K|| s_max^2 / (2 sqrt d)");
  double mean_ratio = 0;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t keys = randint(rng, 2, 12), d = randint(rng, 1, 8), dv = randint(rng, 1, 6);
    GradingOperator phi = random_grading(rng, d, 2.0);
    Matrix K(keys, d), V(keys, dv);
    K.a = randn(rng, keys * d, uniform(rng, 0.3, 2.0));
    V.a = randn(rng, keys * dv);
    Tensor Kt = f64(K.a, {keys, d}), Vt = f64(V.a, {keys, dv});
    const double rd = std::sqrt(static_cast<double>(d));
    auto a = [&](const Tensor& x) {
      Tensor scores = matmul(Kt, phi.apply(phi.apply(x))) / rd;  // (keys)
      return matmul(transpose(Vt, 0, 1), softmax(scores, 0));    // (dv)
    };
    // Half the points near the origin (uniform attention), half far out (peaked).
    std::vector<double> x = randn(rng, d, k % 2 ? 0.3 : 2.0);
    const double observed = power_iteration_norm(jacobian(a, x), rng);
    const double s = vmax(phi.scale_values());
    const double b = spectral_norm(V) * spectral_norm(K) * s * s / (2 * rd);
    t.add(observed / b);
    mean_ratio += observed / b;
  }
  return t.done(fmt::format("mean ratio {:.3f}", mean_ratio / static_cast<double>(n)));
}

// ---- 3: graded feed-forward, residual block, trained stack ------------------------------------
double ffn_lipschitz_bound(const graded::GradedMLP& m) {
  const double in = m.grading_in() ? m.grading_in()->s_max() : 1.0;
  const double out = m.grading_out() ? m.grading_out()->s_max() : 1.0;
  return out * spectral_norm(to_matrix(m.fc2()->weight())) *
         graded::activation_lipschitz(m.activation()) *
         spectral_norm(to_matrix(m.fc1()->weight())) * in;
}

GradingOptions random_fixed_options(Rng& rng, int64_t d, double q_hi) {
  GradingOperator g = random_grading(rng, d, q_hi);
  return g.options();
}

std::vector<CheckResult> check_ffn(Rng& rng, int64_t n) {
  Tracker ffn("3",
              "graded FFN W2 s(W1 Phi_in x): ||J|| <= ||Phi_out|| ||W2|| L_s ||W1|| "
              "||Phi_in||");
  Tracker block("3b", "residual block x + FFN(x): ||J|| <= 1 + Lip(FFN)");
  Tracker stack("3c", "trained stack of residual blocks: ||J|| <= prod_l (1 + Lip_l)");
  const graded::Activation acts[] = {graded::Activation::relu, graded::Activation::tanh,
                                     graded::Activation::silu, graded::Activation::gelu};
  for (int64_t k = 0; k < n; ++k) {
    const int64_t d = randint(rng, 2, 8), h = randint(rng, 4, 16);
    Generator gen(rng());
    graded::GradedMLP m(d, h, d, acts[k % 4], gen, random_fixed_options(rng, d, 2.0),
                        random_fixed_options(rng, d, 2.0));
    m.to(DType::f64);
    const double lip = ffn_lipschitz_bound(m);
    double worst = 0, worst_block = 0;
    for (int p = 0; p < 4; ++p) {
      std::vector<double> x = randn(rng, d, uniform(rng, 0.1, 3));
      worst = std::max(worst, power_iteration_norm(
                                  jacobian([&](const Tensor& v) { return m.forward(v); }, x), rng));
      worst_block = std::max(
          worst_block, power_iteration_norm(
                           jacobian([&](const Tensor& v) { return v + m.forward(v); }, x), rng));
    }
    ffn.add(worst / lip);
    block.add(worst_block / (1 + lip));
  }
  // Trained stacks: a tenth of the instances (each trains for 40 Adam steps).
  double mean_ratio = 0;
  const int64_t stacks = std::max<int64_t>(2, n / 10);
  for (int64_t k = 0; k < stacks; ++k) {
    const int64_t d = randint(rng, 2, 6), layers = randint(rng, 2, 4);
    Generator gen(rng());
    std::vector<std::shared_ptr<graded::GradedMLP>> blocks;
    std::vector<Tensor> params;
    for (int64_t l = 0; l < layers; ++l) {
      auto b = std::make_shared<graded::GradedMLP>(d, 2 * d + 2, d, acts[(k + l) % 4], gen,
                                                   random_fixed_options(rng, d, 1.5));
      b->to(DType::f64);
      for (const Tensor& p : b->parameters()) params.push_back(p);
      blocks.push_back(b);
    }
    auto net = [&](const Tensor& x) {
      Tensor y = x;
      for (auto& b : blocks) y = y + b->forward(y);
      return y;
    };
    // Fit a random smooth map on 64 points: the weights move away from their initial draw.
    std::vector<double> xs = randn(rng, 64 * d), ws = randn(rng, d * d, 0.5);
    Tensor X = f64(xs, {64, d}), W = f64(ws, {d, d});
    Tensor Y = tanh(matmul(X, W));
    Adam opt(params, 1e-2);
    for (int step = 0; step < 40; ++step) {
      opt.zero_grad();
      Tensor loss = mean(square(net(X) - Y));
      backward(loss);
      opt.step();
    }
    double bound = 1;
    for (auto& b : blocks) bound *= 1 + ffn_lipschitz_bound(*b);
    double worst = 0;
    for (int p = 0; p < 4; ++p) {
      std::vector<double> x = randn(rng, d);
      worst = std::max(worst, power_iteration_norm(jacobian(net, x), rng));
    }
    stack.add(worst / bound);
    mean_ratio += worst / bound;
  }
  return {ffn.done(), block.done(),
          stack.done(fmt::format("mean ratio {:.3f} over {} trained stacks (the product bound is "
                                 "loose)",
                                 mean_ratio / static_cast<double>(stacks), stacks))};
}

// ---- 4: robustness and certification ----------------------------------------------------------
std::vector<CheckResult> check_robustness(Rng& rng, int64_t n) {
  Tracker lip("4", "F = G o Phi: ||F(x + d) - F(x)|| <= L_G ||Phi d||");
  Tracker cert("4b",
               "certified (L_G max_S s_i eps < margin / sqrt 2): class kept under attack, "
               "sqrt2 ||dF|| / margin");
  int64_t changed = 0, attacks = 0;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t d = randint(rng, 2, 10), h = randint(rng, 4, 16), classes = randint(rng, 2, 5);
    GradingOperator phi = random_grading(rng, d, 2.0);
    Generator gen(rng());
    graded::GradedMLP g(d, h, classes, graded::Activation::tanh, gen);
    g.to(DType::f64);
    const double lg =
        spectral_norm(to_matrix(g.fc2()->weight())) * spectral_norm(to_matrix(g.fc1()->weight()));
    auto F = [&](const Tensor& x) { return g.forward(phi.apply(x)); };
    const std::vector<double> s = phi.scale_values();
    std::vector<double> x = randn(rng, d), delta = randn(rng, d, uniform(rng, 1e-3, 1));
    {
      NoGradGuard no_grad;
      std::vector<double> xd(x);
      for (int64_t i = 0; i < d; ++i) xd[i] += delta[i];
      const double df = norm2((F(f64(xd, {d})) - F(f64(x, {d}))).to_vector());
      const double phid = norm2(phi.apply(f64(delta, {d})).to_vector());
      lip.add(df / (lg * phid));
    }
    // Certification on a random channel set S.
    std::vector<int64_t> S;
    for (int64_t i = 0; i < d; ++i)
      if (randint(rng, 0, 1)) S.push_back(i);
    if (S.empty()) S.push_back(randint(rng, 0, d - 1));
    double s_S = 0;
    for (int64_t i : S) s_S = std::max(s_S, s[static_cast<size_t>(i)]);
    std::vector<double> f0;
    {
      NoGradGuard no_grad;
      f0 = F(f64(x, {d})).to_vector();
    }
    const int64_t c = std::max_element(f0.begin(), f0.end()) - f0.begin();
    double runner = -kInf;
    int64_t j_star = 0;
    for (int64_t j = 0; j < classes; ++j)
      if (j != c && f0[j] > runner) runner = f0[j], j_star = j;
    const double margin = f0[c] - runner;
    const double eps = uniform(rng, 0.05, 0.99) * margin / (std::sqrt(2.0) * lg * s_S);
    auto project = [&](std::vector<double> v) {  // onto S, then to norm eps
      std::vector<double> out(static_cast<size_t>(d), 0.0);
      for (int64_t i : S) out[static_cast<size_t>(i)] = v[static_cast<size_t>(i)];
      const double nv = norm2(out);
      for (double& o : out) o = nv > 0 ? o * eps / nv : 0.0;
      return out;
    };
    auto attack = [&](const std::vector<double>& dv) {
      NoGradGuard no_grad;
      std::vector<double> xd(x);
      for (int64_t i = 0; i < d; ++i) xd[i] += dv[i];
      std::vector<double> f1 = F(f64(xd, {d})).to_vector();
      std::vector<double> diff(f1.size());
      for (size_t i = 0; i < f1.size(); ++i) diff[i] = f1[i] - f0[i];
      ++attacks;
      const bool kept = std::max_element(f1.begin(), f1.end()) - f1.begin() == c;
      if (!kept) ++changed;
      cert.add(kept ? std::sqrt(2.0) * norm2(diff) / margin : kInf);
    };
    for (int r = 0; r < 8; ++r) attack(project(randn(rng, d)));
    // Projected gradient ascent on the runner-up's gap F_j* - F_c within the eps-ball on S.
    std::vector<double> dv(static_cast<size_t>(d), 0.0);
    for (int step = 0; step < 10; ++step) {
      std::vector<double> xd(x);
      for (int64_t i = 0; i < d; ++i) xd[i] += dv[i];
      Tensor xt = f64(xd, {d});
      xt.set_requires_grad(true);
      Tensor out = F(xt);
      std::vector<double> sel(static_cast<size_t>(classes), 0.0);
      sel[static_cast<size_t>(j_star)] = 1.0;
      sel[static_cast<size_t>(c)] = -1.0;
      backward(sum(out * f64(sel, {classes})));
      std::vector<double> gr = xt.grad().to_vector();
      std::vector<double> next(dv);
      for (int64_t i = 0; i < d; ++i) next[i] += eps * gr[i] / (norm2(gr) + 1e-300);
      dv = project(next);
    }
    attack(dv);
  }
  return {lip.done(),
          cert.done(fmt::format("{} of {} attacks changed a certified class", changed, attacks))};
}

// ---- 5: margin complexity of a graded linear head ---------------------------------------------
std::vector<CheckResult> check_rademacher(Rng& rng, int64_t n) {
  Tracker rad("5",
              "Rademacher complexity of {x -> w^T Phi x : ||w|| <= B} <= B sqrt(sum ||Phi "
              "x_j||^2) / n");
  Tracker deff("5b", "effective dimension d_eff = sum s_i^2 r_i^2 / (s_max^2 max r_i^2) <= d");
  double deff_sum = 0, ratio_sum = 0;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t m = randint(rng, 1, 10), d = randint(rng, 1, 8);
    const double B = uniform(rng, 0.5, 3);
    GradingOperator phi = random_grading(rng, d);
    std::vector<double> r_scale(static_cast<size_t>(d));
    for (double& r : r_scale) r = uniform(rng, 0.1, 2);
    std::vector<double> xs = randn(rng, m * d);
    for (int64_t j = 0; j < m; ++j)
      for (int64_t i = 0; i < d; ++i) xs[static_cast<size_t>(j * d + i)] *= r_scale[i];
    std::vector<double> z;
    {
      NoGradGuard no_grad;
      z = phi.apply(f64(xs, {m, d})).to_vector();
    }
    // E_sigma ||sum_j sigma_j z_j||, exactly: the average over all 2^m sign vectors (the limit
    // of the Monte Carlo estimate).
    double expectation = 0;
    for (int64_t mask = 0; mask < (int64_t{1} << m); ++mask) {
      std::vector<double> acc(static_cast<size_t>(d), 0.0);
      for (int64_t j = 0; j < m; ++j) {
        const double sign = (mask >> j) & 1 ? 1.0 : -1.0;
        for (int64_t i = 0; i < d; ++i) acc[i] += sign * z[static_cast<size_t>(j * d + i)];
      }
      expectation += norm2(acc);
    }
    expectation /= static_cast<double>(int64_t{1} << m);
    const double complexity = B * expectation / static_cast<double>(m);
    double sq = 0;
    for (double v : z) sq += v * v;
    const double bound = B * std::sqrt(sq) / static_cast<double>(m);
    // Equality holds for m = 1 exactly; rounding may put it a few ulps above.
    rad.add(complexity / bound / (1 + 1e-12));
    ratio_sum += complexity / bound;
    const std::vector<double> s = phi.scale_values();
    std::vector<double> r(static_cast<size_t>(d), 0.0);
    for (int64_t j = 0; j < m; ++j)
      for (int64_t i = 0; i < d; ++i)
        r[i] = std::max(r[i], std::fabs(xs[static_cast<size_t>(j * d + i)]));
    double num = 0;
    for (int64_t i = 0; i < d; ++i) num += s[i] * s[i] * r[i] * r[i];
    const double smax = vmax(s), rmax = vmax(r);
    const double d_eff = num / (smax * smax * rmax * rmax);
    deff.add(d_eff / static_cast<double>(d) / (1 + 1e-12));  // d = 1: equality
    deff_sum += d_eff / static_cast<double>(d);
  }
  return {rad.done(fmt::format("mean ratio {:.3f}", ratio_sum / static_cast<double>(n))),
          deff.done(fmt::format("mean d_eff / d = {:.3f}", deff_sum / static_cast<double>(n)))};
}

// ---- 6: homogeneous gauges --------------------------------------------------------------------
std::vector<CheckResult> check_gauges(Rng& rng, int64_t n) {
  Tracker inf("6", "||lambda * x||_{q,inf} = lambda ||x||_{q,inf} (relative error / 1e-12)");
  Tracker two("6b", "||lambda * x||_{q,2} = lambda ||x||_{q,2} (relative error / 1e-12)");
  Tracker engine("6c", "the engine's mean 2-gauge (eps 0) scales by lambda (error / 1e-12)");
  for (int64_t k = 0; k < n; ++k) {
    const int64_t d = randint(rng, 1, 8);
    std::vector<double> q(static_cast<size_t>(d));
    for (double& v : q) v = uniform(rng, 0.2, 10);
    std::vector<double> x = randn(rng, d, uniform(rng, 0.1, 10));
    const double lambda = std::exp(uniform(rng, -3, 3));
    const std::vector<double> lx = graded::graded_action(lambda, q, x);
    const double gi = graded::gauge_inf(q, x), g2 = graded::gauge_2(q, x);
    inf.add(std::fabs(graded::gauge_inf(q, lx) - lambda * gi) / (lambda * gi) / 1e-12);
    two.add(std::fabs(graded::gauge_2(q, lx) - lambda * g2) / (lambda * g2) / 1e-12);
    NoGradGuard no_grad;
    const double e0 = graded::gauge_2_mean(f64(x, {1, d}), f64(q, {d}), 0.0).item();
    const double e1 = graded::gauge_2_mean(f64(lx, {1, d}), f64(q, {d}), 0.0).item();
    engine.add(std::fabs(e1 - lambda * e0) / (lambda * e0) / 1e-12);
  }
  return {inf.done(), two.done(), engine.done()};
}

// ---- 7: identity settings bit for bit; grade gradients against the closed forms ---------------
bool same_bits(const Tensor& a, const Tensor& b, int64_t& mismatches) {
  std::vector<double> x = a.to_vector(), y = b.to_vector();
  if (x.size() != y.size()) return ++mismatches, false;
  int64_t bad = 0;
  for (size_t i = 0; i < x.size(); ++i)
    if (std::memcmp(&x[i], &y[i], sizeof(double)) != 0) ++bad;
  mismatches += bad;
  return bad == 0;
}

CheckResult check_identity(Rng& rng) {
  Tracker t("7",
            "identity settings (lgt q=1, egt q=0, egt lambda=1) = std, logits and every "
            "gradient bit for bit");
  int64_t mismatches = 0;
  struct Setting {
    const char* kind;
    const char* q_init;
    double base;
  };
  const Setting settings[] = {
      {"lgt", "identity", 2.0}, {"egt", "identity", 2.0}, {"egt", "0.5..3", 1.0}};
  int64_t variant = 0;
  for (const Setting& st : settings)
    for (int per_head = 0; per_head < 2; ++per_head)
      for (int64_t power = 1; power <= 2; ++power)
        for (int values = 0; values < 2; ++values)
          for (DType dtype : {DType::f32, DType::f64}) {
            ModelConfig c;
            c.vocab_size = 19;
            c.hidden_size = 16;
            c.intermediate_size = 24;
            c.num_hidden_layers = 2;
            c.num_attention_heads = 2;
            c.max_position_embeddings = 8;
            c.graded_q_init = st.q_init;
            c.graded_base = st.base;
            c.graded_per_head = per_head;
            c.graded_score_power = power;
            c.graded_values = values;
            c.graded_norm = variant++ % 3 == 0 ? "rms" : "none";  // rms of all-ones is ones
            const uint64_t seed = rng();
            Generator g1(seed), g2(seed);
            DecoderLM base(c, g1);
            ModelConfig gc = c;
            gc.attention_kind = st.kind;
            DecoderLM graded(gc, g2);
            base.to(dtype);
            graded.to(dtype);
            std::vector<double> ids_v(2 * 8), tg_v(2 * 8);
            for (auto& v : ids_v) v = static_cast<double>(randint(rng, 0, 18));
            for (auto& v : tg_v) v = static_cast<double>(randint(rng, 0, 18));
            Tensor ids = raw_to_dtype(f64(ids_v, {2, 8}), DType::i64);
            Tensor targets = raw_to_dtype(f64(tg_v, {2, 8}), DType::i64);
            bool ok = true;
            Tensor la = base.forward(ids), lb = graded.forward(ids);
            ok &= same_bits(la, lb, mismatches);
            backward(base.loss(ids, targets));
            backward(graded.loss(ids, targets));
            auto pa = base.named_parameters(), pb = graded.named_parameters();
            ok &= pa.size() == pb.size();
            for (size_t i = 0; ok && i < pa.size(); ++i)
              ok &= pa[i].first == pb[i].first &&
                    same_bits(pa[i].second.grad(), pb[i].second.grad(), mismatches);
            t.add(ok ? 0.0 : kInf);
          }
  return t.done(mismatches == 0 ? "every logit and gradient identical"
                                : fmt::format("{} elements differ", mismatches));
}

// dL/dtheta, dL/ddelta, dL/drho of L = sum(g * (x Phi)) from the closed forms of the spec.
struct ClosedForm {
  std::vector<double> free;  // theta or delta
  double rho = 0;
};
ClosedForm closed_form_gradients(const GradingOperator& phi, const Tensor& theta_or_delta,
                                 const Tensor& rho, const std::vector<double>& x,
                                 const std::vector<double>& g, int64_t rows) {
  const GradingOptions& o = phi.options();
  const int64_t d = o.dim;
  const std::vector<double> q = phi.grade_values(), s = phi.scale_values();
  const double lambda = phi.base_value(), ln = std::log(lambda);
  std::vector<double> u(static_cast<size_t>(d), 0.0);  // u_i = sum_n x_ni g_ni
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < d; ++i)
      u[i] += x[static_cast<size_t>(r * d + i)] * g[static_cast<size_t>(r * d + i)];
  std::vector<double> dq(static_cast<size_t>(d));
  for (int64_t i = 0; i < d; ++i) dq[i] = o.kind == GradingKind::linear ? u[i] : ln * s[i] * u[i];
  const std::vector<double> raw = theta_or_delta.to_vector();
  auto sigmoid = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  ClosedForm cf;
  cf.free.resize(static_cast<size_t>(d));
  for (int64_t j = 0; j < d; ++j) {
    double tail = 0;  // the prior: delta_j moves every q_i with i >= j
    if (o.monotone)
      for (int64_t i = j; i < d; ++i) tail += dq[i];
    cf.free[j] = sigmoid(raw[j]) * (o.monotone ? tail : dq[j]);
  }
  if (rho.defined()) {
    double dl = 0;
    for (int64_t i = 0; i < d; ++i) dl += q[i] * std::pow(lambda, q[i] - 1) * u[i];
    cf.rho = dl * sigmoid(rho.item());
  }
  return cf;
}

std::vector<CheckResult> check_grade_gradients(Rng& rng, int64_t n) {
  Tracker t("7b",
            "grade gradients from the engine = closed forms (LGT sum x g, EGT ln(l) s sum x "
            "g, softplus, prior, base) (relative error / 1e-10)");
  Tracker fd("7c", "rms-normalised grades: engine gradient = central differences (error / 1e-6)");
  for (int64_t k = 0; k < n; ++k) {
    const int64_t d = randint(rng, 1, 10), rows = randint(rng, 1, 6);
    GradingOptions o;
    o.kind = randint(rng, 0, 1) ? GradingKind::linear : GradingKind::exponential;
    o.dim = d;
    o.learnable = true;
    o.monotone = randint(rng, 0, 1) == 1;
    o.learn_base = o.kind == GradingKind::exponential && randint(rng, 0, 1) == 1;
    o.base = uniform(rng, 1.3, 3);
    o.q_max = 8;
    double q = o.q_min;
    for (int64_t i = 0; i < d; ++i) {
      q = o.monotone ? q + uniform(rng, 0.05, 0.6) : uniform(rng, 0.05, 4.0);
      o.init_values.push_back(q);
    }
    GradingOperator phi(o);
    phi.to(DType::f64);
    const std::vector<double> x = randn(rng, rows * d), g = randn(rng, rows * d);
    Tensor theta = phi.parameter(o.monotone ? "delta" : "theta");
    Tensor rho = o.learn_base ? phi.parameter("rho") : Tensor();
    backward(sum(phi.apply(f64(x, {rows, d})) * f64(g, {rows, d})));
    ClosedForm cf = closed_form_gradients(phi, theta, rho, x, g, rows);
    std::vector<double> auto_grad = theta.grad().to_vector();
    double scale = 1e-300, err = 0;
    for (int64_t i = 0; i < d; ++i) {
      scale = std::max(scale, std::fabs(cf.free[i]));
      err = std::max(err, std::fabs(auto_grad[i] - cf.free[i]));
    }
    if (rho.defined()) {
      scale = std::max(scale, std::fabs(cf.rho));
      err = std::max(err, std::fabs(rho.grad().item() - cf.rho));
    }
    t.add(err / scale / 1e-10);

    // rms normalisation: no closed form stated; central differences on theta instead.
    GradingOptions on = o;
    on.rms_norm = true;
    on.monotone = false;
    GradingOperator phin(on);
    phin.to(DType::f64);
    Tensor th = phin.parameter("theta");
    auto loss = [&] { return sum(phin.apply(f64(x, {rows, d})) * f64(g, {rows, d})); };
    backward(loss());
    std::vector<double> ag = th.grad().to_vector(), base_v = th.to_vector();
    double worst = 0;
    for (int64_t i = 0; i < d; ++i) {
      NoGradGuard no_grad;
      const double h = 1e-6;
      std::vector<double> v = base_v;
      v[i] += h;
      raw_copy_(th, f64(v, {1, d}));
      const double up = loss().item();
      v[i] -= 2 * h;
      raw_copy_(th, f64(v, {1, d}));
      const double down = loss().item();
      raw_copy_(th, f64(base_v, {1, d}));
      const double num = (up - down) / (2 * h);
      worst = std::max(worst, std::fabs(ag[i] - num) / (1e-6 * (1 + std::fabs(num))));
    }
    fd.add(worst);
  }
  return {t.done(), fd.done()};
}

// ---- 8: universal approximation, graded and ungraded side by side -----------------------------
CheckResult check_approximation(Rng& rng, std::string& table) {
  Tracker t("8",
            "random-feature fit of a smooth target: training error non-increasing in width "
            "(err_w / err_w/2)");
  const std::vector<int64_t> widths = {4, 8, 16, 32, 64, 128, 256};
  auto target = [](double a, double b) { return std::sin(2 * a) * std::cos(3 * b) + 0.5 * a * a; };
  auto target_da = [](double a, double b) { return 2 * std::cos(2 * a) * std::cos(3 * b) + a; };
  std::vector<std::array<double, 2>> train, test;
  for (int i = 0; i < 20; ++i)
    for (int j = 0; j < 20; ++j)
      train.push_back({-1 + 2 * (i + 0.5) / 20, -1 + 2 * (j + 0.5) / 20});
  for (int i = 0; i < 500; ++i) test.push_back({uniform(rng, -1, 1), uniform(rng, -1, 1)});
  struct Variant {
    const char* name;
    std::array<double, 2> s;
  };
  // Ungraded; LGT q = (0.5, 2); EGT lambda = 2, q = (0, 1.5).
  const Variant variants[] = {{"ungraded", {1, 1}},
                              {"lgt q=(0.5,2)", {0.5, 2}},
                              {"egt 2^(0,1.5)", {1, std::pow(2.0, 1.5)}}};
  table = fmt::format("    {:<16}{:>7}{:>14}{:>14}{:>16}\n", "features", "width", "train rmse",
                      "test rmse", "test d/dx rmse");
  for (const Variant& v : variants)
    for (int draw = 0; draw < 2; ++draw) {
      const int64_t W = widths.back();
      std::vector<double> a0 = randn(rng, W, 2.0), a1 = randn(rng, W, 2.0), b(W);
      for (double& x : b) x = uniform(rng, -2, 2);
      auto feature = [&](int64_t k, double x0, double x1) {
        return std::tanh(a0[k] * v.s[0] * x0 + a1[k] * v.s[1] * x1 + b[k]);
      };
      double previous = kInf, worst = 0;
      for (int64_t w : widths) {
        Matrix A(static_cast<int64_t>(train.size()), w + 1);
        std::vector<double> y;
        for (size_t p = 0; p < train.size(); ++p) {
          A(p, 0) = 1;
          for (int64_t k = 0; k < w; ++k) A(p, k + 1) = feature(k, train[p][0], train[p][1]);
          y.push_back(target(train[p][0], train[p][1]));
        }
        std::vector<double> coef = least_squares(A, y);
        auto predict = [&](double x0, double x1, double& dx0) {
          double out = coef[0];
          dx0 = 0;
          for (int64_t k = 0; k < w; ++k) {
            const double f = feature(k, x0, x1);
            out += coef[k + 1] * f;
            dx0 += coef[k + 1] * (1 - f * f) * a0[k] * v.s[0];
          }
          return out;
        };
        double tr = 0, te = 0, ted = 0, dx0;
        for (auto& p : train) tr += std::pow(predict(p[0], p[1], dx0) - target(p[0], p[1]), 2);
        for (auto& p : test) {
          te += std::pow(predict(p[0], p[1], dx0) - target(p[0], p[1]), 2);
          ted += std::pow(dx0 - target_da(p[0], p[1]), 2);
        }
        tr = std::sqrt(tr / train.size());
        te = std::sqrt(te / test.size());
        ted = std::sqrt(ted / test.size());
        // Nested features and the same points: least squares can only fit better. The floor
        // keeps rounding at 1e-12 from counting once the fit is exact.
        worst = std::max(worst, tr / std::max(previous, 1e-9));
        previous = tr;
        if (draw == 0 && (w == 8 || w == 32 || w == 256))
          table +=
              fmt::format("    {:<16}{:>7}{:>14.2e}{:>14.2e}{:>16.2e}\n", v.name, w, tr, te, ted);
      }
      t.add(worst);
    }
  return t.done();
}

// ---- section 4: the graded loss's gradient stability ------------------------------------------
std::vector<CheckResult> check_loss_gradients(Rng& rng, int64_t n) {
  Tracker bounded("L1", "graded loss: ||grad_y L|| <= max_i ||grad_y l_i|| (MSE and CE)");
  Tracker ratio("L2", "graded / ungraded gradient norm in [1/kappa, kappa] (max(r, 1/r) / kappa)");
  for (int64_t k = 0; k < n; ++k) {
    const int64_t K = randint(rng, 2, 10), N = randint(rng, 1, 8);
    GradingOperator phi = random_grading(rng, K);
    const double kappa = phi.kappa();
    Tensor w = graded::loss_weights(phi, DType::f64, kCPU);
    Tensor ones = Tensor::ones({K}, DType::f64);
    const bool ce = k % 2 == 1;
    std::vector<double> pv = randn(rng, N * K), tv = randn(rng, N * K);
    std::vector<double> cls(static_cast<size_t>(N));
    for (double& c : cls) c = static_cast<double>(randint(rng, 0, K - 1));
    Tensor targets_ce = raw_to_dtype(f64(cls, {N}), DType::i64);
    auto grad_of = [&](const Tensor& weights) {
      Tensor pred = f64(pv, {N, K});
      pred.set_requires_grad(true);
      Tensor L = ce ? graded::graded_cross_entropy(pred, targets_ce, weights)
                    : graded::graded_mse(pred, f64(tv, {N, K}), weights);
      backward(L);
      return norm2(pred.grad().to_vector());
    };
    const double gg = grad_of(w), gu = grad_of(ones);
    // Per-component gradients: MSE, coordinate i: 2 (p - t)_{:, i} / N; CE, sample n: the
    // softmax row minus the one-hot target.
    double max_component = 0;
    if (!ce) {
      for (int64_t i = 0; i < K; ++i) {
        double sq = 0;
        for (int64_t r = 0; r < N; ++r) {
          const double e = 2 * (pv[r * K + i] - tv[r * K + i]) / static_cast<double>(N);
          sq += e * e;
        }
        max_component = std::max(max_component, std::sqrt(sq));
      }
    } else {
      for (int64_t r = 0; r < N; ++r) {
        double mx = -kInf, z = 0, sq = 0;
        for (int64_t i = 0; i < K; ++i) mx = std::max(mx, pv[r * K + i]);
        for (int64_t i = 0; i < K; ++i) z += std::exp(pv[r * K + i] - mx);
        for (int64_t i = 0; i < K; ++i) {
          const double p = std::exp(pv[r * K + i] - mx) / z - (i == cls[r] ? 1.0 : 0.0);
          sq += p * p;
        }
        max_component = std::max(max_component, std::sqrt(sq));
      }
    }
    bounded.add(gg / max_component / (1 + 1e-12));
    const double r = gg / gu;
    ratio.add(std::max(r, 1 / r) / kappa / (1 + 1e-12));
  }
  return {bounded.done(), ratio.done()};
}

}  // namespace

std::vector<CheckResult> run_graded_checks(const GradedCheckOptions& options) {
  GRADUS_CHECK(options.instances >= 1, "verify graded", "--instances must be at least 1, found {}",
               options.instances);
  const int64_t n = options.instances;
  Rng rng(options.seed);
  std::vector<CheckResult> out;
  auto append = [&](std::vector<CheckResult> r) { out.insert(out.end(), r.begin(), r.end()); };
  append(check_phi_lipschitz(rng, n));
  out.push_back(check_attention_lipschitz(rng, n));
  append(check_ffn(rng, n));
  append(check_robustness(rng, n));
  append(check_rademacher(rng, n));
  append(check_gauges(rng, n));
  out.push_back(check_identity(rng));
  append(check_grade_gradients(rng, n));
  std::string table;
  out.push_back(check_approximation(rng, table));
  out.back().note = "fit errors (first draw):\n" + table;
  append(check_loss_gradients(rng, n));
  return out;
}

void print_check_table(const std::vector<CheckResult>& results, std::ostream& out) {
  out << fmt::format("{:<4}{:<86}{:>10}{:>13}  {}\n", "", "check", "instances", "worst ratio",
                     "result");
  bool all = true;
  for (const CheckResult& r : results) {
    std::string name = r.name.size() > 85 ? r.name.substr(0, 82) + "..." : r.name;
    out << fmt::format("{:<4}{:<86}{:>10}{:>13.6g}  {}\n", r.id, name, r.instances, r.worst_ratio,
                       r.passed ? "PASS" : "FAIL");
    all &= r.passed;
  }
  out << "\n";
  for (const CheckResult& r : results) {
    if (r.name.size() > 85) out << fmt::format("{}: {}\n", r.id, r.name);
    if (!r.note.empty()) out << fmt::format("{}: {}\n", r.id, r.note);
  }
  out << (all ? "all checks passed\n" : "SOME CHECKS FAILED\n");
}

namespace {

bool run_suite(const std::vector<std::string>& args, std::ostream& out) {
  GradedCheckOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    GRADUS_CHECK(a == "--instances" || a == "--seed", "verify graded",
                 "unknown option \"{}\" (expected --instances N or --seed S)", a);
    GRADUS_CHECK(i + 1 < args.size(), "verify graded", "{} needs a value", a);
    const std::string& v = args[++i];
    size_t end = 0;
    long long value = 0;
    try {
      value = std::stoll(v, &end);
    } catch (const std::exception&) {
      end = 0;
    }
    GRADUS_CHECK(end == v.size() && value >= (a == "--seed" ? 0 : 1), "verify graded",
                 "{} expects {} integer, found \"{}\"", a,
                 a == "--seed" ? "a non-negative" : "a positive", v);
    if (a == "--instances")
      o.instances = value;
    else
      o.seed = static_cast<uint64_t>(value);
  }
  out << fmt::format(
      "graded transformers: the theory checks ({} random instances per check, "
      "seed {}, f64)\n\n",
      o.instances, o.seed);
  std::vector<CheckResult> results = run_graded_checks(o);
  print_check_table(results, out);
  return std::all_of(results.begin(), results.end(), [](const CheckResult& r) { return r.passed; });
}

const bool kRegistered = register_verify_suite(
    {"graded",
     "graded transformers (LGT/EGT): the theory checks of docs/graded.md [--instances N] "
     "[--seed S]",
     run_suite});

}  // namespace

}  // namespace gradus::experiments
