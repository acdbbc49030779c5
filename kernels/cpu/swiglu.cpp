// CPU fused SwiGLU gate (see kernels/swiglu.h): one vectorised pass per direction (vexp is the
// vectorisable f32 exp of vec_math.h).
#include "kernels/swiglu.h"

#include "kernels/cpu/vec_math.h"
#include "kernels/registry.h"

namespace gradus::kernels::cpu {
namespace {

template <class T>
T sigmoid_of(T x) {
  return T(1) / (T(1) + vexp(-x));
}

// gate, up, out: (n)
template <class T>
void swiglu_forward(const void* gate, const void* up, void* out, int64_t n) {
  const T* g = static_cast<const T*>(gate);
  const T* u = static_cast<const T*>(up);
  T* o = static_cast<T*>(out);
#pragma omp parallel for simd if (n > (1 << 15)) schedule(static)
  for (int64_t i = 0; i < n; ++i) o[i] = g[i] * sigmoid_of(g[i]) * u[i];
}

// gate, up, grad_out, grad_gate, grad_up: (n); either gradient may be null.
template <class T>
void swiglu_backward(const void* gate, const void* up, const void* grad_out, void* grad_gate,
                     void* grad_up, int64_t n) {
  const T* g = static_cast<const T*>(gate);
  const T* u = static_cast<const T*>(up);
  const T* go = static_cast<const T*>(grad_out);
  T* gg = static_cast<T*>(grad_gate);
  T* gu = static_cast<T*>(grad_up);
  if (gg != nullptr && gu != nullptr) {
#pragma omp parallel for simd if (n > (1 << 15)) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const T s = sigmoid_of(g[i]);
      gu[i] = go[i] * g[i] * s;
      gg[i] = go[i] * u[i] * s * (T(1) + g[i] * (T(1) - s));
    }
  } else if (gu != nullptr) {
#pragma omp parallel for simd if (n > (1 << 15)) schedule(static)
    for (int64_t i = 0; i < n; ++i) gu[i] = go[i] * g[i] * sigmoid_of(g[i]);
  } else if (gg != nullptr) {
#pragma omp parallel for simd if (n > (1 << 15)) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const T s = sigmoid_of(g[i]);
      gg[i] = go[i] * u[i] * s * (T(1) + g[i] * (T(1) - s));
    }
  }
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kSwigluForward, swiglu_forward);
GRADUS_REGISTER_CPU_KERNEL(kSwigluBackward, swiglu_backward);

}  // namespace gradus::kernels::cpu
