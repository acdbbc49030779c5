// cross_entropy: one fused kernel computes each row's log-sum-exp and loss
// ("cross_entropy_forward"), the "sum" / "mean" reductions go through the deterministic "reduce"
// kernel, and the backward rebuilds softmax from the saved log-sum-exp ("cross_entropy_backward").
#include "autodiff/ops/cross_entropy.h"

#include <limits>

#include "autodiff/autocast.h"
#include "autodiff/ops/common.h"
#include "autodiff/ops/reduce.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/reduce.h"

namespace gradus {

namespace {

enum Reduction : int64_t { kNone = 0, kSum = 1, kMean = 2 };

Reduction parse_reduction(const std::string& reduction) {
  if (reduction == "none") return kNone;
  if (reduction == "sum") return kSum;
  if (reduction == "mean") return kMean;
  GRADUS_FAIL("cross_entropy", "reduction must be \"mean\", \"sum\" or \"none\", found \"{}\"",
              reduction);
}

// inputs: logits, targets; saved: logits (contiguous), targets (contiguous), lse: (rows);
// attrs.ints: reduction, ignore_index, count of non-ignored targets.
// grad_out: (...) for "none", () otherwise -> grad_logits: (..., V).
void cross_entropy_backward_rule(const Record& r, const std::vector<Tensor>& go,
                                 std::vector<Tensor>& gi) {
  if (!r.input_requires_grad(0)) return;
  const Tensor& logits = r.saved[0];
  const Tensor& targets = r.saved[1];
  const Tensor& lse = r.saved[2];
  const auto reduction = static_cast<Reduction>(r.attrs.ints[0]);
  const int64_t ignore_index = r.attrs.ints[1], count = r.attrs.ints[2];
  Tensor g = raw_contiguous(go[0]);
  // With no valid target the mean has no scale, but then every row is ignored and never scaled.
  const double scale = reduction == kMean && count > 0 ? 1.0 / static_cast<double>(count) : 1.0;
  Tensor gx = detail::empty_like(logits);
  static const kernels::KernelRef<kernels::CrossEntropyBackwardFn> kernel(
      kernels::kCrossEntropyBackward);
  kernel(logits.device(), logits.dtype())(
      logits.raw_data(), static_cast<const int64_t*>(targets.raw_data()), lse.raw_data(),
      g.raw_data(), reduction == kNone ? 1 : 0, scale, gx.raw_data(), gx.dtype(), targets.numel(),
      logits.shape().back(), ignore_index);
  gi[0] = gx;
}

const OpDef& kCrossEntropy = register_op(
    {.name = "cross_entropy",
     .family = "cross_entropy",
     .backward = cross_entropy_backward_rule,
     .forward_kernels = {kernels::kCrossEntropyCheckTargets, kernels::kCrossEntropyForward,
                         kernels::kReduce, kernels::kUnary},
     .backward_kernels = {kernels::kCrossEntropyBackward},
     .gradcheck = "Gradcheck.cross_entropy"});

}  // namespace

Tensor cross_entropy(const Tensor& logits_in, const Tensor& targets, int64_t ignore_index,
                     const std::string& reduction) {
  const Tensor logits = detail::autocast_wide(logits_in);  // the loss in the wide dtype
  const char* op = "cross_entropy";
  detail::expect_defined(op, logits, "logits");
  detail::expect_defined(op, targets, "targets");
  detail::expect_float_compatible(op, {&logits});
  GRADUS_CHECK(logits.dim() >= 1, op, "logits must have a class axis (the last), found {}",
               logits.describe());
  detail::expect_dtype(op, targets, DType::i64, "targets");
  GRADUS_CHECK(targets.device() == logits.device(), op,
               "targets {} and logits {} are on different devices", targets.describe(),
               logits.describe());
  const Shape lead(logits.shape().begin(), logits.shape().end() - 1);
  GRADUS_CHECK(targets.shape() == lead, op,
               "targets {} must have the leading shape {} of logits {} (classes on the last axis)",
               targets.describe(), shape_str(lead), logits.describe());
  const Reduction red = parse_reduction(reduction);

  const int64_t vocab = logits.shape().back(), rows = targets.numel();
  Tensor xc = raw_contiguous(logits);
  Tensor tc = raw_contiguous(targets);
  Tensor loss = detail::empty_like(lead, logits);
  Tensor lse = detail::empty_like({rows}, logits);
  int64_t count = 0;
  static const kernels::KernelRef<kernels::CrossEntropyCheckTargetsFn> check(
      kernels::kCrossEntropyCheckTargets);
  static const kernels::KernelRef<kernels::CrossEntropyForwardFn> kernel(
      kernels::kCrossEntropyForward);
  const int64_t bad = check(logits.device(), logits.dtype())(
      static_cast<const int64_t*>(tc.raw_data()), rows, vocab, ignore_index, &count);
  GRADUS_CHECK(bad < 0, op,
               "target {} at position {} of targets {} is out of range for V = {} classes "
               "(logits {}); targets must be in [0, {}) or equal ignore_index ({})",
               detail::read_i64(tc, bad), shape_str(detail::unravel_index(bad, lead)),
               targets.describe(), vocab, logits.describe(), vocab, ignore_index);
  kernel(logits.device(), logits.dtype())(xc.raw_data(), static_cast<const int64_t*>(tc.raw_data()),
                                          loss.raw_data(), lse.raw_data(), rows, vocab,
                                          ignore_index);

  Tensor out = loss;
  if (red != kNone) {
    Tensor total = detail::raw_reduce(static_cast<int>(kernels::ReduceOp::sum),
                                      raw_try_reshape_view(loss, {rows}), {0});
    out = raw_try_reshape_view(total, {});
    if (red == kMean) {
      // Every target ignored: 0/0, which is NaN (as PyTorch).
      const double inv_count =
          count > 0 ? 1.0 / static_cast<double>(count) : std::numeric_limits<double>::quiet_NaN();
      static const kernels::KernelRef<kernels::UnaryFn> unary(kernels::kUnary);
      unary(out.device(), out.dtype())(kernels::UnaryOp::affine, {inv_count, 0.0}, out, out);
    }
  }
  finish_op(kCrossEntropy, {logits, targets}, {out}, {xc, tc, lse},
            Attrs{.ints = {static_cast<int64_t>(red), ignore_index, count}});
  return out;
}

}  // namespace gradus
