// The softmax of one row of scores in place, as the fused attention and PNA kernels use it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cpu/vec_math.h"

namespace gradus::kernels::cpu {

// row[0:n] = softmax(row[0:n]) (the row maximum subtracted first, so large scores stay finite);
// returns the row's log-sum-exp. n >= 1.
template <class T>
T softmax_row_in_place(T* row, int64_t n) {
  T m = row[0];
  for (int64_t j = 1; j < n; ++j) m = std::max(m, row[j]);
  T sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    row[j] = vexp(row[j] - m);
    sum += row[j];
  }
  const T inv = T(1) / sum;
  for (int64_t j = 0; j < n; ++j) row[j] *= inv;
  return m + std::log(sum);
}

}  // namespace gradus::kernels::cpu
