// Shared device code for the CUDA kernels: element types and their compute types, conversions,
// warp and block reductions in a fixed order, and the registration macro.
//
// Compute types: f32 and bf16 compute in float, f64 in double. bf16 is loaded, converted to float,
// computed, and rounded once when stored (round to nearest even), so a bf16 kernel differs from the
// f32 reference by the rounding of its inputs and output only.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/runtime.h"
#include "kernels/registry.h"

namespace gradus::cuda {

using bf16 = __nv_bfloat16;

template <class T> struct ComputeType { using type = float; };
template <> struct ComputeType<double> { using type = double; };
template <class T> using acc_t = typename ComputeType<T>::type;

template <class T> __device__ __forceinline__ acc_t<T> load(const T* p) {
  if constexpr (std::is_same_v<T, bf16>) return __bfloat162float(*p);
  else return *p;
}
template <class T> __device__ __forceinline__ acc_t<T> to_acc(T v) {
  if constexpr (std::is_same_v<T, bf16>) return __bfloat162float(v);
  else return v;
}
template <class T, class A> __device__ __forceinline__ T from_acc(A v) {
  if constexpr (std::is_same_v<T, bf16>) return __float2bfloat16_rn(static_cast<float>(v));
  else return static_cast<T>(v);
}

// Sum over the 32 lanes of a warp by a butterfly: every lane gets the same value, and the order of
// additions depends on nothing but the lane layout (deterministic).
template <class A> __device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}
template <class A> __device__ __forceinline__ A warp_max(A v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// Block-wide sum (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `shared` holds at least 32 values. Fixed order: warps, then the warp partials in warp order.
template <class A> __device__ A block_sum(A v, A* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : A(0);
  return warp_sum(v);
}
// Block-wide maximum (NaN-propagating as fmax is not: callers that need NaN handle it apart).
template <class A> __device__ A block_max(A v, A* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : A(-INFINITY);
  return warp_max(v);
}

// Grid-stride loop over [0, n).
#define GRADUS_CUDA_LOOP(i, n)                                                              \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

}  // namespace gradus::cuda

// Registers fn<float>, fn<double> and fn<__nv_bfloat16> for the GPU.
#define GRADUS_REGISTER_CUDA_KERNEL(name, fn)                                                  \
  GRADUS_REGISTER_KERNEL(name, ::gradus::DeviceType::cuda, ::gradus::DType::f32, &fn<float>);  \
  GRADUS_REGISTER_KERNEL(name, ::gradus::DeviceType::cuda, ::gradus::DType::f64, &fn<double>); \
  GRADUS_REGISTER_KERNEL(name, ::gradus::DeviceType::cuda, ::gradus::DType::bf16,              \
                         &fn<::gradus::cuda::bf16>)
// f32 and f64 only (kernels whose bf16 form no model needs).
#define GRADUS_REGISTER_CUDA_KERNEL_F32_F64(name, fn)                                         \
  GRADUS_REGISTER_KERNEL(name, ::gradus::DeviceType::cuda, ::gradus::DType::f32, &fn<float>); \
  GRADUS_REGISTER_KERNEL(name, ::gradus::DeviceType::cuda, ::gradus::DType::f64, &fn<double>)
