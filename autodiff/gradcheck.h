// Gradient checking against central finite differences (as torch.autograd.gradcheck): in f64,
// eps 1e-6, |analytic - numeric| <= atol + rtol |numeric| with atol 1e-5, rtol 1e-3.
//
// The scalar checked is L = sum(fn(inputs) * v) for a random upstream gradient v, so every output
// element is weighted differently. Every input that requires gradients is checked element by element;
// inputs may be non-contiguous views (a transposed or sliced leaf), but not stride-0 expansions
// (broadcast inside fn instead, which is what checks the broadcast gradient reduction).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace gradus {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  uint64_t seed = 0;               // for the upstream gradient v
  bool check_accumulation = true;  // two backward passes must give twice the gradient
  bool poison = true;              // fill new tensors with NaN while checking
};

struct GradcheckResult {
  bool ok = true;
  std::string message;          // empty when ok; otherwise the first failures, with indices
  double max_abs_error = 0.0;   // over every checked element
  int64_t elements_checked = 0;
};

using GradcheckFn = std::function<Tensor(const std::vector<Tensor>&)>;

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

}  // namespace gradus
