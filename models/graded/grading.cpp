#include "models/graded/grading.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/view.h"
#include "autodiff/tape.h"
#include "core/error.h"

namespace gradus::graded {

const char* kind_name(GradingKind kind) { return kind == GradingKind::linear ? "lgt" : "egt"; }

double inverse_softplus(double y) {
  // log(exp(y) - 1) = y + log(1 - exp(-y)); expm1 keeps small y accurate.
  return y > 20 ? y + std::log1p(-std::exp(-y)) : std::log(std::expm1(y));
}

GradingOptions GradingOptions::from_config(const ModelConfig& c, GradingKind kind, int64_t rows,
                                           int64_t dim) {
  GradingOptions o;
  o.kind = kind;
  o.rows = rows;
  o.dim = dim;
  o.init = parse_grade_init(c.graded_q_init);
  o.learnable = c.graded_learnable;
  o.q_min = c.graded_q_min;
  o.q_max = c.graded_q_max;
  o.base = c.graded_base;
  o.learn_base = c.graded_learn_base;
  o.monotone = c.graded_monotone;
  o.rms_norm = c.graded_norm == "rms";
  return o;
}

double GradingOptions::initial_grade(int64_t i) const {
  if (!init_values.empty()) return init_values[static_cast<size_t>(i)];
  if (init.identity) return kind == GradingKind::linear ? 1.0 : 0.0;
  return init.at(i, dim);
}

void GradingOptions::validate(const std::string& where) const {
  GRADUS_CHECK(rows >= 1 && dim >= 1, where,
               "a grading needs rows >= 1 and dim >= 1, found {} x {}", rows, dim);
  GRADUS_CHECK(init_values.empty() || static_cast<int64_t>(init_values.size()) == dim, where,
               "expected {} initial grades, found {}", dim, init_values.size());
  GRADUS_CHECK(std::isfinite(q_min) && q_min > 0, where,
               "model.graded_q_min: expected a positive number, found {}", q_min);
  GRADUS_CHECK(std::isfinite(q_max) && q_max > q_min, where,
               "model.graded_q_max: expected a number above graded_q_min ({}), found {}", q_min,
               q_max);
  GRADUS_CHECK(std::isfinite(base) && base >= 1, where,
               "model.graded_base: expected a number >= 1, found {}", base);
  GRADUS_CHECK(!learn_base || kind == GradingKind::exponential, where,
               "model.graded_learn_base: the base lambda belongs to egt; found it set for {}",
               kind_name(kind));
  GRADUS_CHECK(
      !learn_base || base > 1, where,
      "model.graded_learn_base: lambda = 1 + softplus(rho) needs graded_base > 1, found {}", base);
  GRADUS_CHECK(!monotone || learnable, where,
               "model.graded_monotone: the ordering prior parametrises learnable grades; set "
               "model.graded_learnable too");
  // LGT scales by q itself, so q < q_min would make Phi (nearly) singular; EGT's grades are >= 0.
  const double lowest = kind == GradingKind::linear ? q_min : 0.0;
  double previous = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < dim; ++i) {
    const double q = initial_grade(i);
    GRADUS_CHECK(q >= lowest && q <= q_max, where,
                 "model.graded_q_init: expected initial {} grades in [{}, {}] (graded_q_min, "
                 "graded_q_max), found {} at channel {}",
                 kind_name(kind), lowest, q_max, q, i);
    GRADUS_CHECK(!learnable || q > q_min, where,
                 "model.graded_q_init: learnable grades are q_min + softplus(theta) > graded_q_min "
                 "({}), so they cannot start at {} (channel {}); start them above it, e.g. "
                 "\"0.01..1\"",
                 q_min, q, i);
    GRADUS_CHECK(!monotone || q > previous, where,
                 "model.graded_monotone: the ordering prior needs strictly increasing initial "
                 "grades (a ramp \"A..B\" with A < B), found {} after {} at channel {}",
                 q, previous, i);
    previous = q;
  }
}

GradingOperator::GradingOperator(GradingOptions options) : options_(std::move(options)) {
  options_.validate("GradingOperator");
  const int64_t R = options_.rows, D = options_.dim;
  fixed_q_.resize(static_cast<size_t>(R * D));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t i = 0; i < D; ++i)
      fixed_q_[static_cast<size_t>(r * D + i)] = options_.initial_grade(i);
  if (options_.learnable) {
    std::vector<double> raw(fixed_q_.size());
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < D; ++i) {
        const size_t k = static_cast<size_t>(r * D + i);
        // theta: q = q_min + softplus(theta); delta: the increments of the monotone sum.
        const double below =
            options_.monotone ? (i == 0 ? options_.q_min : fixed_q_[k - 1]) : options_.q_min;
        raw[k] = inverse_softplus(fixed_q_[k] - below);
      }
    Tensor t = Tensor::from_vector(raw, {R, D}, DType::f32);
    if (options_.monotone)
      delta_ = register_parameter("delta", t);
    else
      theta_ = register_parameter("theta", t);
  }
  if (options_.learn_base)
    rho_ = register_parameter(
        "rho", Tensor::from_vector(std::vector<double>{inverse_softplus(options_.base - 1.0)}, {1},
                                   DType::f32));
}

Tensor GradingOperator::constant(const std::string& name, const std::vector<double>& values,
                                 const Shape& shape, DType dtype, Device device) const {
  const std::string key = fmt::format("{}/{}/{}", name, dtype_name(dtype), device.str());
  auto it = cache_.find(key);
  if (it != cache_.end()) return it->second;
  Tensor t = raw_to_device(Tensor::from_vector(values, shape, dtype), device);
  cache_.emplace(key, t);
  return t;
}

Tensor GradingOperator::parameter_as(const Tensor& p, DType dtype, Device device) const {
  return to_device(to_dtype(p, dtype), device);
}

Tensor GradingOperator::grades(DType dtype, Device device) const {
  const int64_t R = options_.rows, D = options_.dim;
  if (!options_.learnable) return constant("q", fixed_q_, {R, D}, dtype, device);
  Tensor q;
  if (options_.monotone) {
    // q_i = q_min + sum_{j<=i} softplus(delta_j): a product with the upper-triangular ones.
    std::vector<double> u(static_cast<size_t>(D * D), 0.0);
    for (int64_t j = 0; j < D; ++j)
      for (int64_t i = j; i < D; ++i) u[static_cast<size_t>(j * D + i)] = 1.0;
    Tensor upper = constant("upper", u, {D, D}, dtype, device);
    q = matmul(softplus(parameter_as(delta_, dtype, device)), upper) + options_.q_min;
  } else {
    q = softplus(parameter_as(theta_, dtype, device)) + options_.q_min;
  }
  return clamp(q, options_.q_min, options_.q_max);
}

Tensor GradingOperator::scales(DType dtype, Device device) const {
  if (!learnable()) {
    // Fixed: computed once in double (scale_values), then rounded to the dtype.
    return constant("s", scale_values(), {options_.rows, options_.dim}, dtype, device);
  }
  Tensor q = grades(dtype, device);
  Tensor s;
  if (options_.kind == GradingKind::linear) {
    s = q;
  } else if (options_.learn_base) {
    // lambda = 1 + softplus(rho): (1), broadcast over every grade.
    Tensor log_lambda = log(softplus(parameter_as(rho_, dtype, device)) + 1.0);
    s = exp(q * log_lambda);
  } else {
    s = exp(q * std::log(options_.base));
  }
  if (options_.rms_norm) s = s * rsqrt(mean(square(s), {-1}, true));
  return s;
}

Tensor GradingOperator::apply(const Tensor& x) const {
  const int64_t R = options_.rows, D = options_.dim;
  const bool ok = x.dim() >= 1 && x.size(-1) == D && (R == 1 || (x.dim() >= 2 && x.size(-2) == R));
  GRADUS_CHECK(ok, "GradingOperator::apply", "expected x of shape (..., {}) but found {}",
               R == 1 ? fmt::format("{}", D) : fmt::format("{}, {}", R, D), x.describe());
  Tensor s = scales(x.dtype(), x.device());
  return x * (R == 1 ? reshape(s, {D}) : s);
}

std::vector<double> GradingOperator::grade_values() const {
  if (!options_.learnable) return fixed_q_;
  NoGradGuard no_grad;
  return grades(DType::f64, kCPU).to_vector();
}

std::vector<double> GradingOperator::scale_values() const {
  if (learnable()) {
    NoGradGuard no_grad;
    return scales(DType::f64, kCPU).to_vector();
  }
  const int64_t R = options_.rows, D = options_.dim;
  std::vector<double> s(fixed_q_.size());
  for (size_t k = 0; k < s.size(); ++k)
    s[k] =
        options_.kind == GradingKind::linear ? fixed_q_[k] : std::pow(options_.base, fixed_q_[k]);
  if (options_.rms_norm) {
    for (int64_t r = 0; r < R; ++r) {
      double sum = 0;
      for (int64_t i = 0; i < D; ++i)
        sum += s[static_cast<size_t>(r * D + i)] * s[static_cast<size_t>(r * D + i)];
      const double inv = 1.0 / std::sqrt(sum / static_cast<double>(D));
      for (int64_t i = 0; i < D; ++i) s[static_cast<size_t>(r * D + i)] *= inv;
    }
  }
  return s;
}

double GradingOperator::base_value() const {
  if (options_.kind == GradingKind::linear) return 1.0;
  if (!options_.learn_base) return options_.base;
  NoGradGuard no_grad;
  return 1.0 + softplus(to_dtype(to_device(rho_, kCPU), DType::f64)).item();
}

double GradingOperator::s_max() const {
  std::vector<double> s = scale_values();
  return *std::max_element(s.begin(), s.end());
}

double GradingOperator::kappa() const {
  std::vector<double> s = scale_values();
  auto [lo, hi] = std::minmax_element(s.begin(), s.end());
  return *hi / *lo;
}

bool GradingOperator::is_identity() const {
  if (learnable()) return false;
  std::vector<double> s = scale_values();
  return std::all_of(s.begin(), s.end(), [](double v) { return v == 1.0; });
}

namespace {
void collect_gradings(const Module& m, const std::string& prefix,
                      std::vector<std::pair<std::string, std::shared_ptr<GradingOperator>>>& out) {
  for (const auto& [name, child] : m.named_children()) {
    std::string path = prefix.empty() ? name : prefix + "." + name;
    if (auto g = std::dynamic_pointer_cast<GradingOperator>(child)) out.emplace_back(path, g);
    collect_gradings(*child, path, out);
  }
}
}  // namespace

std::vector<std::pair<std::string, std::shared_ptr<GradingOperator>>> find_gradings(
    const Module& root) {
  std::vector<std::pair<std::string, std::shared_ptr<GradingOperator>>> out;
  collect_gradings(root, "", out);
  return out;
}

std::vector<Tensor> grade_parameters(const Module& root) {
  std::vector<Tensor> out;
  for (const auto& [path, g] : find_gradings(root))
    for (const Tensor& p : g->parameters()) out.push_back(p);
  return out;
}

}  // namespace gradus::graded
