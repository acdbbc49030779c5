// swiglu: the "swiglu_forward" kernel, and "swiglu_backward" recomputing the sigmoid from the saved
// gate.
#include "autodiff/ops/swiglu.h"

#include "autodiff/autocast.h"
#include "autodiff/ops/common.h"
#include "kernels/swiglu.h"

namespace gradus {

namespace {

// saved: [gate, up] (contiguous).
void swiglu_backward_rule(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  const Tensor &gate = r.saved[0], &up = r.saved[1];
  const Tensor g = raw_contiguous(go[0]);
  Tensor grad_gate = r.input_requires_grad(0) ? detail::empty_like(gate) : Tensor();
  Tensor grad_up = r.input_requires_grad(1) ? detail::empty_like(up) : Tensor();
  static const kernels::KernelRef<kernels::SwigluBackwardFn> kernel(kernels::kSwigluBackward);
  kernel(gate.device(), gate.dtype())(gate.raw_data(), up.raw_data(), g.raw_data(),
                                      grad_gate.defined() ? grad_gate.raw_data() : nullptr,
                                      grad_up.defined() ? grad_up.raw_data() : nullptr,
                                      gate.numel());
  gi[0] = grad_gate;
  gi[1] = grad_up;
}

const OpDef& kSwiglu = register_op({.name = "swiglu",
                                    .family = "swiglu",
                                    .backward = swiglu_backward_rule,
                                    .forward_kernels = {kernels::kSwigluForward},
                                    .backward_kernels = {kernels::kSwigluBackward},
                                    .gradcheck = "Gradcheck.swiglu"});

}  // namespace

Tensor swiglu(const Tensor& gate_in, const Tensor& up_in) {
  const char* op = "swiglu";
  detail::expect_defined(op, gate_in, "gate");
  detail::expect_defined(op, up_in, "up");
  Tensor gate_p = gate_in, up_p = up_in;
  detail::autocast_promote(gate_p, up_p);  // under autocast only
  detail::expect_float_compatible(op, {&gate_p, &up_p});
  GRADUS_CHECK(gate_p.shape() == up_p.shape(), op,
               "gate {} and up {} must have the same shape (no broadcasting)", gate_p.describe(),
               up_p.describe());
  const Tensor gate = raw_contiguous(gate_p), up = raw_contiguous(up_p);
  Tensor out = detail::empty_like(gate);
  static const kernels::KernelRef<kernels::SwigluForwardFn> kernel(kernels::kSwigluForward);
  kernel(gate.device(), gate.dtype())(gate.raw_data(), up.raw_data(), out.raw_data(), gate.numel());
  finish_op(kSwiglu, {gate_p, up_p}, {out}, {gate, up});
  return out;
}

}  // namespace gradus
