// Homogeneous gauges of a graded space ("Graded Neural Networks", arXiv 2502.17751): with the
// scalar action lambda * x = (lambda^q_i x_i) (lambda > 0),
//   ||x||_{q,inf} = max_i |x_i|^{1/q_i}       ||x||_{q,2} = (sum_i |x_i|^{2/q_i})^{1/2}
// both scale exactly by lambda: ||lambda * x|| = lambda ||x||.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace gradus::graded {

// Plain f64 forms for the checks.
std::vector<double> graded_action(double lambda, const std::vector<double>& q,
                                  const std::vector<double>& x);
double gauge_inf(const std::vector<double>& q, const std::vector<double>& x);
double gauge_2(const std::vector<double>& q, const std::vector<double>& x);

// Differentiable forms, x: (N, d), q: (d) -> (N, 1). The mean rather than the sum inside the
// 2-gauge keeps it near 1 on the unit cube and scales the same way; `eps` is added to |x| so that
// the gradient in q stays finite at x_i = 0.
Tensor gauge_2_mean(const Tensor& x, const Tensor& q, double eps = 1e-6);
// (rho^{-1}) * x: the point of gauge 1 on x's orbit, x: (N, d), rho: (N, 1), q: (d).
Tensor normalise_by_gauge(const Tensor& x, const Tensor& rho, const Tensor& q);

}  // namespace gradus::graded
