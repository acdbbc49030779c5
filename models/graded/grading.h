// The grading operator of graded transformers (Shaska, "Graded Transformers", arXiv 2507.20108):
// a diagonal scaling Phi = diag(s) of a graded space V_q with grades q = (q_0 .. q_{d-1}).
//   LGT (linear):      s_i = q_i,          q_i >= q_min > 0 so that Phi stays invertible
//   EGT (exponential): s_i = lambda^q_i = exp(q_i ln lambda), lambda >= 1
// Identity settings (the ungraded model, bit for bit): LGT with q = 1, EGT with q = 0 or lambda
// = 1.
//
// Ours (docs/graded.md says which parts are the paper's): grades fixed or learnable,
//   q_i = min(q_min + softplus(theta_i), q_max)                       (learnable)
//   q_i = min(q_min + sum_{j<=i} softplus(delta_j), q_max)            (learnable, ordering prior)
//   lambda = 1 + softplus(rho)                                        (learnable base, EGT)
//   s <- s / sqrt(mean_i s_i^2)                                       (norm "rms", per row)
// An operator holds `rows` independent grade vectors of `dim` channels: one row for a layer, or one
// per attention head.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/nn/config.h"
#include "models/nn/module.h"

namespace gradus::graded {

enum class GradingKind { linear, exponential };  // LGT, EGT
const char* kind_name(GradingKind kind);         // "lgt", "egt"

struct GradingOptions {
  GradingKind kind = GradingKind::linear;
  int64_t rows = 1;  // independent grade vectors (1, or the number of heads)
  int64_t dim = 1;   // channels per vector
  GradeInit init;    // identity (1 for LGT, 0 for EGT), a constant, or a ramp over the channels
  std::vector<double> init_values;  // when not empty: the initial grades themselves (dim values)
  bool learnable = false;
  double q_min = 1e-3, q_max = 8.0;
  double base = 2.0;  // lambda (EGT)
  bool learn_base = false;
  bool monotone = false;  // ordering prior (learnable grades only)
  bool rms_norm = false;

  // The options of a ModelConfig's graded_* keys for one site.
  static GradingOptions from_config(const ModelConfig& config, GradingKind kind, int64_t rows,
                                    int64_t dim);
  // The initial grade of channel i (the same in every row).
  double initial_grade(int64_t i) const;
  // Throws gradus::Error naming the option (as its model.graded_* key), what was expected and
  // found.
  void validate(const std::string& where) const;
};

// Phi as a module. Parameters (only when learnable): "theta" (rows, dim), or "delta" (rows, dim)
// with the ordering prior; "rho" (1) with a learnable base. Nothing is drawn from a generator:
// the initial grades are the options' init, so adding an operator never shifts other weights'
// initialisation.
class GradingOperator : public Module {
 public:
  explicit GradingOperator(GradingOptions options);

  // q: (rows, dim), differentiable in the parameters; fixed grades are constants.
  Tensor grades(DType dtype = DType::f32, Device device = kCPU) const;
  // s: (rows, dim), the diagonal of Phi actually applied (clamped, normalised).
  Tensor scales(DType dtype = DType::f32, Device device = kCPU) const;
  // x: (..., dim) with rows == 1, or (..., rows, dim): x Phi.
  Tensor apply(const Tensor& x) const;

  // Current values without the tape, in f64, row-major (rows x dim).
  std::vector<double> grade_values() const;
  std::vector<double> scale_values() const;
  double base_value() const;  // lambda (EGT), 1 for LGT
  double kappa() const;       // s_max / s_min over every row: the condition number of Phi
  double s_max() const;

  const GradingOptions& options() const { return options_; }
  GradingKind kind() const { return options_.kind; }
  int64_t rows() const { return options_.rows; }
  int64_t dim() const { return options_.dim; }
  bool learnable() const { return options_.learnable || options_.learn_base; }
  // Every grade fixed and s == 1 exactly: the operator is the identity.
  bool is_identity() const;

 private:
  // A constant tensor of `values`, made once per (name, dtype, device).
  Tensor constant(const std::string& name, const std::vector<double>& values, const Shape& shape,
                  DType dtype, Device device) const;
  // A parameter in the caller's dtype and on its device (differentiable).
  Tensor parameter_as(const Tensor& p, DType dtype, Device device) const;

  GradingOptions options_;
  std::vector<double> fixed_q_;  // the initial grades (rows x dim)
  Tensor theta_, delta_, rho_;   // learnable parameters (undefined when not used)
  // Fixed scales and the prior's triangular matrix, per (dtype, device) in use.
  mutable std::map<std::string, Tensor> cache_;
};

// The grading operators of a module tree with their dotted paths, depth first.
std::vector<std::pair<std::string, std::shared_ptr<GradingOperator>>> find_gradings(
    const Module& root);
// Every parameter that belongs to a grading operator (for their own optimiser group).
std::vector<Tensor> grade_parameters(const Module& root);

// softplus^{-1}(y) = log(exp(y) - 1) for y > 0, stable for large and small y.
double inverse_softplus(double y);

}  // namespace gradus::graded
