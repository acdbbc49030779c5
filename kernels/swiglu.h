// SwiGLU's gate, fused: out = silu(gate) * up, forward and backward in one pass each. The
// composite (silu, then mul) keeps silu(gate) for the product's backward, a third (rows, F) tensor
// per MLP beside gate and up; this keeps gate and up only and recomputes the sigmoid.
//
// gate, up, out, grad_out, grad_gate, grad_up: (n) contiguous, one dtype (f32, f64; bf16 on the
// GPU, computed in f32 and rounded once on store).
//   out       = gate * s * up                           s = sigmoid(gate)
//   grad_up   = grad_out * gate * s                     (= grad_out * silu(gate))
//   grad_gate = grad_out * up * s * (1 + gate (1 - s))  (silu'(gate), as the unary silu's backward)
// Each element is independent: results do not depend on the thread count.
#pragma once

#include <cstdint>

namespace gradus::kernels {

using SwigluForwardFn = void (*)(const void* gate, const void* up, void* out, int64_t n);
// grad_gate or grad_up may be null (that gradient is not needed).
using SwigluBackwardFn = void (*)(const void* gate, const void* up, const void* grad_out,
                                  void* grad_gate, void* grad_up, int64_t n);

inline constexpr const char* kSwigluForward = "swiglu_forward";
inline constexpr const char* kSwigluBackward = "swiglu_backward";

}  // namespace gradus::kernels
