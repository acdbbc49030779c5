// Element-by-element comparison of two tensors of one shape (any dtype, layout or device copy on
// the CPU), for the tests of fused ops against their composites.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/tensor.h"

namespace gradus::testing {

// max |a - b| over the elements. A NaN on one side only gives infinity (a failure against any
// tolerance); NaN on both sides counts as equal with nan_equal (a loss that is 0 / 0 in both),
// otherwise as infinity too.
inline double max_abs_difference(const Tensor& a, const Tensor& b, bool nan_equal = false) {
  const std::vector<double> x = raw_to_dtype(raw_contiguous(a), DType::f64).to_vector();
  const std::vector<double> y = raw_to_dtype(raw_contiguous(b), DType::f64).to_vector();
  EXPECT_EQ(x.size(), y.size());
  double worst = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    const bool nx = std::isnan(x[i]), ny = std::isnan(y[i]);
    if (nx && ny && nan_equal) continue;
    if (nx || ny) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, std::abs(x[i] - y[i]));
  }
  return worst;
}

}  // namespace gradus::testing
