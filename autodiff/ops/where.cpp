// where and masked_fill: selections through the "where" kernel. The backward routes the output
// gradient to the selected side with the same kernel (zeros elsewhere); the condition takes none.
#include "autodiff/ops/common.h"
#include "autodiff/ops/elementwise.h"
#include "kernels/elementwise.h"

namespace gradus {

namespace {

// out = cond != 0 ? a : b over `shape` (every operand expanded to it).
Tensor raw_where(const Tensor& cond, const Tensor& a, const Tensor& b, const Shape& shape) {
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  static const kernels::KernelRef<kernels::WhereFn> kernel(kernels::kWhere);
  kernel(a.device(), a.dtype())(raw_expand(cond, shape), raw_expand(a, shape), raw_expand(b, shape),
                                out);
  return out;
}

// A condition is a 1 / 0 mask in the values' dtype, or i64, on the values' device.
void expect_condition(const char* op, const Tensor& cond, const Tensor& like, const char* what) {
  detail::expect_defined(op, cond, what);
  GRADUS_CHECK(cond.dtype() == like.dtype() || cond.dtype() == DType::i64, op,
               "the {} {} must be i64 or have the dtype of the input {}", what, cond.describe(),
               like.describe());
  GRADUS_CHECK(cond.device() == like.device(), op, "the {} {} is not on the device of the input {}",
               what, cond.describe(), like.describe());
}

// where: inputs = [a, b], saved = [cond]. Gradients are in the output's (broadcast) shape; the
// engine sums them back to a's and b's shapes.
void where_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  const Tensor& g = go[0];
  const Tensor& cond = r.saved[0];
  Tensor zero = detail::scalar_like(0.0, g);
  if (r.input_requires_grad(0)) gi[0] = raw_where(cond, g, zero, g.shape());
  if (r.input_requires_grad(1)) gi[1] = raw_where(cond, zero, g, g.shape());
}

// masked_fill: inputs = [x], saved = [mask]; filled positions take no gradient.
void masked_fill_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  const Tensor& g = go[0];
  gi[0] = raw_where(r.saved[0], detail::scalar_like(0.0, g), g, g.shape());
}

const OpDef& kWhereDef = register_op({.name = "where",
                                      .family = "where",
                                      .backward = where_backward,
                                      .forward_kernels = {kernels::kWhere},
                                      .backward_kernels = {kernels::kWhere},
                                      .gradcheck = "Gradcheck.where"});
const OpDef& kMaskedFill = register_op({.name = "masked_fill",
                                        .family = "where",
                                        .backward = masked_fill_backward,
                                        .forward_kernels = {kernels::kWhere},
                                        .backward_kernels = {kernels::kWhere},
                                        .gradcheck = "Gradcheck.masked_fill"});

}  // namespace

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  detail::expect_float_compatible("where", {&a, &b});
  expect_condition("where", cond, a, "condition");
  Shape shape =
      broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = raw_where(cond, a, b, shape);
  finish_op(kWhereDef, {a, b}, {out}, {cond});
  return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  detail::expect_float_compatible("masked_fill", {&x});
  expect_condition("masked_fill", mask, x, "mask");
  GRADUS_CHECK(broadcast_shapes(mask.shape(), x.shape(), "masked_fill") == x.shape(), "masked_fill",
               "the mask {} does not broadcast to the input's shape {}", mask.describe(),
               shape_str(x.shape()));
  Tensor out = raw_where(mask, detail::scalar_like(value, x), x, x.shape());
  finish_op(kMaskedFill, {x}, {out}, {mask});
  return out;
}

}  // namespace gradus
