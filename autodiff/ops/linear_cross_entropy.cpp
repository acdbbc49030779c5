// linear_cross_entropy: per chunk of rows, the "gemm" kernel for the logits, the
// "cross_entropy_forward" kernel for the loss and log-sum-exp, and (when a gradient will be needed)
// "cross_entropy_backward" and two more gemms for the chunk's dL/dx rows and its share of dL/dW.
// Only the per-row losses (rows), dL/dx (rows, C) and dL/dW (V, C) outlive a chunk.
#include "autodiff/ops/linear_cross_entropy.h"

#include <algorithm>
#include <limits>

#include "autodiff/autocast.h"
#include "autodiff/ops/common.h"
#include "autodiff/ops/reduce.h"
#include "core/float_width.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/reduce.h"

namespace gradus {

namespace {

enum Reduction : int64_t { kSum = 1, kMean = 2 };

// Logits per chunk: 2^24 (64 MiB in f32, plus as much for their gradient) keeps the transient
// memory far below the (rows, V) tensors it replaces (333 rows of a 50304-token vocabulary: each
// gemm is still 333 x 768 x 50304).
constexpr int64_t kChunkLogits = int64_t{1} << 24;

// out = a * s for a () tensor s (broadcast), through the elementwise kernel: the upstream gradient
// stays on the device (no read-back).
Tensor times_scalar(const Tensor& a, const Tensor& s) {
  Tensor out = detail::empty_like(a);
  static const kernels::KernelRef<kernels::BinaryFn> binary(kernels::kBinary);
  binary(a.device(), a.dtype())(kernels::BinaryOp::mul, a, raw_expand(s, a.shape()), out);
  return out;
}

// The gemm on operands of like's dtype writing `out` dtype: kGemm when they agree, else
// kGemmWideOutput (out is their wide dtype; the caller checked that the device has it).
void gemm(const Tensor& like, const kernels::GemmArgs& g, DType out) {
  static const kernels::KernelRef<kernels::GemmFn> kernel(kernels::kGemm);
  static const kernels::KernelRef<kernels::GemmFn> wide_kernel(kernels::kGemmWideOutput);
  (out == like.dtype() ? kernel : wide_kernel)(like.device(), like.dtype())(g);
}
void gemm(const Tensor& like, const kernels::GemmArgs& g) { gemm(like, g, like.dtype()); }

// saved: [dx (rows, C) or undefined, dw (V, C) or undefined], the gradients per unit of upstream
// gradient before the mean's 1 / count; attrs.ints: [reduction, count].
void linear_cross_entropy_backward_rule(const Record& r, const std::vector<Tensor>& go,
                                        std::vector<Tensor>& gi) {
  const auto reduction = static_cast<Reduction>(r.attrs.ints[0]);
  const int64_t count = r.attrs.ints[1];
  // With no valid target every unit gradient is zero: any finite scale will do.
  const double inv_count = reduction == kMean && count > 0 ? 1.0 / static_cast<double>(count) : 1.0;
  static const kernels::KernelRef<kernels::UnaryFn> unary(kernels::kUnary);
  auto scaled = [&](const Tensor& unit, DType to) {
    Tensor s = raw_to_dtype(raw_contiguous(go[0]), unit.dtype());  // () on the device
    Tensor s_scaled = detail::empty_like(s);
    unary(s.device(), s.dtype())(kernels::UnaryOp::affine, {inv_count, 0.0}, s, s_scaled);
    Tensor g = times_scalar(unit, s_scaled);
    return g.dtype() == to ? g : raw_to_dtype(g, to);
  };
  if (r.input_requires_grad(0) && r.saved[0].defined())
    gi[0] = raw_try_reshape_view(scaled(r.saved[0], r.input_dtypes[0]), r.input_shapes[0]);
  if (r.input_requires_grad(1) && r.saved[1].defined())
    gi[1] = scaled(r.saved[1], r.input_dtypes[1]);
}

const OpDef& kLinearCrossEntropy =
    register_op({.name = "linear_cross_entropy",
                 .family = "cross_entropy",
                 .backward = linear_cross_entropy_backward_rule,
                 .forward_kernels = {kernels::kGemm, kernels::kCrossEntropyCheckTargets,
                                     kernels::kCrossEntropyForward, kernels::kCrossEntropyBackward,
                                     kernels::kReduce},
                 .backward_kernels = {kernels::kBinary, kernels::kUnary},
                 .gradcheck = "Gradcheck.linear_cross_entropy"});

}  // namespace

Tensor linear_cross_entropy(const Tensor& x_in, const Tensor& weight_in, const Tensor& targets,
                            int64_t ignore_index, const std::string& reduction,
                            int64_t chunk_rows) {
  const char* op = "linear_cross_entropy";
  detail::expect_defined(op, x_in, "x");
  detail::expect_defined(op, weight_in, "weight");
  detail::expect_defined(op, targets, "targets");
  // Cast without a tape record: the op records x_in and weight_in and returns their gradients in
  // their own dtypes (an f32 master weight's dW summed in f32 straight from the bf16 products).
  const detail::ProductOperand x_op = detail::autocast_product_operand(x_in),
                               w_op = detail::autocast_product_operand(weight_in);
  const Tensor &x = x_op.value, &w = w_op.value;
  detail::expect_float_compatible(op, {&x, &w});
  detail::expect_rank(op, w, 2, "weight (V, C)");
  GRADUS_CHECK(x.dim() >= 1 && x.size(-1) == w.size(1), op,
               "x {} must end in the C = {} channels of weight {} (V, C)", x.describe(), w.size(1),
               w.describe());
  detail::expect_dtype(op, targets, DType::i64, "targets");
  const Shape lead(x.shape().begin(), x.shape().end() - 1);
  GRADUS_CHECK(targets.shape() == lead && targets.device() == x.device(), op,
               "targets {} must have the leading shape {} of x {}, on its device",
               targets.describe(), shape_str(lead), x.describe());
  GRADUS_CHECK(reduction == "mean" || reduction == "sum", op,
               "reduction must be \"mean\" or \"sum\" (per-row losses: cross_entropy of linear), "
               "found \"{}\"",
               reduction);
  GRADUS_CHECK(chunk_rows >= 0, op, "chunk_rows must be >= 0, found {}", chunk_rows);
  const Reduction red = reduction == "mean" ? kMean : kSum;

  const int64_t rows = targets.numel(), vocab = w.size(0), C = w.size(1);
  GRADUS_CHECK(vocab >= 1, op, "weight {} has no classes", w.describe());
  const DType compute = x.dtype();
  const std::optional<AutocastState> autocast = autocast_state();
  const DType loss_dtype = autocast ? autocast->wide : compute;  // as cross_entropy's autocast_wide
  const bool need_dx = grad_enabled() && x_op.recorded.requires_grad();
  const bool need_dw = grad_enabled() && w_op.recorded.requires_grad();
  // The logits in the loss's dtype where the gemm writes it (else cast after it).
  const DType logits_dtype = detail::gemm_output_dtype(loss_dtype, compute, x.device());
  // The cross-entropy kernel writes dL/dlogits in the loss's dtype or the next narrower one.
  const DType grad_dtype =
      loss_dtype == compute || is_next_narrower(compute, loss_dtype) ? compute : loss_dtype;
  // dx in x_in's dtype where the gemm writes it, else in the compute dtype (cast in the backward).
  const DType dx_dtype = detail::gemm_output_dtype(x_op.recorded.dtype(), compute, x.device());
  // dW sums over the chunks: in weight_in's dtype where the gemm writes it (an f32 master weight of
  // bf16 products, f64 of f32 ones), else in f32 for bf16 (a bf16 running sum would round every
  // chunk) and in the compute dtype otherwise.
  const DType direct_dw = detail::gemm_output_dtype(w_op.recorded.dtype(), compute, x.device());
  const DType accumulate = direct_dw != compute     ? direct_dw
                           : compute == DType::bf16 ? DType::f32
                                                    : compute;

  const Tensor xc = raw_try_reshape_view(raw_contiguous(x), {rows, C});  // (rows, C)
  const Tensor wc = raw_contiguous(w);                                   // (V, C)
  const Tensor tc = raw_try_reshape_view(raw_contiguous(targets), {rows});
  Tensor losses = Tensor::empty({rows}, loss_dtype, x.device());
  Tensor dx = need_dx ? Tensor::empty({rows, C}, dx_dtype, x.device()) : Tensor();
  Tensor dw;
  if (need_dw) {
    dw = Tensor::empty({vocab, C}, accumulate, x.device());
    raw_fill_(dw, 0.0);
  }
  Tensor one = detail::scalar_like(1.0, Tensor::empty({}, loss_dtype, x.device()));

  // Every target checked at once: the op's only wait for the device (none per chunk).
  static const kernels::KernelRef<kernels::CrossEntropyCheckTargetsFn> check(
      kernels::kCrossEntropyCheckTargets);
  int64_t count = 0;
  const int64_t bad = check(x.device(), loss_dtype)(static_cast<const int64_t*>(tc.raw_data()),
                                                    rows, vocab, ignore_index, &count);
  GRADUS_CHECK(bad < 0, op,
               "target {} at position {} of targets {} is out of range for V = {} classes "
               "(weight {}); targets must be in [0, {}) or equal ignore_index ({})",
               detail::read_i64(tc, bad), shape_str(detail::unravel_index(bad, lead)),
               targets.describe(), vocab, w.describe(), vocab, ignore_index);
  static const kernels::KernelRef<kernels::CrossEntropyForwardFn> ce_forward(
      kernels::kCrossEntropyForward);
  static const kernels::KernelRef<kernels::CrossEntropyBackwardFn> ce_backward(
      kernels::kCrossEntropyBackward);
  static const kernels::KernelRef<kernels::BinaryFn> binary(kernels::kBinary);
  const int64_t chunk =
      std::min(std::max<int64_t>(rows, 1),
               chunk_rows > 0 ? chunk_rows : std::max<int64_t>(1, kChunkLogits / vocab));
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t n = std::min(chunk, rows - r0);
    const Tensor x_rows = raw_slice(xc, 0, r0, r0 + n), t_rows = raw_slice(tc, 0, r0, r0 + n);
    // logits = x_rows W^T: (n, V), in the loss's dtype straight from the product where the gemm
    // can write it (bf16 operands: the f32 accumulator, never rounded to bf16), else cast.
    Tensor logits = Tensor::empty({n, vocab}, logits_dtype, x.device());
    gemm(x_rows,
         {.trans_b = true,
          .m = n,
          .n = vocab,
          .k = C,
          .a = x_rows.raw_data(),
          .lda = C,
          .b = wc.raw_data(),
          .ldb = C,
          .c = logits.raw_data(),
          .ldc = vocab},
         logits_dtype);
    if (logits_dtype != loss_dtype) logits = raw_to_dtype(logits, loss_dtype);
    Tensor lse = Tensor::empty({n}, loss_dtype, x.device());
    ce_forward(x.device(), loss_dtype)(
        logits.raw_data(), static_cast<const int64_t*>(t_rows.raw_data()),
        raw_slice(losses, 0, r0, r0 + n).raw_data(), lse.raw_data(), n, vocab, ignore_index);
    if (!need_dx && !need_dw) continue;
    // dL/dlogits per unit of upstream gradient: softmax - onehot (zero rows where ignored), (n, V),
    // written in the products' dtype by the kernel where it can (no cast, no f32 copy).
    Tensor grad = Tensor::empty({n, vocab}, grad_dtype, x.device());
    ce_backward(x.device(), loss_dtype)(
        logits.raw_data(), static_cast<const int64_t*>(t_rows.raw_data()), lse.raw_data(),
        one.raw_data(), 0, 1.0, grad.raw_data(), grad_dtype, n, vocab, ignore_index);
    logits = Tensor();  // the chunk's logits are no longer needed
    if (grad_dtype != compute) grad = raw_to_dtype(grad, compute);
    if (need_dx)  // dx rows = grad W: (n, V) x (V, C)
      gemm(grad,
           {.m = n,
            .n = C,
            .k = vocab,
            .a = grad.raw_data(),
            .lda = vocab,
            .b = wc.raw_data(),
            .ldb = C,
            .c = raw_slice(dx, 0, r0, r0 + n).raw_data(),
            .ldc = C},
           dx_dtype);
    if (need_dw) {  // dw += grad^T x_rows: (V, n) x (n, C), accumulated in `accumulate`
      kernels::GemmArgs g{.trans_a = true,
                          .m = vocab,
                          .n = C,
                          .k = n,
                          .a = grad.raw_data(),
                          .lda = vocab,
                          .b = x_rows.raw_data(),
                          .ldb = C,
                          .ldc = C};
      if (detail::gemm_output_dtype(accumulate, compute, x.device()) == accumulate) {
        g.beta = 1.0;
        g.c = dw.raw_data();
        gemm(grad, g, accumulate);
      } else {  // no wide gemm here: a bf16 product rounds once, then adds to the f32 sum
        Tensor part = Tensor::empty({vocab, C}, compute, x.device());
        g.c = part.raw_data();
        gemm(grad, g);
        binary(dw.device(), accumulate)(kernels::BinaryOp::add, dw, raw_to_dtype(part, accumulate),
                                        dw);
      }
    }
  }

  Tensor out = raw_try_reshape_view(
      detail::raw_reduce(static_cast<int>(kernels::ReduceOp::sum), losses, {0}), {});
  if (red == kMean) {
    // Every target ignored: 0/0, which is NaN (as PyTorch).
    const double inv_count =
        count > 0 ? 1.0 / static_cast<double>(count) : std::numeric_limits<double>::quiet_NaN();
    static const kernels::KernelRef<kernels::UnaryFn> unary(kernels::kUnary);
    unary(out.device(), out.dtype())(kernels::UnaryOp::affine, {inv_count, 0.0}, out, out);
  }
  finish_op(kLinearCrossEntropy, {x_op.recorded, w_op.recorded, targets}, {out}, {dx, dw},
            Attrs{.ints = {static_cast<int64_t>(red), count}});
  return out;
}

}  // namespace gradus
