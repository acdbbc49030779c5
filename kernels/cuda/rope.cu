// CUDA RoPE kernel (see kernels/rope.h for the formula and the pairing of channels; mirrors
// kernels/cpu/rope.cpp). The angle, cos and sin are computed in double and rounded once to the
// element type, as the CPU's table is.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/rope.h"

namespace gradus::cuda {
namespace {

template <class T>
__device__ __forceinline__ T from_double(double v) {
  if constexpr (std::is_same_v<T, bf16>)
    return __double2bfloat16(v);
  else
    return static_cast<T>(v);
}

// x, out: (B, H, T, D) through their layouts (kernels/rope.h), D even. A thread owns channel pair
// (t, i), i < D/2: it computes cos / sin once and applies them to rows n = blockIdx.y, blockIdx.y +
// gridDim.y, ... of the B H heads, so the double-precision trigonometry is shared by the heads
// rather than redone per element. Consecutive threads take consecutive i, so each half-row is read
// and written coalesced.
template <class T>
__global__ void rope_kernel(const T* x, kernels::RopeLayout xl, T* out, kernels::RopeLayout ol,
                            int64_t B, int64_t H, int64_t T_len, int64_t D, double theta,
                            int64_t position_offset, bool inverse) {
  using A = acc_t<T>;
  const int64_t half = D / 2;
  GRADUS_CUDA_LOOP(pair, T_len * half) {
    const int64_t t = pair / half, i = pair % half;
    const double inv_freq = pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(D));
    const double a = static_cast<double>(position_offset + t) * inv_freq;
    double s, c;
    sincos(a, &s, &c);
    const A cv = to_acc(from_double<T>(c));
    const A sv = to_acc(from_double<T>(inverse ? -s : s));
    for (int64_t n = blockIdx.y; n < B * H; n += gridDim.y) {
      const int64_t b = n / H, h = n % H;
      const T* xr = x + b * xl.stride_b + h * xl.stride_h + t * xl.stride_t;
      T* yr = out + b * ol.stride_b + h * ol.stride_h + t * ol.stride_t;
      const A x1 = load(xr + i), x2 = load(xr + half + i);
      yr[i] = from_acc<T>(x1 * cv - x2 * sv);
      yr[half + i] = from_acc<T>(x2 * cv + x1 * sv);
    }
  }
}

template <class T>
void rope(const void* xv, kernels::RopeLayout xl, void* outv, kernels::RopeLayout ol, int64_t B,
          int64_t H, int64_t T_len, int64_t D, double theta, int64_t position_offset,
          bool inverse) {
  const int64_t pairs = T_len * (D / 2), heads = B * H;
  if (heads == 0 || pairs == 0) return;
  // x covers the (t, i) pairs; y splits the heads so that small T (decoding) still fills the GPU.
  const int gx = elementwise_blocks(pairs);
  const int64_t want = elementwise_blocks(heads * pairs);
  const int gy = static_cast<int>(
      std::clamp<int64_t>((want + gx - 1) / gx, 1, std::min<int64_t>(heads, 65535)));
  rope_kernel<T><<<dim3(gx, gy), kThreads, 0, stream()>>>(static_cast<const T*>(xv), xl,
                                                          static_cast<T*>(outv), ol, B, H, T_len, D,
                                                          theta, position_offset, inverse);
  GRADUS_CUDA_CHECK_LAUNCH("rope");
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL(kernels::kRope, rope);

}  // namespace gradus::cuda
