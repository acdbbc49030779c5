#include "kernels/check.h"

#include <cmath>

#include "kernels/registry.h"

namespace gradus::kernels::cpu {

// x: (n,)
template <class T> int64_t count_nonfinite(const void* x_, int64_t n) {
  const T* x = static_cast<const T*>(x_);
  int64_t bad = 0;
#pragma omp parallel for reduction(+ : bad) if (n > (1 << 16)) schedule(static)
  for (int64_t i = 0; i < n; ++i) bad += std::isfinite(x[i]) ? 0 : 1;
  return bad;
}

GRADUS_REGISTER_CPU_KERNEL("count_nonfinite", count_nonfinite);

}  // namespace gradus::kernels::cpu
