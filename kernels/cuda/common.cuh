// Shared device code for the CUDA kernels: element types and their compute types, conversions,
// device math in the compute type, 16-byte element groups, warp / block / row reductions in a fixed
// order, launch-size helpers, and the registration macro.
//
// Compute types: f32 and bf16 compute in float, f64 in double. bf16 is loaded, converted to float,
// computed, and rounded once when stored (round to nearest even), so a bf16 kernel differs from the
// f32 reference by the rounding of its inputs and output only.
#pragma once

#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/runtime.h"
#include "kernels/registry.h"

namespace gradus::cuda {

using bf16 = __nv_bfloat16;

// The GPU every CUDA kernel runs on (workspaces are allocated there).
inline constexpr Device kGPU{DeviceType::cuda, 0};

template <class T>
struct ComputeType {
  using type = float;
};
template <>
struct ComputeType<double> {
  using type = double;
};
template <class T>
using acc_t = typename ComputeType<T>::type;

template <class T>
__device__ __forceinline__ acc_t<T> load(const T* p) {
  if constexpr (std::is_same_v<T, bf16>)
    return __bfloat162float(*p);
  else
    return *p;
}
template <class T>
__device__ __forceinline__ acc_t<T> to_acc(T v) {
  if constexpr (std::is_same_v<T, bf16>)
    return __bfloat162float(v);
  else
    return v;
}
template <class T, class A>
__device__ __forceinline__ T from_acc(A v) {
  if constexpr (std::is_same_v<T, bf16>)
    return __float2bfloat16_rn(static_cast<float>(v));
  else
    return static_cast<T>(v);
}

// The DType of a compute type (workspaces kept in it).
template <class A>
constexpr DType acc_dtype() {
  return std::is_same_v<A, double> ? DType::f64 : DType::f32;
}

// ---- device math in the compute type (float or double) ----
__device__ __forceinline__ float dexp(float v) { return expf(v); }
__device__ __forceinline__ double dexp(double v) { return exp(v); }
__device__ __forceinline__ float dlog(float v) { return logf(v); }
__device__ __forceinline__ double dlog(double v) { return log(v); }
__device__ __forceinline__ float dpow(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double dpow(double a, double b) { return pow(a, b); }

// ---- 16-byte element groups ----
// V consecutive elements moved by one access; the default V = kVec<T> makes it 16 bytes.
template <class T>
constexpr int kVec = 16 / static_cast<int>(sizeof(T));
template <class T, int V = kVec<T>>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};
// Vector accesses need the actual pointer aligned: a view's data may start at any element.
__host__ __device__ __forceinline__ bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}
// Loads p[k0, min(k0 + V, n)) into v in the compute type and returns the count. A full group at a
// 16-byte aligned p is one vector load; the values (and so every result) are the same either way.
template <class T>
__device__ __forceinline__ int load_group(const T* p, int64_t k0, int64_t n, bool aligned,
                                          acc_t<T>* v) {
  constexpr int V = kVec<T>;
  if (aligned && k0 + V <= n) {
    const Pack<T> pk = *reinterpret_cast<const Pack<T>*>(p + k0);
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] = to_acc(pk.v[j]);
    return V;
  }
  const int count = static_cast<int>(n - k0 < V ? n - k0 : V);
#pragma unroll
  for (int j = 0; j < V; ++j)
    if (j < count) v[j] = load(p + k0 + j);
  return count;
}
// Stores v[0, count) to p[k0, k0 + count), one vector store when the group is full and aligned.
template <class T>
__device__ __forceinline__ void store_group(T* p, int64_t k0, int count, bool aligned,
                                            const acc_t<T>* v) {
  constexpr int V = kVec<T>;
  if (aligned && count == V) {
    Pack<T> pk;
#pragma unroll
    for (int j = 0; j < V; ++j) pk.v[j] = from_acc<T>(v[j]);
    *reinterpret_cast<Pack<T>*>(p + k0) = pk;
    return;
  }
#pragma unroll
  for (int j = 0; j < V; ++j)
    if (j < count) p[k0 + j] = from_acc<T>(v[j]);
}

// Sum over the 32 lanes of a warp by a butterfly: every lane gets the same value, and the order of
// additions depends on nothing but the lane layout (deterministic).
template <class A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}
template <class A>
__device__ __forceinline__ A warp_max(A v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// Block-wide sum (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `shared` holds at least 32 values. Fixed order: warps, then the warp partials in warp order.
template <class A>
__device__ A block_sum(A v, A* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : A(0);
  return warp_sum(v);
}
// Block-wide maximum ignoring NaN (fmax); callers that need NaN to propagate handle it apart.
template <class A>
__device__ A block_max(A v, A* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : A(-INFINITY);
  return warp_max(v);
}

// Sum / maximum over the threads of one row: a warp (kRowThreads == 32) or the whole block (every
// thread of the block must call it). The maximum ignores NaN (fmax).
template <int kRowThreads, class A>
__device__ __forceinline__ A row_sum(A v, A* shared) {
  if constexpr (kRowThreads == 32)
    return warp_sum(v);
  else
    return block_sum(v, shared);
}
template <int kRowThreads, class A>
__device__ __forceinline__ A row_max(A v, A* shared) {
  if constexpr (kRowThreads == 32)
    return warp_max(v);
  else
    return block_max(v, shared);
}

// ---- mixed precision ----
// Calls fn(D{}) for the storage type D of an operand of `dtype` that a kernel of type T reads or
// writes beside its own: T itself, bf16 beside f32, f32 beside f64; anything else is refused,
// naming the kernel.
template <class T, class Fn>
void dispatch_same_or_narrower(DType dtype, const char* kernel, Fn&& fn) {
  constexpr DType own = std::is_same_v<T, bf16> ? DType::bf16 : acc_dtype<T>();
  if (dtype == own) return fn(T{});
  if constexpr (std::is_same_v<T, float>)
    if (dtype == DType::bf16) return fn(bf16{});
  if constexpr (std::is_same_v<T, double>)
    if (dtype == DType::f32) return fn(float{});
  GRADUS_FAIL(kernel,
              "an operand of dtype {} cannot go with {}: expected the kernel's own or "
              "the next narrower one",
              dtype_name(dtype), dtype_name(own));
}

// ---- launch sizes ----
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
// A grid of `blocks` blocks, at least 1 (a launch of 0 blocks is an error) and at most 2^20 (the
// kernels using it loop over what a capped grid leaves).
inline int grid_for(int64_t blocks) {
  return static_cast<int>(std::clamp<int64_t>(blocks, 1, int64_t{1} << 20));
}

// Grid-stride loop over [0, n).
#define GRADUS_CUDA_LOOP(i, n)                                                           \
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
