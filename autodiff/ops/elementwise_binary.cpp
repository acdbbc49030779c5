// Binary elementwise ops: forward through the "binary" kernel, backward through "binary_backward",
// which writes each input's gradient in the broadcast shape (the engine sums it back).
#include "autodiff/autocast.h"
#include "autodiff/ops/common.h"
#include "autodiff/ops/elementwise.h"
#include "kernels/elementwise.h"
#include "kernels/reduce.h"

namespace gradus {

using kernels::BinaryOp;

namespace {

void binary_backward_rule(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi);

const OpDef& binary_def(const char* name) {
  return register_op({.name = name,
                      .family = "elementwise_binary",
                      .backward = binary_backward_rule,
                      .forward_kernels = {kernels::kBinary},
                      .backward_kernels = {kernels::kBinaryBackward, kernels::kReduce},
                      .gradcheck = std::string("Gradcheck.") + name});
}

const OpDef* const kDefs[] = {&binary_def("add"),     &binary_def("sub"),     &binary_def("mul"),
                              &binary_def("div"),     &binary_def("maximum"), &binary_def("minimum"),
                              &binary_def("pow")};

void binary_backward_rule(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  const auto op = static_cast<BinaryOp>(r.attrs.ints[0]);
  if (op == BinaryOp::add || op == BinaryOp::sub) {  // pass-through: no kernel, nothing saved
    gi[0] = go[0];
    if (r.input_requires_grad(1)) gi[1] = op == BinaryOp::add ? go[0] : neg(go[0]);
    return;
  }
  const Tensor& a = r.saved[0];
  const Tensor& b = r.saved[1];
  const Tensor& g = go[0];
  const Shape& out_shape = g.shape();
  Tensor ga = r.input_requires_grad(0) ? detail::empty_like(out_shape, g) : Tensor();
  Tensor gb = r.input_requires_grad(1) ? detail::empty_like(out_shape, g) : Tensor();
  static const kernels::KernelRef<kernels::BinaryBackwardFn> kernel(kernels::kBinaryBackward);
  kernel(g.device(), g.dtype())(op, raw_expand(a, out_shape),
                                raw_expand(b, out_shape), g, ga, gb);
  gi[0] = ga;
  gi[1] = gb;
}

Tensor binary(BinaryOp op, const Tensor& a_in, const Tensor& b_in) {
  const char* name = kernels::binary_op_name(op);
  Tensor a = a_in, b = b_in;
  detail::autocast_promote(a, b);  // under autocast only: a narrow and a wide operand meet
  detail::expect_float_compatible(name, {&a, &b});
  Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  static const kernels::KernelRef<kernels::BinaryFn> kernel(kernels::kBinary);
  kernel(a.device(), a.dtype())(op, raw_expand(a, shape), raw_expand(b, shape), out);
  const bool save = op != BinaryOp::add && op != BinaryOp::sub;
  finish_op(*kDefs[static_cast<int>(op)], {a, b}, {out}, save ? std::vector<Tensor>{a, b} : std::vector<Tensor>{},
            Attrs{.ints = {static_cast<int64_t>(op)}});
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::div, a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::maximum, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::minimum, a, b); }
Tensor pow(const Tensor& a, const Tensor& b) { return binary(BinaryOp::pow, a, b); }

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& a, double s) { return affine(a, 1.0, s); }
Tensor operator-(const Tensor& a, double s) { return affine(a, 1.0, -s); }
Tensor operator*(const Tensor& a, double s) { return affine(a, s, 0.0); }
Tensor operator/(const Tensor& a, double s) { return affine(a, 1.0 / s, 0.0); }
Tensor operator+(double s, const Tensor& a) { return affine(a, 1.0, s); }
Tensor operator-(double s, const Tensor& a) { return affine(a, -1.0, s); }
Tensor operator*(double s, const Tensor& a) { return affine(a, s, 0.0); }
Tensor operator/(double s, const Tensor& a) { return mul(reciprocal(a), detail::scalar_like(s, a)); }
Tensor operator-(const Tensor& a) { return neg(a); }

}  // namespace gradus
