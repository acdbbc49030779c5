// CUDA fused SwiGLU gate (see kernels/swiglu.h; mirrors kernels/cpu/swiglu.cpp): one grid-stride
// pass per direction, bf16 loaded to f32 and rounded once on store. Memory-bound: the forward moves
// 3 n elements, the backward 5 n (both gradients), against 4 n + 7 n for the composite's silu and
// mul with their backwards.
#include "kernels/cuda/common.cuh"
#include "kernels/swiglu.h"

namespace gradus::cuda {
namespace {

template <class A>
__device__ __forceinline__ A sigmoid_of(A x) {
  return A(1) / (A(1) + dexp(-x));
}

// gate, up, out: (n,)
template <class T>
__global__ void swiglu_forward_kernel(const T* gate, const T* up, T* out, int64_t n) {
  using A = acc_t<T>;
  GRADUS_CUDA_LOOP(i, n) {
    const A g = load(gate + i);
    out[i] = from_acc<T>(g * sigmoid_of(g) * load(up + i));
  }
}

// gate, up, grad_out, grad_gate, grad_up: (n,); either gradient pointer may be null.
template <class T>
__global__ void swiglu_backward_kernel(const T* gate, const T* up, const T* grad_out, T* grad_gate,
                                       T* grad_up, int64_t n) {
  using A = acc_t<T>;
  GRADUS_CUDA_LOOP(i, n) {
    const A g = load(gate + i), go = load(grad_out + i);
    const A s = sigmoid_of(g);
    if (grad_up != nullptr) grad_up[i] = from_acc<T>(go * g * s);
    if (grad_gate != nullptr)
      grad_gate[i] = from_acc<T>(go * load(up + i) * s * (A(1) + g * (A(1) - s)));
  }
}

template <class T>
void swiglu_forward(const void* gate, const void* up, void* out, int64_t n) {
  if (n == 0) return;
  swiglu_forward_kernel<T><<<elementwise_blocks(n), kThreads, 0, stream()>>>(
      static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<T*>(out), n);
  GRADUS_CUDA_CHECK_LAUNCH("swiglu_forward");
}

template <class T>
void swiglu_backward(const void* gate, const void* up, const void* grad_out, void* grad_gate,
                     void* grad_up, int64_t n) {
  if (n == 0 || (grad_gate == nullptr && grad_up == nullptr)) return;
  swiglu_backward_kernel<T><<<elementwise_blocks(n), kThreads, 0, stream()>>>(
      static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<const T*>(grad_out),
      static_cast<T*>(grad_gate), static_cast<T*>(grad_up), n);
  GRADUS_CUDA_CHECK_LAUNCH("swiglu_backward");
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL(kernels::kSwigluForward, swiglu_forward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kSwigluBackward, swiglu_backward);

}  // namespace gradus::cuda
