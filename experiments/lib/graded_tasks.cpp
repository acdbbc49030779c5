#include "experiments/lib/graded_tasks.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <numbers>
#include <random>

#include "autodiff/ops/cross_entropy.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/shape.h"
#include "autodiff/ops/view.h"
#include "autodiff/tape.h"
#include "core/error.h"
#include "experiments/lib/lr_schedule.h"
#include "models/graded/diagnostics.h"
#include "models/graded/gauge.h"
#include "models/graded/graded_channel_map.h"
#include "models/graded/graded_loss.h"
#include "models/graded/grading.h"
#include "models/graded/sequence_model.h"
#include "models/optim/adam.h"
#include "models/optim/clip.h"

namespace gradus::experiments {

namespace {

using graded::GradingKind;
using graded::GradingOperator;
using graded::GradingOptions;
using Rng = std::mt19937_64;
using json = nlohmann::json;

double uniform(Rng& r, double lo, double hi) {
  return std::uniform_real_distribution<double>(lo, hi)(r);
}

GradingKind parse_kind(const std::string& kind) {
  return kind == "egt" ? GradingKind::exponential : GradingKind::linear;
}

// AdamW with three groups: matrices (weight decay), the rest (none), grade parameters (their own
// learning-rate multiplier, no decay), as the LM job makes them.
std::unique_ptr<Optimizer> make_optimizer(const Module& model, const std::vector<Tensor>& extra,
                                          const TaskTraining& t) {
  ParamGroup decay{{}, t.lr, t.weight_decay, "decay"};
  ParamGroup no_decay{{}, t.lr, 0.0, "no_decay"};
  ParamGroup grades{{}, t.lr * t.grade_lr_scale, 0.0, "grades", t.grade_lr_scale};
  std::vector<Tensor> grade_params = graded::grade_parameters(model);
  grade_params.insert(grade_params.end(), extra.begin(), extra.end());
  auto is_grade = [&](const Tensor& p) {
    return std::any_of(grade_params.begin(), grade_params.end(),
                       [&](const Tensor& g) { return g.same(p); });
  };
  for (const Tensor& p : model.parameters())
    if (!is_grade(p)) (p.dim() >= 2 ? decay : no_decay).params.push_back(p);
  grades.params = grade_params;
  std::vector<ParamGroup> groups{decay, no_decay};
  if (!grades.params.empty()) groups.push_back(grades);
  return std::make_unique<AdamW>(groups, AdamOptions{.beta1 = 0.9, .beta2 = 0.99});
}

// Warm-up, then cosine to lr / 10; `loss_at(step)` builds one step's loss.
void train(Optimizer& opt, const TaskTraining& t, const std::function<Tensor(int64_t)>& loss_at) {
  LrSchedule schedule{t.lr, t.lr / 10, t.warmup_steps, t.steps, ScheduleKind::cosine};
  schedule.validate();
  const std::vector<Tensor> params = opt.params();
  for (int64_t step = 0; step < t.steps; ++step) {
    for (ParamGroup& g : opt.param_groups()) g.lr = schedule.at(step) * g.lr_scale;
    opt.zero_grad();
    Tensor loss = loss_at(step);
    const double value = loss.item();
    GRADUS_CHECK(std::isfinite(value), "graded experiment",
                 "the loss became {} at step {} (lower lr)", value, step + 1);
    backward(loss);
    if (t.clip_grad_norm > 0) clip_grad_norm(params, t.clip_grad_norm);
    opt.step();
  }
}

double pearson(const std::vector<double>& a, const std::vector<double>& b) {
  const double n = static_cast<double>(a.size());
  double ma = 0, mb = 0;
  for (size_t i = 0; i < a.size(); ++i) ma += a[i] / n, mb += b[i] / n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0.0;
}

// The largest condition number of a model's gradings (1 without any).
double max_kappa(const Module& m) {
  double k = 1;
  for (const auto& [path, g] : graded::find_gradings(m)) k = std::max(k, g->kappa());
  return k;
}

// The output-component grading of a graded loss: one row of K grades starting at the prior q0.
std::shared_ptr<GradingOperator> loss_grading(const LossSpec& loss, const std::vector<double>& q0) {
  if (!loss.graded) return nullptr;
  GradingOptions o;
  o.kind = parse_kind(loss.kind);
  o.dim = static_cast<int64_t>(q0.size());
  o.init_values = q0;
  o.base = loss.base;
  o.learnable = loss.learnable;
  o.q_max = std::max(8.0, *std::max_element(q0.begin(), q0.end()) + 1);
  return std::make_shared<GradingOperator>(o);
}

// ||grad_pred L_graded|| / ||grad_pred L_plain|| at `pred` (the logged gradient-norm ratio).
double gradient_ratio(const Tensor& pred, const std::function<Tensor(const Tensor&, bool)>& loss) {
  double norms[2];
  for (int graded = 0; graded < 2; ++graded) {
    Tensor p = detach(pred);
    p.set_requires_grad(true);
    backward(loss(p, graded == 1));
    const std::vector<double> g = p.grad().to_vector();
    double s = 0;
    for (double v : g) s += v * v;
    norms[graded] = std::sqrt(s);
  }
  return norms[1] / norms[0];
}

// ---- polynomial -------------------------------------------------------------------------------

// Every exponent vector a with sum a_i q_i = degree.
void monomials(const std::vector<double>& q, int64_t degree, size_t i, std::vector<int64_t>& a,
               double used, std::vector<std::vector<int64_t>>& out) {
  if (i == q.size()) {
    if (std::fabs(used - static_cast<double>(degree)) < 1e-9) out.push_back(a);
    return;
  }
  for (int64_t e = 0; used + static_cast<double>(e) * q[i] <= static_cast<double>(degree) + 1e-9;
       ++e) {
    a[i] = e;
    monomials(q, degree, i + 1, a, used + static_cast<double>(e) * q[i], out);
  }
  a[i] = 0;
}

class RegressionNet : public Module {
 public:
  RegressionNet(int64_t d, int64_t hidden, const PolynomialVariant& v, int64_t degree,
                Generator& gen)
      : gauge_(v.model == "gauge"), degree_(static_cast<double>(degree)), d_(d) {
    fc1_ = register_module("fc1", std::make_shared<Linear>(d, hidden, true, gen));
    fc2_ = register_module("fc2", std::make_shared<Linear>(hidden, hidden, true, gen));
    fc3_ = register_module("fc3", std::make_shared<Linear>(hidden, 1, true, gen));
    if (v.grading == "none") return;
    GradingOptions o;
    o.kind = parse_kind(v.grading);
    o.dim = d;
    o.init_values = v.q_init;
    o.learnable = v.learnable && !v.folded;
    o.base = v.base;
    o.q_max = 32;
    grading_ = std::make_shared<GradingOperator>(o);
    if (v.folded && !gauge_)
      graded::scale_columns_({fc1_->weight()}, grading_->scale_values());
    else
      register_module("grading", grading_);
    folded_ = v.folded && !gauge_;
  }

  // x: (N, d) -> (N, 1)
  Tensor forward(const Tensor& x) const {
    if (gauge_) {
      // rho^degree net(rho^-1 * x): weighted-homogeneous of the degree under the grades' action.
      Tensor q = reshape(grading_->grades(x.dtype(), x.device()), {d_});
      Tensor rho = graded::gauge_2_mean(x, q);
      return exp(log(rho) * degree_) * net(graded::normalise_by_gauge(x, rho, q));
    }
    return net(grading_ && !folded_ ? grading_->apply(x) : x);
  }
  const std::shared_ptr<GradingOperator>& grading() const { return grading_; }

 private:
  Tensor net(const Tensor& x) const {
    return fc3_->forward(silu(fc2_->forward(silu(fc1_->forward(x)))));
  }
  std::shared_ptr<Linear> fc1_, fc2_, fc3_;
  std::shared_ptr<GradingOperator> grading_;
  bool gauge_, folded_ = false;
  double degree_;
  int64_t d_;
};

}  // namespace

TaskResult run_polynomial(const PolynomialTask& task, const PolynomialVariant& v,
                          const TaskTraining& t) {
  const int64_t d = static_cast<int64_t>(task.weights.size());
  std::vector<std::vector<int64_t>> monos;
  std::vector<int64_t> a(static_cast<size_t>(d), 0);
  monomials(task.weights, task.degree, 0, a, 0.0, monos);
  GRADUS_CHECK(!monos.empty(), "task_options.degree",
               "no monomial prod x_i^a_i has sum a_i w_i = {} for the weights {}", task.degree,
               fmt::join(task.weights, ", "));
  Rng data(task.data_seed);
  std::normal_distribution<double> normal;
  std::vector<double> coef(monos.size());
  for (double& c : coef) c = normal(data);
  auto sample = [&](int64_t n, std::vector<double>& xs, std::vector<double>& ys) {
    xs.resize(static_cast<size_t>(n * d));
    ys.resize(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) {
      const double lambda = std::exp(uniform(data, -1, 1) * std::log(task.spread));
      for (int64_t i = 0; i < d; ++i)
        xs[r * d + i] = std::pow(lambda, task.weights[i]) * uniform(data, -1, 1);
      double y = 0;
      for (size_t m = 0; m < monos.size(); ++m) {
        double term = coef[m];
        for (int64_t i = 0; i < d; ++i)
          term *= std::pow(xs[r * d + i], static_cast<double>(monos[m][i]));
        y += term;
      }
      ys[r] = y;
    }
  };
  std::vector<double> xtr, ytr, xte, yte;
  sample(task.train_size, xtr, ytr);
  sample(task.test_size, xte, yte);
  auto variance = [](const std::vector<double>& y) {
    double m = 0, s = 0;
    for (double v : y) m += v / static_cast<double>(y.size());
    for (double v : y) s += (v - m) * (v - m) / static_cast<double>(y.size());
    return s;
  };
  const double var_train = variance(ytr), var_test = variance(yte);
  Tensor Xtr = Tensor::from_vector(xtr, {task.train_size, d}, DType::f32);
  Tensor Ytr = Tensor::from_vector(ytr, {task.train_size, 1}, DType::f32);

  Generator gen(t.seed);
  RegressionNet net(d, task.hidden, v, task.degree, gen);
  auto opt = make_optimizer(net, {}, t);
  Rng batches(t.seed * 7919 + 17);
  std::uniform_int_distribution<int64_t> pick(0, task.train_size - 1);
  train(*opt, t, [&](int64_t) {
    std::vector<double> idx(static_cast<size_t>(t.batch_size));
    for (double& i : idx) i = static_cast<double>(pick(batches));
    Tensor index = raw_to_dtype(Tensor::from_vector(idx, {t.batch_size}, DType::f64), DType::i64);
    Tensor x = index_select(Xtr, 0, index), y = index_select(Ytr, 0, index);
    return mean(square(net.forward(x) - y)) / var_train;
  });

  TaskResult r;
  {
    NoGradGuard no_grad;
    Tensor pred = net.forward(Tensor::from_vector(xte, {task.test_size, d}, DType::f32));
    std::vector<double> p = pred.to_vector();
    double se = 0;
    for (size_t i = 0; i < p.size(); ++i) se += (p[i] - yte[i]) * (p[i] - yte[i]);
    r.metrics["test_nmse"] = se / static_cast<double>(p.size()) / var_test;
  }
  if (net.grading() && (v.learnable || v.model == "gauge") && !v.folded) {
    const std::vector<double> q = net.grading()->grade_values();
    r.metrics["corr_q_w"] = pearson(q, task.weights);
    r.extra["q"] = q;
  }
  return r;
}

// ---- multi-scale sequences ----------------------------------------------------------------------

namespace {

// B sequences of T + 1 steps of K channels, (B, T + 1, K) row-major: channel i is a sum of three
// sinusoids with periods 2^scales_i x U(3, 6) and random phases and amplitudes, plus noise.
std::vector<double> multiscale_batch(const MultiscaleTask& task, Rng& rng, int64_t B,
                                     int64_t steps) {
  const int64_t K = static_cast<int64_t>(task.scales.size());
  std::vector<double> out(static_cast<size_t>(B * steps * K), 0.0);
  std::normal_distribution<double> noise(0.0, task.noise);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < K; ++i) {
      const double tau = std::pow(2.0, task.scales[i]);
      double amp[3], period[3], phase[3], total = 0;
      for (int k = 0; k < 3; ++k) {
        amp[k] = uniform(rng, 0.3, 1.0);
        period[k] = tau * uniform(rng, 3.0, 6.0);
        phase[k] = uniform(rng, 0, 2 * std::numbers::pi);
        total += amp[k];
      }
      for (int64_t t = 0; t < steps; ++t) {
        double v = 0;
        for (int k = 0; k < 3; ++k)
          v += amp[k] / total *
               std::sin(2 * std::numbers::pi * static_cast<double>(t) / period[k] + phase[k]);
        out[static_cast<size_t>((b * steps + t) * K + i)] = v + noise(rng);
      }
    }
  return out;
}

// Inputs (B, T, K) and targets (B, T, K): the steps 0..T-1 and 1..T of a batch.
std::pair<Tensor, Tensor> split_next(const std::vector<double>& seq, int64_t B, int64_t T,
                                     int64_t K) {
  Tensor all = Tensor::from_vector(seq, {B, T + 1, K}, DType::f32);
  return {raw_contiguous(raw_slice(all, 1, 0, T)), raw_contiguous(raw_slice(all, 1, 1, T + 1))};
}

}  // namespace

TaskResult run_multiscale(const MultiscaleTask& task, const ModelConfig& model,
                          const LossSpec& loss, const TaskTraining& t) {
  const int64_t K = static_cast<int64_t>(task.scales.size()), T = task.context;
  GRADUS_CHECK(T <= model.max_position_embeddings, "task_options.context",
               "expected at most model.max_position_embeddings ({}), found {}",
               model.max_position_embeddings, T);
  Rng test_rng(task.data_seed);
  auto [test_x, test_y] = split_next(multiscale_batch(task, test_rng, task.test_sequences, T + 1),
                                     task.test_sequences, T, K);
  Generator gen(t.seed);
  graded::SequenceModel net(model, K, K, gen);
  // The loss grades start at the prior q0_i = scales_i + 1 (so that LGT's are >= 1).
  std::vector<double> q0;
  for (double s : task.scales) q0.push_back(s + 1);
  std::shared_ptr<GradingOperator> lg = loss_grading(loss, q0);
  auto objective = [&](const Tensor& pred, const Tensor& target, bool graded) {
    if (!graded || !lg) return mean(square(pred - target));
    Tensor w = graded::loss_weights(*lg, pred.dtype(), pred.device(), loss.detach);
    Tensor l = graded::graded_mse(pred, target, w);
    if (loss.prior_weight > 0) l = l + graded::grade_prior(*lg, q0, loss.prior_weight);
    return l;
  };
  auto opt = make_optimizer(net, lg ? lg->parameters() : std::vector<Tensor>{}, t);
  Rng batches(t.seed * 7919 + 17);
  train(*opt, t, [&](int64_t) {
    auto [x, y] =
        split_next(multiscale_batch(task, batches, t.batch_size, T + 1), t.batch_size, T, K);
    return objective(net.forward(x), y, true);
  });

  TaskResult r;
  Tensor pred;
  {
    NoGradGuard no_grad;
    net.eval();
    pred = net.forward(test_x);
  }
  const std::vector<double> p = pred.to_vector(), y = test_y.to_vector();
  std::vector<double> per(static_cast<size_t>(K), 0.0);
  for (size_t j = 0; j < p.size(); ++j) per[j % K] += (p[j] - y[j]) * (p[j] - y[j]);
  double total = 0;
  for (int64_t i = 0; i < K; ++i) {
    per[i] /= static_cast<double>(p.size() / K);
    total += per[i] / static_cast<double>(K);
    r.metrics[fmt::format("mse_ch{}", i)] = per[i];
  }
  r.metrics["test_mse"] = total;
  r.metrics["kappa"] = max_kappa(net);
  if (lg) {
    // An init-capture: clang before 16 cannot capture a structured binding.
    r.metrics["grad_ratio"] = gradient_ratio(pred, [&, &ty = test_y](const Tensor& q, bool graded) {
      return objective(q, ty, graded);
    });
    r.metrics["loss_kappa"] = lg->kappa();
    r.extra["loss_q"] = lg->grade_values();
  }
  if (json g = graded::grading_report(net, true); !g.is_null()) r.extra["grading"] = g;
  return r;
}

// ---- bracket-depth tagging ---------------------------------------------------------------------

namespace {

// B prefixes of Dyck words over `types` bracket kinds: tokens (B, L) (2k opens kind k, 2k + 1
// closes it) and the depth after each token (B, L).
void bracket_batch(const BracketsTask& task, Rng& rng, int64_t B, std::vector<double>& tokens,
                   std::vector<double>& depths) {
  tokens.assign(static_cast<size_t>(B * task.length), 0.0);
  depths.assign(static_cast<size_t>(B * task.length), 0.0);
  std::uniform_int_distribution<int64_t> kind(0, task.types - 1);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> stack;
    for (int64_t t = 0; t < task.length; ++t) {
      const int64_t depth = static_cast<int64_t>(stack.size());
      const bool open =
          depth == 0 || (depth < task.max_depth && uniform(rng, 0, 1) < task.open_prob);
      int64_t token;
      if (open) {
        stack.push_back(kind(rng));
        token = 2 * stack.back();
      } else {
        token = 2 * stack.back() + 1;
        stack.pop_back();
      }
      tokens[static_cast<size_t>(b * task.length + t)] = static_cast<double>(token);
      depths[static_cast<size_t>(b * task.length + t)] = static_cast<double>(stack.size());
    }
  }
}

Tensor as_i64(const std::vector<double>& v, const Shape& shape) {
  return raw_to_dtype(Tensor::from_vector(v, shape, DType::f64), DType::i64);
}

}  // namespace

TaskResult run_brackets(const BracketsTask& task, const ModelConfig& model, const LossSpec& loss,
                        const TaskTraining& t) {
  const int64_t L = task.length, classes = task.max_depth + 1;
  GRADUS_CHECK(L <= model.max_position_embeddings, "task_options.length",
               "expected at most model.max_position_embeddings ({}), found {}",
               model.max_position_embeddings, L);
  ModelConfig config = model;
  config.vocab_size = 2 * task.types;
  Rng test_rng(task.data_seed);
  std::vector<double> test_tok, test_depth;
  bracket_batch(task, test_rng, task.test_sequences, test_tok, test_depth);
  Tensor test_x = as_i64(test_tok, {task.test_sequences, L});
  Tensor test_y = as_i64(test_depth, {task.test_sequences, L});
  Generator gen(t.seed);
  graded::SequenceModel net(config, 0, classes, gen);
  // The loss grades of the depth classes start at q0_c = c + 1.
  std::vector<double> q0;
  for (int64_t c = 0; c < classes; ++c) q0.push_back(static_cast<double>(c + 1));
  std::shared_ptr<GradingOperator> lg = loss_grading(loss, q0);
  auto objective = [&](const Tensor& logits, const Tensor& target, bool graded) {
    if (!graded || !lg) return cross_entropy(logits, target);
    Tensor w = graded::loss_weights(*lg, logits.dtype(), logits.device(), loss.detach);
    Tensor l = graded::graded_cross_entropy(logits, target, w);
    if (loss.prior_weight > 0) l = l + graded::grade_prior(*lg, q0, loss.prior_weight);
    return l;
  };
  auto opt = make_optimizer(net, lg ? lg->parameters() : std::vector<Tensor>{}, t);
  Rng batches(t.seed * 7919 + 17);
  train(*opt, t, [&](int64_t) {
    std::vector<double> tok, depth;
    bracket_batch(task, batches, t.batch_size, tok, depth);
    return objective(net.forward(as_i64(tok, {t.batch_size, L})), as_i64(depth, {t.batch_size, L}),
                     true);
  });

  TaskResult r;
  Tensor logits;
  {
    NoGradGuard no_grad;
    net.eval();
    logits = net.forward(test_x);
  }
  const std::vector<double> lv = logits.to_vector();
  int64_t right = 0, deep = 0, deep_right = 0, seq_right = 0;
  for (int64_t b = 0; b < task.test_sequences; ++b) {
    bool all = true;
    for (int64_t t2 = 0; t2 < L; ++t2) {
      const size_t row = static_cast<size_t>((b * L + t2) * classes);
      const int64_t guess =
          std::max_element(lv.begin() + row, lv.begin() + row + classes) - (lv.begin() + row);
      const int64_t truth = static_cast<int64_t>(test_depth[b * L + t2]);
      right += guess == truth;
      all &= guess == truth;
      if (2 * truth >= task.max_depth) deep += 1, deep_right += guess == truth;
    }
    seq_right += all;
  }
  r.metrics["token_acc"] = static_cast<double>(right) / static_cast<double>(test_tok.size());
  r.metrics["seq_acc"] = static_cast<double>(seq_right) / static_cast<double>(task.test_sequences);
  r.metrics["deep_acc"] =
      deep > 0 ? static_cast<double>(deep_right) / static_cast<double>(deep) : 0;
  r.metrics["kappa"] = max_kappa(net);
  if (lg) {
    r.metrics["grad_ratio"] = gradient_ratio(
        logits, [&](const Tensor& q, bool graded) { return objective(q, test_y, graded); });
    r.metrics["loss_kappa"] = lg->kappa();
  }
  if (json g = graded::grading_report(net, true); !g.is_null()) r.extra["grading"] = g;
  return r;
}

}  // namespace gradus::experiments
