// CPU dropout kernel (see kernels/dropout.h for the stream layout and the keep rule).
#include "kernels/dropout.h"

#include <algorithm>
#include <cstdint>

#include "core/philox.h"
#include "kernels/registry.h"

namespace gradus::kernels {
namespace cpu {
namespace {

// One Philox block yields the uniforms of 4 consecutive elements (lane = i % 4), exactly as
// philox_uniform_f32(seed, offset, i) does, so each block is evaluated once.
template <class T>
void dropout(const void* xv, void* outv, int64_t n, uint64_t seed, uint64_t offset, double p) {
  const T* x = static_cast<const T*>(xv);
  T* out = static_cast<T*>(outv);
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  const int64_t blocks = (n + 3) / 4;
#pragma omp parallel for if (n > (1 << 15)) schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const PhiloxBlock r = philox_block(seed, offset + static_cast<uint64_t>(b));
    const int64_t end = std::min<int64_t>(4, n - 4 * b);
    for (int64_t lane = 0; lane < end; ++lane) {
      const int64_t i = 4 * b + lane;
      const bool keep = static_cast<double>(philox_to_unit_float(r.v[lane])) >= p;
      out[i] = keep ? x[i] * scale : T(0);
    }
  }
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kDropout, dropout);

}  // namespace cpu
}  // namespace gradus::kernels
