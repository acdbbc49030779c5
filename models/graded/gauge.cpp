#include "models/graded/gauge.h"

#include <algorithm>
#include <cmath>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "core/error.h"

namespace gradus::graded {

namespace {
void check_sizes(const std::vector<double>& q, const std::vector<double>& x, const char* where) {
  GRADUS_CHECK(q.size() == x.size() && !q.empty(), where,
               "expected grades and a point of one size, found {} and {}", q.size(), x.size());
}
}  // namespace

std::vector<double> graded_action(double lambda, const std::vector<double>& q,
                                  const std::vector<double>& x) {
  check_sizes(q, x, "graded_action");
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = std::pow(lambda, q[i]) * x[i];
  return out;
}

double gauge_inf(const std::vector<double>& q, const std::vector<double>& x) {
  check_sizes(q, x, "gauge_inf");
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::pow(std::fabs(x[i]), 1.0 / q[i]));
  return m;
}

double gauge_2(const std::vector<double>& q, const std::vector<double>& x) {
  check_sizes(q, x, "gauge_2");
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += std::pow(std::fabs(x[i]), 2.0 / q[i]);
  return std::sqrt(s);
}

Tensor gauge_2_mean(const Tensor& x, const Tensor& q, double eps) {
  GRADUS_CHECK(x.dim() == 2 && q.dim() == 1 && q.size(0) == x.size(1), "gauge_2_mean",
               "expected x (N, d) and q (d), found {} and {}", x.describe(), q.describe());
  // |x_i|^{2/q_i} = exp((2/q_i) log(|x_i| + eps))
  Tensor terms = exp(log(abs(x) + eps) * (2.0 / q));
  return sqrt(mean(terms, {-1}, true));
}

Tensor normalise_by_gauge(const Tensor& x, const Tensor& rho, const Tensor& q) {
  // rho^{-q_i} x_i = exp(-q_i log rho) x_i
  return x * exp(-(log(rho) * q));
}

}  // namespace gradus::graded
