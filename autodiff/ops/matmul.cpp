// matmul and linear: forward and backward through the batched "gemm" kernel. Transposes in the
// backward (dA = dC B^T, dB = A^T dC) are transpose flags, never copies; the gradient of an operand
// broadcast over the batch is summed inside gemm (stride-0 output) rather than by the engine.
//
// Under autocast the operands are cast to the compute dtype without a tape record
// (detail::autocast_product_operand); the op records the operands as they arrived and writes each
// gradient in its operand's dtype: kGemmWideOutput
// writes an f32 master weight's dW from the bf16 product directly (summed in f32, never rounded to
// bf16). kGemmWideOutput is optional, so it is not in the op's kernel lists: where a device lacks
// it the gradient is computed in the compute dtype and cast (detail::gemm_output_dtype).
#include "autodiff/ops/matmul.h"

#include <algorithm>

#include "autodiff/autocast.h"
#include "autodiff/ops/common.h"
#include "autodiff/ops/reduce.h"
#include "core/strided_loop.h"
#include "kernels/gemm.h"
#include "kernels/reduce.h"

namespace gradus {

namespace {

// A (batch..., rows, cols) tensor as BLAS reads it: each matrix stored as is (element (i, j) at
// i * ld + j) or transposed (at j * ld + i), ld being the stride BLAS calls the leading dimension.
struct Operand {
  Tensor t;  // the tensor whose storage is read: the input itself or a contiguous copy of it
  bool trans = false;
  int64_t ld = 1;
};

// Row-major and column-major (transposed view) matrices are read in place; any other layout of the
// last two axes (a strided slice, a stride-0 expansion) is copied to a contiguous tensor first.
// Batch axes keep their strides, broadcast ones included.
Operand as_blas_operand(const Tensor& x) {
  const int64_t nd = x.dim();
  const int64_t rows = x.size(nd - 2), cols = x.size(nd - 1);
  const int64_t sr = x.stride(nd - 2), sc = x.stride(nd - 1);
  const int64_t min_row_ld = std::max<int64_t>(cols, 1), min_col_ld = std::max<int64_t>(rows, 1);
  // A size-1 axis places no constraint on its stride.
  if ((cols <= 1 || sc == 1) && (rows <= 1 || sr >= min_row_ld))
    return {x, false, rows <= 1 ? min_row_ld : sr};
  if ((rows <= 1 || sr == 1) && (cols <= 1 || sc >= min_col_ld))
    return {x, true, cols <= 1 ? min_col_ld : sc};
  return {raw_contiguous(x), false, min_row_ld};
}

// The strides of x's batch axes (all but the last two) aligned to `batch` from the right, 0 where x
// is broadcast (a missing or size-1 axis).
Strides batch_strides(const Tensor& x, const Shape& batch) {
  const int64_t nb = static_cast<int64_t>(batch.size()), xb = x.dim() - 2;
  Strides s(batch.size(), 0);
  for (int64_t d = 0; d < xb; ++d)
    if (x.size(d) != 1) s[d + nb - xb] = x.stride(d);
  return s;
}

Shape batch_shape(const Tensor& x) { return Shape(x.shape().begin(), x.shape().end() - 2); }

const char* element_ptr(const Tensor& t, int64_t offset) {
  return static_cast<const char*>(t.raw_data()) + offset * dtype_size(t.dtype());
}

// out[b] = op(x[b]) * op(y[b]) for every index b of `batch`, where op transposes when tx / ty is
// set. x: (xb..., ., .), y: (yb..., ., .), out: contiguous (ob..., M, N), with xb, yb and ob each
// broadcasting to `batch`. Where out is broadcast the products are summed into it (the gradient of
// a broadcast operand). With `accumulate` the products are added to out's current values. out
// has the operands' dtype, or their wide dtype (kGemmWideOutput).
void batched_product(const Operand& x, bool tx, const Operand& y, bool ty, const Tensor& out,
                     const Shape& batch, bool accumulate = false) {
  const int64_t xr = x.t.size(-2), xc = x.t.size(-1), yr = y.t.size(-2), yc = y.t.size(-1);
  kernels::GemmArgs g;
  g.trans_a = x.trans != tx;
  g.trans_b = y.trans != ty;
  g.m = tx ? xc : xr;
  g.k = tx ? xr : xc;
  g.n = ty ? yr : yc;
  g.lda = x.ld;
  g.ldb = y.ld;
  g.ldc = std::max<int64_t>(g.n, 1);

  const Strides sx = batch_strides(x.t, batch), sy = batch_strides(y.t, batch),
                so = batch_strides(out, batch);
  const CollapsedLoop<3> loop = collapse_loop<3>(batch, {&sx, &sy, &so});
  const int64_t nd = static_cast<int64_t>(loop.shape.size());
  g.batch = loop.shape[nd - 1];
  g.stride_a = loop.strides[0][nd - 1];
  g.stride_b = loop.strides[1][nd - 1];
  g.stride_c = loop.strides[2][nd - 1];

  // Outer batch axes (layouts the kernel's one batch stride cannot express) are looped here. When
  // one of them sums into out, out starts from zero and every gemm adds to it.
  int64_t outer = 1;
  bool outer_sums = false;
  for (int64_t d = 0; d + 1 < nd; ++d) {
    outer *= loop.shape[d];
    outer_sums = outer_sums || loop.strides[2][d] == 0;
  }
  if (outer_sums && !accumulate) raw_fill_(out, 0.0);
  g.beta = (accumulate || outer_sums) ? 1.0 : 0.0;

  static const kernels::KernelRef<kernels::GemmFn> kernel(kernels::kGemm);
  static const kernels::KernelRef<kernels::GemmFn> wide_kernel(kernels::kGemmWideOutput);
  const DType operands = x.t.dtype();
  const kernels::GemmFn fn = out.dtype() == operands ? kernel(out.device(), operands)
                                                     : wide_kernel(out.device(), operands);
  for (int64_t o = 0; o < outer; ++o) {
    int64_t off[3] = {0, 0, 0}, rem = o;
    for (int64_t d = nd - 2; d >= 0; --d) {
      const int64_t i = rem % loop.shape[d];
      rem /= loop.shape[d];
      for (int k = 0; k < 3; ++k) off[k] += i * loop.strides[k][d];
    }
    g.a = element_ptr(x.t, off[0]);
    g.b = element_ptr(y.t, off[1]);
    g.c = const_cast<char*>(element_ptr(out, off[2]));
    fn(g);
  }
}

// x viewed with `shape` (same element count): a view when the strides allow it, else a copy.
Tensor reshaped(const Tensor& x, const Shape& shape) {
  Tensor v = raw_try_reshape_view(x, shape);
  return v.defined() ? v : raw_try_reshape_view(raw_contiguous(x), shape);
}

// An uninitialised gradient buffer of `shape` for input `input` of r, products computed in
// like's dtype on like's device: in the input's own dtype where the gemm can write it.
Tensor gradient_buffer(const Record& r, size_t input, const Shape& shape, const Tensor& like) {
  return Tensor::empty(
      shape, detail::gemm_output_dtype(r.input_dtypes[input], like.dtype(), like.device()),
      like.device());
}

// ------------------------------------------------------------------------------------ matmul

void matmul_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi);

const OpDef& kMatmul = register_op({.name = "matmul",
                                    .family = "matmul",
                                    .backward = matmul_backward,
                                    .forward_kernels = {kernels::kGemm},
                                    .backward_kernels = {kernels::kGemm},
                                    .gradcheck = "Gradcheck.matmul"});

// The full (batch..., M, N) shape of the product of the 2-D-or-more operands a2 and b2.
Shape product_shape(const Shape& batch, const Tensor& a2, const Tensor& b2) {
  Shape s = batch;
  s.push_back(a2.size(-2));
  s.push_back(b2.size(-1));
  return s;
}

// saved: the operands as BLAS reads them, 1-D ones already given their added axis:
// a2: (ab..., M, K), b2: (bb..., K, N).
void matmul_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  const Operand a = as_blas_operand(r.saved[0]), b = as_blas_operand(r.saved[1]);
  const Shape batch = broadcast_shapes(batch_shape(a.t), batch_shape(b.t), "matmul");
  // dC: (batch..., M, N), the added axes of 1-D operands restored.
  const Operand dc = as_blas_operand(reshaped(go[0], product_shape(batch, a.t, b.t)));
  if (r.input_requires_grad(0)) {  // dA = dC B^T: (ab..., M, K), summed where a was broadcast
    Tensor da = gradient_buffer(r, 0, a.t.shape(), dc.t);
    batched_product(dc, false, b, true, da, batch);
    gi[0] = raw_try_reshape_view(detail::in_dtype(da, r.input_dtypes[0]), r.input_shapes[0]);
  }
  if (r.input_requires_grad(1)) {  // dB = A^T dC: (bb..., K, N), summed where b was broadcast
    Tensor db = gradient_buffer(r, 1, b.t.shape(), dc.t);
    batched_product(a, true, dc, false, db, batch);
    gi[1] = raw_try_reshape_view(detail::in_dtype(db, r.input_dtypes[1]), r.input_shapes[1]);
  }
}

// ------------------------------------------------------------------------------------ linear

void linear_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi);

const OpDef& kLinear = register_op({.name = "linear",
                                    .family = "matmul",
                                    .backward = linear_backward,
                                    .forward_kernels = {kernels::kGemm},
                                    .backward_kernels = {kernels::kGemm, kernels::kReduce},
                                    .gradcheck = "Gradcheck.linear"});

// saved: x2: (rows, in) as BLAS reads it, weight: (out, in) as BLAS reads it.
void linear_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  const Operand x = as_blas_operand(r.saved[0]), w = as_blas_operand(r.saved[1]);
  const int64_t rows = x.t.size(0), out_features = w.t.size(0);
  const Tensor dy2 = reshaped(go[0], {rows, out_features});
  const Operand dy = as_blas_operand(dy2);
  if (r.input_requires_grad(0)) {  // dx = dy W: (rows, out) x (out, in)
    Tensor dx = gradient_buffer(r, 0, x.t.shape(), dy2);
    batched_product(dy, false, w, false, dx, {});
    gi[0] = raw_try_reshape_view(detail::in_dtype(dx, r.input_dtypes[0]), r.input_shapes[0]);
  }
  if (r.input_requires_grad(1)) {  // dW = dy^T x: (out, rows) x (rows, in), one gemm over all rows
    Tensor dw = gradient_buffer(r, 1, w.t.shape(), dy2);
    batched_product(dy, true, x, false, dw, {});
    gi[1] = detail::in_dtype(dw, r.input_dtypes[1]);
  }
  if (r.inputs.size() > 2 && r.input_requires_grad(2)) {  // db: the rows of dy summed
    Tensor db = detail::raw_reduce(static_cast<int>(kernels::ReduceOp::sum), dy2, {0});
    gi[2] = raw_try_reshape_view(detail::in_dtype(db, r.input_dtypes[2]), {out_features});
  }
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  const detail::ProductOperand a_op = detail::autocast_product_operand(a_in),
                               b_op = detail::autocast_product_operand(b_in);
  const Tensor &a = a_op.value, &b = b_op.value;
  detail::expect_float_compatible("matmul", {&a, &b});
  GRADUS_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul",
               "expected operands of rank 1 or more but found a {} and b {}", a.describe(),
               b.describe());
  // numpy.matmul's 1-D rule: a (K,) is a row (1, K), b (K,) a column (K, 1).
  const Tensor a2 = a.dim() == 1 ? raw_unsqueeze(a, 0) : a;
  const Tensor b2 = b.dim() == 1 ? raw_unsqueeze(b, 1) : b;
  GRADUS_CHECK(a2.size(-1) == b2.size(-2), "matmul",
               "inner dimensions differ: a {} has K = {} but b {} has K = {} "
               "(expected a: (..., M, K), b: (..., K, N))",
               a.describe(), a2.size(-1), b.describe(), b2.size(-2));
  Shape batch;
  try {
    batch = broadcast_shapes(batch_shape(a2), batch_shape(b2), "matmul");
  } catch (const Error& e) {  // restate with the operands' full shapes
    GRADUS_FAIL("matmul", "the batch axes of a {} and b {} do not broadcast ({})", a.describe(),
                b.describe(), e.what());
  }
  const Operand oa = as_blas_operand(a2), ob = as_blas_operand(b2);
  Tensor out = Tensor::empty(product_shape(batch, a2, b2), a.dtype(), a.device());
  batched_product(oa, false, ob, false, out, batch);

  Shape result_shape = batch;
  if (a.dim() > 1) result_shape.push_back(a2.size(-2));
  if (b.dim() > 1) result_shape.push_back(b2.size(-1));
  out = raw_try_reshape_view(out, result_shape);
  finish_op(kMatmul, {a_op.recorded, b_op.recorded}, {out}, {oa.t, ob.t});
  return out;
}

Tensor linear(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in) {
  const detail::ProductOperand x_op = detail::autocast_product_operand(x_in),
                               weight_op = detail::autocast_product_operand(weight_in),
                               bias_op = detail::autocast_product_operand(bias_in);
  const Tensor &x = x_op.value, &weight = weight_op.value, &bias = bias_op.value;
  const bool has_bias = bias.defined();
  if (has_bias)
    detail::expect_float_compatible("linear", {&x, &weight, &bias});
  else
    detail::expect_float_compatible("linear", {&x, &weight});
  GRADUS_CHECK(x.dim() >= 1, "linear", "expected x: (..., in) of rank 1 or more but found {}",
               x.describe());
  detail::expect_rank("linear", weight, 2, "weight: (out, in)");
  const int64_t in_features = x.size(-1), out_features = weight.size(0);
  GRADUS_CHECK(weight.size(1) == in_features, "linear",
               "x {} has {} input features but weight {} expects {} (weight: (out, in))",
               x.describe(), in_features, weight.describe(), weight.size(1));
  if (has_bias)
    GRADUS_CHECK(bias.dim() == 1 && bias.size(0) == out_features, "linear",
                 "expected bias of shape ({},) for weight {} but found {}", out_features,
                 weight.describe(), bias.describe());

  Shape lead(x.shape().begin(), x.shape().end() - 1);
  const int64_t rows = shape_numel(lead);
  const Operand ox = as_blas_operand(reshaped(x, {rows, in_features}));
  const Operand ow = as_blas_operand(weight);
  Tensor y = Tensor::empty({rows, out_features}, x.dtype(), x.device());
  // The bias is written first and the gemm adds x W^T onto it (beta = 1): no second pass over y.
  if (has_bias) raw_copy_(y, raw_expand(bias, {rows, out_features}));
  batched_product(ox, false, ow, true, y, {}, has_bias);

  Shape out_shape = lead;
  out_shape.push_back(out_features);
  y = raw_try_reshape_view(y, out_shape);
  finish_op(kLinear, {x_op.recorded, weight_op.recorded, bias_op.recorded}, {y}, {ox.t, ow.t});
  return y;
}

}  // namespace gradus
