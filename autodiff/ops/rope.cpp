// rope: one fused kernel for the rotation; the backward rotates the gradient by the opposite angle
// (a rotation's inverse is its transpose), so nothing is saved.
#include "autodiff/ops/rope.h"

#include <cmath>

#include "autodiff/ops/common.h"
#include "kernels/rope.h"

namespace gradus {

namespace {

// x: (..., T, D) contiguous or not -> a fresh contiguous (..., T, D).
Tensor raw_rope(const Tensor& x, double theta, int64_t position_offset, bool inverse) {
  Tensor xc = raw_contiguous(x);
  Tensor out = detail::empty_like(x);
  const int64_t T = x.size(-2), D = x.size(-1);
  const int64_t batch = T * D == 0 ? 0 : x.numel() / (T * D);
  static const kernels::KernelRef<kernels::RopeFn> kernel(kernels::kRope);
  kernel(x.device(), x.dtype())(xc.raw_data(), out.raw_data(), batch, T, D, theta, position_offset,
                                inverse);
  return out;
}

// attrs.floats = [theta], attrs.ints = [position_offset].
void rope_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  gi[0] = raw_rope(go[0], r.attrs.floats[0], r.attrs.ints[0], /*inverse=*/true);
}

const OpDef& kRopeDef = register_op({.name = "rope",
                                     .family = "rope",
                                     .backward = rope_backward,
                                     .forward_kernels = {kernels::kRope},
                                     .backward_kernels = {kernels::kRope},
                                     .gradcheck = "Gradcheck.rope"});

}  // namespace

Tensor rope(const Tensor& x, double theta, int64_t position_offset) {
  detail::expect_float_compatible("rope", {&x});
  GRADUS_CHECK(x.dim() >= 2, "rope", "expected x of shape (..., T, D) but found {}", x.describe());
  GRADUS_CHECK(x.size(-1) % 2 == 0, "rope",
               "the head dimension D (last axis) must be even to pair channels i and i + D/2, but "
               "x is {}",
               x.describe());
  GRADUS_CHECK(std::isfinite(theta) && theta > 0, "rope", "theta must be positive, found {}",
               theta);
  GRADUS_CHECK(position_offset >= 0, "rope", "position_offset must be non-negative, found {}",
               position_offset);
  Tensor out = raw_rope(x, theta, position_offset, /*inverse=*/false);
  finish_op(kRopeDef, {x}, {out}, {}, Attrs{.ints = {position_offset}, .floats = {theta}});
  return out;
}

}  // namespace gradus
