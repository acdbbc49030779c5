// Causal masks. causal_masked_fill runs the "where" kernel against a (T, T) 1 / 0 mask broadcast
// over the leading axes, so it needs no kernel of its own; the mask is O(T^2), small beside the
// (..., T, T) scores it selects from.
#include "autodiff/ops/mask.h"

#include "autodiff/ops/common.h"
#include "kernels/elementwise.h"

namespace gradus {

namespace {

// (T, T) tensor holding `above` where j > i and `below` elsewhere, in `dtype` on `device`. Built on
// the CPU (in f32 for dtypes the CPU does not compute in) and copied over.
Tensor triangle(int64_t T, double below, double above, DType dtype, Device device) {
  GRADUS_CHECK(T >= 0, "causal_mask", "the sequence length must be non-negative, found {}", T);
  const DType host_dtype = dtype == DType::bf16 ? DType::f32 : dtype;
  std::vector<double> values(static_cast<size_t>(T * T));
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j < T; ++j) values[i * T + j] = j > i ? above : below;
  Tensor host = Tensor::from_vector(values, {T, T}, host_dtype);
  if (device.is_cpu() && host_dtype == dtype) return host;
  Tensor out = Tensor::empty({T, T}, dtype, device);
  raw_copy_(out, host);
  return out;
}

// out = mask != 0 ? a : b over `shape`.
Tensor raw_where(const Tensor& mask, const Tensor& a, const Tensor& b, const Shape& shape) {
  Tensor out = Tensor::empty(shape, b.dtype(), b.device());
  static const kernels::KernelRef<kernels::WhereFn> kernel(kernels::kWhere);
  kernel(b.device(), b.dtype())(raw_expand(mask, shape), raw_expand(a, shape), raw_expand(b, shape),
                                out);
  return out;
}

// saved = [the (T, T) 1 / 0 mask]; masked positions take no gradient.
void causal_masked_fill_backward(const Record& r, const std::vector<Tensor>& go,
                                 std::vector<Tensor>& gi) {
  const Tensor& g = go[0];
  gi[0] = raw_where(r.saved[0], detail::scalar_like(0.0, g), g, g.shape());
}

const OpDef& kCausalMaskedFill = register_op({.name = "causal_masked_fill",
                                              .family = "mask",
                                              .backward = causal_masked_fill_backward,
                                              .forward_kernels = {kernels::kWhere},
                                              .backward_kernels = {kernels::kWhere},
                                              .gradcheck = "Gradcheck.causal_masked_fill"});

}  // namespace

Tensor causal_mask(int64_t T, DType dtype, Device device) {
  GRADUS_CHECK(is_floating(dtype), "causal_mask", "an additive mask needs a floating dtype, not {}",
               dtype_name(dtype));
  return triangle(T, 0.0, -std::numeric_limits<double>::infinity(), dtype, device);
}

Tensor causal_masked_fill(const Tensor& scores, double value) {
  detail::expect_float_compatible("causal_masked_fill", {&scores});
  GRADUS_CHECK(scores.dim() >= 2 && scores.size(-1) == scores.size(-2), "causal_masked_fill",
               "expected scores of shape (..., T, T) but found {}", scores.describe());
  const int64_t T = scores.size(-1);
  Tensor mask = triangle(T, 0.0, 1.0, scores.dtype(), scores.device());
  Tensor out = raw_where(mask, detail::scalar_like(value, scores), scores, scores.shape());
  finish_op(kCausalMaskedFill, {scores}, {out}, {mask}, Attrs{.floats = {value}});
  return out;
}

}  // namespace gradus
