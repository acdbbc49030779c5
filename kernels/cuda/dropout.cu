// CUDA dropout kernel (see kernels/dropout.h for the stream layout and the keep rule; mirrors
// kernels/cpu/dropout.cpp). Philox is counter-based, so every thread draws its own block and the
// mask is bit for bit the CPU's for the same (seed, offset).
#include <algorithm>
#include <cstdint>

#include "core/philox.h"
#include "kernels/cuda/common.cuh"
#include "kernels/dropout.h"

namespace gradus::cuda {
namespace {

// x, out: (n,) contiguous; out may alias x (each element is read, then written, by one thread).
// Thread b evaluates Philox block (offset + b) once and uses its 4 lanes for elements 4b .. 4b+3,
// as philox_uniform_f32(seed, offset, i) does. The uniform is compared with p in double.
template <class T>
__global__ void dropout_kernel(const T* x, T* out, int64_t n, uint64_t seed, uint64_t offset, double p,
                               T scale) {
  const int64_t blocks = (n + 3) / 4;
  GRADUS_CUDA_LOOP(b, blocks) {
    const PhiloxBlock r = philox_block(seed, offset + static_cast<uint64_t>(b));
    const int64_t end = n - 4 * b < 4 ? n - 4 * b : 4;
#pragma unroll
    for (int64_t lane = 0; lane < 4; ++lane) {
      if (lane >= end) break;
      const int64_t i = 4 * b + lane;
      const bool keep = static_cast<double>(philox_to_unit_float(r.v[lane])) >= p;
      out[i] = keep ? from_acc<T>(to_acc(x[i]) * to_acc(scale)) : from_acc<T>(acc_t<T>(0));
    }
  }
}

template <class T>
void dropout(const void* xv, void* outv, int64_t n, uint64_t seed, uint64_t offset, double p) {
  if (n == 0) return;
  // The scale is computed in double and rounded once to the element type, as on the CPU.
  const double scale_d = 1.0 / (1.0 - p);
  T scale;
  if constexpr (std::is_same_v<T, bf16>) scale = __double2bfloat16(scale_d);
  else scale = static_cast<T>(scale_d);
  const int64_t blocks = (n + 3) / 4;
  dropout_kernel<T><<<elementwise_blocks(blocks), kThreads, 0, stream()>>>(
      static_cast<const T*>(xv), static_cast<T*>(outv), n, seed, offset, p, scale);
  GRADUS_CUDA_CHECK_LAUNCH("dropout");
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL(kernels::kDropout, dropout);

}  // namespace gradus::cuda
