// embedding: a row gather forward ("embedding_forward") and a deterministic scatter-add backward
// ("embedding_backward"), both over the flattened ids.
#include "autodiff/ops/embedding.h"

#include "autodiff/ops/common.h"
#include "kernels/embedding.h"

namespace gradus {

namespace {

// inputs: weight, ids; saved: ids (contiguous). grad_out: (..., C) -> grad_weight: (V, C).
void embedding_backward_rule(const Record& r, const std::vector<Tensor>& go,
                             std::vector<Tensor>& gi) {
  if (!r.input_requires_grad(0)) return;
  const Tensor& ids = r.saved[0];
  const Shape& wshape = r.input_shapes[0];
  Tensor g = raw_contiguous(go[0]);
  Tensor gw = Tensor::empty(wshape, g.dtype(), g.device());
  static const kernels::KernelRef<kernels::EmbeddingBackwardFn> kernel(kernels::kEmbeddingBackward);
  kernel(g.device(), g.dtype())(g.raw_data(), ids.data<int64_t>(), gw.raw_data(), ids.numel(),
                                wshape[0], wshape[1]);
  gi[0] = gw;
}

const OpDef& kEmbedding = register_op({.name = "embedding",
                                       .family = "embedding",
                                       .backward = embedding_backward_rule,
                                       .forward_kernels = {kernels::kEmbeddingForward},
                                       .backward_kernels = {kernels::kEmbeddingBackward},
                                       .gradcheck = "Gradcheck.embedding"});

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  detail::expect_defined("embedding", weight, "weight");
  detail::expect_defined("embedding", ids, "ids");
  detail::expect_float_compatible("embedding", {&weight});
  GRADUS_CHECK(weight.dim() == 2, "embedding", "weight must be a (V, C) table, found {}",
               weight.describe());
  detail::expect_dtype("embedding", ids, DType::i64, "ids");
  GRADUS_CHECK(ids.device() == weight.device(), "embedding",
               "ids {} and weight {} are on different devices", ids.describe(), weight.describe());
  const int64_t vocab = weight.shape()[0], cols = weight.shape()[1];
  Tensor w = raw_contiguous(weight);
  Tensor idc = raw_contiguous(ids);
  Shape out_shape = ids.shape();
  out_shape.push_back(cols);
  Tensor out = Tensor::empty(out_shape, weight.dtype(), weight.device());
  static const kernels::KernelRef<kernels::EmbeddingForwardFn> kernel(kernels::kEmbeddingForward);
  const int64_t bad = kernel(weight.device(), weight.dtype())(
      w.raw_data(), static_cast<const int64_t*>(idc.raw_data()), out.raw_data(), idc.numel(), vocab,
      cols);
  GRADUS_CHECK(bad < 0, "embedding",
               "id {} at position {} of ids {} is out of range for a table of V = {} rows "
               "(weight {}); ids must be in [0, {})",
               detail::read_i64(idc, bad), shape_str(detail::unravel_index(bad, ids.shape())),
               ids.describe(), vocab, weight.describe(), vocab);
  finish_op(kEmbedding, {weight, ids}, {out}, {idc});
  return out;
}

}  // namespace gradus
