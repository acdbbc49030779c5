// The graded loss [ours, after the grade-weighted losses of "Graded Neural Networks"]:
//   L = sum_i w_i l_i / sum_i w_i  +  alpha ||q - q0||^2
// over components i (output coordinates, classes or target positions), with w_i = s_i of a
// grading (LGT: q_i, EGT: lambda^q_i) and l_i the component's loss. The weights are detached from
// q by default: otherwise the optimiser lowers L by moving weight onto the easy components.
#pragma once

#include <vector>

#include "models/graded/grading.h"

namespace gradus::graded {

// Component weights from a grading with one row: s (K), detached unless `detach` is false.
Tensor loss_weights(const GradingOperator& grading, DType dtype, Device device, bool detach = true);

// Squared error per output coordinate, weighted: pred, target: (..., K), weights: (K)
// -> sum_k w_k mean_n (pred - target)^2_{n,k} / sum_k w_k. With equal weights: the plain MSE.
Tensor graded_mse(const Tensor& pred, const Tensor& target, const Tensor& weights);

// Cross-entropy weighted by the target's class: logits (..., V), targets (...) i64, weights (V)
// -> sum_n w_{y_n} ce_n / sum_n w_{y_n}. With equal weights: the plain mean cross-entropy.
Tensor graded_cross_entropy(const Tensor& logits, const Tensor& targets, const Tensor& weights);

// Per-position losses weighted by the position's grade: losses (..., T), weights (T).
Tensor graded_positions(const Tensor& losses, const Tensor& weights);

// alpha ||q - q0||^2 for a one-row grading's grades q (K) and a prior q0 (K); 0 when alpha is 0.
Tensor grade_prior(const GradingOperator& grading, const std::vector<double>& q0, double alpha,
                   DType dtype = DType::f32);

}  // namespace gradus::graded
