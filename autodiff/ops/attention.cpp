// scaled_dot_product_attention: one forward kernel that keeps only the output and a per-row
// log-sum-exp, one backward kernel that rebuilds the probabilities from them (kernels/attention.h).
#include "autodiff/ops/attention.h"

#include <cmath>

#include "autodiff/autocast.h"
#include "autodiff/ops/common.h"
#include "autodiff/ops/heads_layout.h"
#include "kernels/attention.h"

namespace gradus {

namespace {

// The softmax statistics (lse, delta) are f64 for f64 and f32 otherwise: a bf16 log-sum-exp would
// lose the probabilities' precision in the backward.
DType stats_dtype(DType dtype) { return dtype == DType::f64 ? DType::f64 : DType::f32; }

kernels::AttentionShape shape_of(const Tensor& q, const Tensor& k, double scale, bool causal) {
  return {.batch = q.size(0),
          .heads = q.size(1),
          .t_q = q.size(2),
          .t_k = k.size(2),
          .head_dim = q.size(3),
          .scale = scale,
          .causal = causal};
}

// saved: [q, k, v, out, lse] (q, k, v with unit last stride); attrs.ints: [causal];
// attrs.floats: [scale].
void attention_backward_rule(const Record& r, const std::vector<Tensor>& go,
                             std::vector<Tensor>& gi) {
  const Tensor &q = r.saved[0], &k = r.saved[1], &v = r.saved[2], &out = r.saved[3],
               &lse = r.saved[4];
  const kernels::AttentionShape s = shape_of(q, k, r.attrs.floats[0], r.attrs.ints[0] != 0);
  Tensor grad_out = detail::kernel_ready_heads(go[0]);
  Tensor delta = Tensor::empty(lse.shape(), lse.dtype(), lse.device());
  // Each gradient is laid out as its operand: the heads of a projection (and rope's output, which
  // keeps their layout) as (B, T, H, D), so that rope's backward and the merge of the heads read
  // them without a copy; a contiguous (B, H, T, D) operand gets a contiguous gradient.
  auto like = [](const Tensor& x) {
    return x.stride(1) < x.stride(2) ? detail::empty_heads(x, x.size(2))
                                     : detail::empty_like(x.shape(), x);
  };
  Tensor grad_q = like(q), grad_k = like(k), grad_v = like(v);
  static const kernels::KernelRef<kernels::AttentionBackwardFn> kernel(kernels::kAttentionBackward);
  kernel(q.device(), q.dtype())(
      s, detail::heads_operand(q), detail::heads_operand(k), detail::heads_operand(v),
      detail::heads_operand(out), detail::heads_operand(grad_out), lse.raw_data(), delta.raw_data(),
      detail::heads_output(grad_q), detail::heads_output(grad_k), detail::heads_output(grad_v));
  gi[0] = grad_q;
  gi[1] = grad_k;
  gi[2] = grad_v;
}

const OpDef& kAttention = register_op({.name = "scaled_dot_product_attention",
                                       .family = "attention",
                                       .backward = attention_backward_rule,
                                       .forward_kernels = {kernels::kAttentionForward},
                                       .backward_kernels = {kernels::kAttentionBackward},
                                       .gradcheck = "Gradcheck.scaled_dot_product_attention"});

Tensor scaled_dot_product_attention_impl(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                         bool causal, std::optional<double> scale_in) {
  const char* name = "scaled_dot_product_attention";
  detail::expect_float_compatible(name, {&q_in, &k_in, &v_in});
  detail::expect_rank(name, q_in, 4, "q (B, H, Tq, D)");
  detail::expect_rank(name, k_in, 4, "k (B, H, Tk, D)");
  detail::expect_rank(name, v_in, 4, "v (B, H, Tk, D)");
  GRADUS_CHECK(k_in.shape() == v_in.shape(), name,
               "k and v must have the same shape (B, H, Tk, D), found k {} and v {}",
               k_in.describe(), v_in.describe());
  GRADUS_CHECK(
      q_in.size(0) == k_in.size(0) && q_in.size(1) == k_in.size(1) && q_in.size(3) == k_in.size(3),
      name, "q {} and k {} must agree in B, H and D", q_in.describe(), k_in.describe());
  GRADUS_CHECK(k_in.size(2) >= 1 && q_in.size(3) >= 1, name,
               "needs at least one key and one channel, found q {} and k {}", q_in.describe(),
               k_in.describe());
  GRADUS_CHECK(!causal || k_in.size(2) >= q_in.size(2), name,
               "a causal mask needs at least as many keys as queries (the queries are the last Tq "
               "positions), found q {} and k {}",
               q_in.describe(), k_in.describe());
  const double scale = scale_in ? *scale_in : 1.0 / std::sqrt(static_cast<double>(q_in.size(3)));
  GRADUS_CHECK(std::isfinite(scale), name, "scale must be finite, found {}", scale);
  const Tensor q = detail::kernel_ready_heads(q_in), k = detail::kernel_ready_heads(k_in),
               v = detail::kernel_ready_heads(v_in);
  const kernels::AttentionShape s = shape_of(q, k, scale, causal);
  Tensor out = detail::empty_heads(q, q.size(2));
  Tensor lse = Tensor::empty({q.size(0), q.size(1), q.size(2)}, stats_dtype(q.dtype()), q.device());
  static const kernels::KernelRef<kernels::AttentionForwardFn> kernel(kernels::kAttentionForward);
  kernel(q.device(), q.dtype())(s, detail::heads_operand(q), detail::heads_operand(k),
                                detail::heads_operand(v), detail::heads_output(out),
                                lse.raw_data());
  finish_op(kAttention, {q_in, k_in, v_in}, {out}, {q, k, v, out, lse},
            Attrs{.ints = {causal ? 1 : 0}, .floats = {scale}});
  return out;
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                    bool causal, std::optional<double> scale_in) {
  const char* name = "scaled_dot_product_attention";
  detail::expect_defined(name, q_in, "q");
  detail::expect_defined(name, k_in, "k");
  detail::expect_defined(name, v_in, "v");
  return scaled_dot_product_attention_impl(detail::autocast_compute(q_in),
                                           detail::autocast_compute(k_in),
                                           detail::autocast_compute(v_in), causal, scale_in);
}

}  // namespace gradus
