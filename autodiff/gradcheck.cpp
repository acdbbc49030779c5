#include "autodiff/gradcheck.h"

#include <cmath>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/tape.h"
#include "core/random.h"

namespace gradus {

namespace {

struct PoisonScope {
  bool previous;
  explicit PoisonScope(bool on) : previous(poison_uninitialized()) { set_poison_uninitialized(on); }
  ~PoisonScope() { set_poison_uninitialized(previous); }
};

// Storage offsets of every logical element of t, row-major.
std::vector<int64_t> element_offsets(const Tensor& t) {
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(t.numel()));
  std::vector<int64_t> index(static_cast<size_t>(t.dim()), 0);
  for (int64_t n = 0; n < t.numel(); ++n) {
    int64_t off = t.offset();
    for (int64_t d = 0; d < t.dim(); ++d) off += index[d] * t.strides()[d];
    out.push_back(off);
    for (int64_t d = t.dim() - 1; d >= 0; --d) {
      if (++index[d] < t.shape()[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

double weighted_sum(const GradcheckFn& fn, const std::vector<Tensor>& inputs, const Tensor& v) {
  NoGradGuard no_grad;
  Tensor y = fn(inputs);
  return sum(mul(y, v)).item();
}

}  // namespace

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options) {
  GradcheckResult result;
  PoisonScope poison(options.poison);
  std::vector<size_t> checked;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (!t.defined() || !t.requires_grad()) continue;
    GRADUS_CHECK(t.dtype() == DType::f64 && t.device().is_cpu(), "gradcheck",
                 "input {} must be an f64 CPU tensor, found {}", i, t.describe());
    GRADUS_CHECK(t.is_leaf(), "gradcheck", "input {} must be a leaf ({})", i, t.describe());
    for (int64_t d = 0; d < t.dim(); ++d)
      GRADUS_CHECK(t.strides()[d] != 0 || t.shape()[d] <= 1, "gradcheck",
                   "input {} is a stride-0 expansion ({}); broadcast inside the function instead", i,
                   t.describe());
    checked.push_back(i);
  }
  GRADUS_CHECK(!checked.empty(), "gradcheck", "no input requires gradients");

  // Analytic gradients of L = sum(fn(x) * v).
  for (size_t i : checked) inputs[i].zero_grad();
  Tensor y = fn(inputs);
  GRADUS_CHECK(y.requires_grad(), "gradcheck", "the output {} does not require gradients",
               y.describe());
  Generator gen(options.seed ^ 0x9e3779b97f4a7c15ull);
  Tensor v = rand_normal(y.shape(), gen, DType::f64);
  backward(sum(mul(y, v)));
  std::vector<Tensor> analytic;
  for (size_t i : checked) {
    Tensor g = inputs[i].grad();
    if (!g.defined()) {
      g = Tensor::zeros(inputs[i].shape(), DType::f64);  // no path from this input: gradient 0
    }
    analytic.push_back(raw_clone(g));
  }

  // Numeric gradients, element by element.
  int failures = 0;
  for (size_t k = 0; k < checked.size(); ++k) {
    const Tensor& x = inputs[checked[k]];
    double* base = static_cast<double*>(x.storage()->data());
    std::vector<int64_t> offsets = element_offsets(x);
    std::vector<double> a = analytic[k].to_vector();
    for (size_t e = 0; e < offsets.size(); ++e) {
      double saved = base[offsets[e]];
      base[offsets[e]] = saved + options.eps;
      double fp = weighted_sum(fn, inputs, v);
      base[offsets[e]] = saved - options.eps;
      double fm = weighted_sum(fn, inputs, v);
      base[offsets[e]] = saved;
      double numeric = (fp - fm) / (2.0 * options.eps);
      double err = std::abs(a[e] - numeric);
      ++result.elements_checked;
      if (std::isfinite(err)) result.max_abs_error = std::max(result.max_abs_error, err);
      if (!(err <= options.atol + options.rtol * std::abs(numeric))) {
        result.ok = false;
        if (failures++ < 5)
          result.message += fmt::format("input {} element {}: analytic {:.10g} vs numeric {:.10g}\n",
                                        checked[k], e, a[e], numeric);
      }
    }
  }
  if (failures > 5) result.message += fmt::format("... {} mismatches in all\n", failures);

  // Accumulation: two passes must add up to twice the gradient.
  if (options.check_accumulation && result.ok) {
    for (size_t i : checked) inputs[i].zero_grad();
    backward(sum(mul(fn(inputs), v)));
    backward(sum(mul(fn(inputs), v)));
    for (size_t k = 0; k < checked.size(); ++k) {
      Tensor g = inputs[checked[k]].grad();
      std::vector<double> twice = g.defined() ? g.to_vector()
                                              : std::vector<double>(analytic[k].numel(), 0.0);
      std::vector<double> once = analytic[k].to_vector();
      for (size_t e = 0; e < once.size(); ++e) {
        if (std::abs(twice[e] - 2.0 * once[e]) > 1e-10 * (1.0 + std::abs(once[e]))) {
          result.ok = false;
          result.message += fmt::format(
              "input {} element {}: two backward passes gave {:.10g}, expected 2 x {:.10g}\n",
              checked[k], e, twice[e], once[e]);
          break;
        }
      }
    }
  }
  for (size_t i : checked) inputs[i].zero_grad();
  return result;
}

}  // namespace gradus
