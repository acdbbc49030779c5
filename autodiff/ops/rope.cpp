// rope: one fused kernel for the rotation; the backward rotates the gradient by the opposite angle
// (a rotation's inverse is its transpose), so nothing is saved.
#include "autodiff/ops/rope.h"

#include <cmath>

#include "autodiff/ops/common.h"
#include "autodiff/ops/heads_layout.h"
#include "kernels/rope.h"

namespace gradus {

namespace {

kernels::RopeLayout layout_of(const Tensor& x) { return {x.stride(0), x.stride(1), x.stride(2)}; }

// x: (..., T, D) -> a fresh (..., T, D). A 4-D x with contiguous channels, (B, H, T, D), is read
// through its strides: the heads of a projection ((B, T, H, D) storage) are never copied, and the
// result keeps that heads layout (detail::empty_heads), so attention reads it as it is and its
// gradient merges back into the projection's by a reshape. Other tensors go through a contiguous
// copy and give a contiguous result.
Tensor raw_rope(const Tensor& x, double theta, int64_t position_offset, bool inverse) {
  static const kernels::KernelRef<kernels::RopeFn> kernel(kernels::kRope);
  const int64_t T = x.size(-2), D = x.size(-1);
  if (x.dim() == 4 && (D == 1 || x.stride(3) == 1)) {
    const bool heads_layout = x.stride(1) < x.stride(2);  // (B, T, H, D) storage
    Tensor out = heads_layout ? detail::empty_heads(x, T) : detail::empty_like(x);
    kernel(x.device(), x.dtype())(x.raw_data(), layout_of(x), out.raw_data(), layout_of(out),
                                  x.size(0), x.size(1), T, D, theta, position_offset, inverse);
    return out;
  }
  Tensor xc = raw_contiguous(x);
  Tensor out = detail::empty_like(x);
  const int64_t batch = T * D == 0 ? 0 : x.numel() / (T * D);
  const kernels::RopeLayout dense{T * D, 0, D};
  kernel(x.device(), x.dtype())(xc.raw_data(), dense, out.raw_data(), dense, batch, 1, T, D, theta,
                                position_offset, inverse);
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
