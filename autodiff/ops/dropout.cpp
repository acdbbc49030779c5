// dropout: the "dropout" kernel draws the mask from Philox (seed, offset). The record keeps only
// (seed, offset, p) -- no mask tensor -- and the backward re-runs the same kernel on the gradient,
// which re-draws the identical mask (dropout is linear in x for a fixed mask).
#include "autodiff/ops/dropout.h"

#include <bit>

#include "autodiff/ops/common.h"
#include "kernels/dropout.h"

namespace gradus {

namespace {

// x: (...) any strides -> fresh contiguous (...), element i of the row-major order drawing stream
// element i.
Tensor raw_dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset) {
  Tensor xc = raw_contiguous(x);
  Tensor out = detail::empty_like(x);
  static const kernels::KernelRef<kernels::DropoutFn> kernel(kernels::kDropout);
  kernel(x.device(), x.dtype())(xc.raw_data(), out.raw_data(), x.numel(), seed, offset, p);
  return out;
}

// attrs.ints = [seed, offset] (the uint64 bits), attrs.floats = [p].
void dropout_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  gi[0] = raw_dropout(go[0], r.attrs.floats[0], std::bit_cast<uint64_t>(r.attrs.ints[0]),
                      std::bit_cast<uint64_t>(r.attrs.ints[1]));
}

const OpDef& kDropoutDef = register_op({.name = "dropout",
                                        .family = "dropout",
                                        .backward = dropout_backward,
                                        .forward_kernels = {kernels::kDropout},
                                        .backward_kernels = {kernels::kDropout},
                                        .gradcheck = "Gradcheck.dropout"});

}  // namespace

Tensor dropout(const Tensor& x, double p, Generator& gen, bool training) {
  detail::expect_float_compatible("dropout", {&x});
  GRADUS_CHECK(p >= 0.0 && p < 1.0, "dropout", "p must be in [0, 1), found {}", p);
  if (!training || p == 0.0) return x;
  const uint64_t seed = gen.seed;
  const uint64_t offset = gen.reserve(static_cast<uint64_t>(x.numel()), 4);
  Tensor out = raw_dropout(x, p, seed, offset);
  finish_op(
      kDropoutDef, {x}, {out}, {},
      Attrs{.ints = {std::bit_cast<int64_t>(seed), std::bit_cast<int64_t>(offset)}, .floats = {p}});
  return out;
}

}  // namespace gradus
