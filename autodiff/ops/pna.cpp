// pna_moments: one forward kernel that keeps the moments, the extrema's arg indices and (softmax
// adjacency) a per-row log-sum-exp; one backward kernel that rebuilds the adjacency from q and k
// (kernels/pna.h).
#include "autodiff/ops/pna.h"

#include <cmath>

#include "autodiff/autocast.h"
#include "autodiff/ops/common.h"
#include "autodiff/ops/heads_layout.h"
#include "autodiff/ops/shape.h"

namespace gradus {

namespace {

// The moments and lse are f64 for f64 and f32 otherwise (kernels/pna.h).
DType moments_dtype(DType dtype) { return dtype == DType::f64 ? DType::f64 : DType::f32; }

// (B, H, T, D) int32 arg indices. The tensor library has no int32 dtype, so they live in an i64
// buffer of half the count, read by the kernels as int32 (half the memory of i64 indices: 50 MB
// per layer of the medium model instead of 100 MB).
Tensor arg_buffer(int64_t count, Device device) {
  return Tensor::empty({(count + 1) / 2}, DType::i64, device);
}
int32_t* arg_data(const Tensor& buffer) {
  return buffer.defined() ? reinterpret_cast<int32_t*>(buffer.data<int64_t>()) : nullptr;
}

// attrs.ints: [adjacency, threshold, square, max, min]; attrs.floats: [scale, tau, beta].
Attrs attrs_of(const PnaMomentsOptions& o) {
  return Attrs{.ints = {static_cast<int64_t>(o.adjacency), static_cast<int64_t>(o.threshold),
                        o.with_square, o.with_max, o.with_min},
               .floats = {o.scale, o.tau, o.beta}};
}
PnaMomentsOptions options_of(const Attrs& a) {
  return {.adjacency = static_cast<kernels::PnaAdjacency>(a.ints[0]),
          .threshold = static_cast<kernels::PnaThreshold>(a.ints[1]),
          .scale = a.floats[0],
          .tau = a.floats[1],
          .beta = a.floats[2],
          .with_square = a.ints[2] != 0,
          .with_max = a.ints[3] != 0,
          .with_min = a.ints[4] != 0};
}

kernels::PnaShape shape_of(const Tensor& q, const PnaMomentsOptions& o) {
  return {.batch = q.size(0),
          .heads = q.size(1),
          .t = q.size(2),
          .head_dim = q.size(3),
          .scale = o.scale,
          .adjacency = o.adjacency,
          .threshold = o.threshold,
          .tau = o.tau,
          .beta = o.beta,
          .with_square = o.with_square,
          .with_max = o.with_max,
          .with_min = o.with_min};
}

// saved: [q, k, v (unit last stride), lse, arg_max, arg_min] (the last three undefined when not
// produced).
void pna_backward_rule(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  const Tensor &q = r.saved[0], &k = r.saved[1], &v = r.saved[2], &lse = r.saved[3];
  const kernels::PnaShape s = shape_of(q, options_of(r.attrs));
  Tensor grad = raw_contiguous(go[0]);
  // grad_q and grad_k contiguous (rope's backward reads that fastest); grad_v in the heads layout.
  Tensor grad_q = detail::empty_like(q.shape(), q), grad_k = detail::empty_like(k.shape(), k);
  Tensor grad_v = detail::empty_heads(v, v.size(2));
  static const kernels::KernelRef<kernels::PnaBackwardFn> kernel(kernels::kPnaBackward);
  kernel(q.device(), q.dtype())(s, detail::heads_operand(q), detail::heads_operand(k),
                                detail::heads_operand(v), lse.defined() ? lse.raw_data() : nullptr,
                                arg_data(r.saved[4]), arg_data(r.saved[5]), grad.raw_data(),
                                detail::heads_output(grad_q), detail::heads_output(grad_k),
                                detail::heads_output(grad_v));
  gi[0] = grad_q;
  gi[1] = grad_k;
  gi[2] = grad_v;
}

const OpDef& kPnaMoments = register_op({.name = "pna_moments",
                                        .family = "pna",
                                        .backward = pna_backward_rule,
                                        .forward_kernels = {kernels::kPnaForward},
                                        .backward_kernels = {kernels::kPnaBackward},
                                        .gradcheck = "Gradcheck.pna_moments"});

Tensor pna_moments_impl(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                        const PnaMomentsOptions& o) {
  const char* name = "pna_moments";
  detail::expect_float_compatible(name, {&q_in, &k_in, &v_in});
  detail::expect_rank(name, q_in, 4, "q (B, H, T, D)");
  GRADUS_CHECK(k_in.shape() == q_in.shape() && v_in.shape() == q_in.shape(), name,
               "q, k and v must have the same shape (B, H, T, D), found q {}, k {} and v {}",
               q_in.describe(), k_in.describe(), v_in.describe());
  GRADUS_CHECK(q_in.size(3) >= 1, name, "needs at least one channel, found q {}", q_in.describe());
  GRADUS_CHECK(
      std::isfinite(o.scale) && std::isfinite(o.tau) && std::isfinite(o.beta) && o.beta > 0, name,
      "scale, tau and beta must be finite with beta > 0, found {}, {} and {}", o.scale, o.tau,
      o.beta);
  const Tensor q = detail::kernel_ready_heads(q_in), k = detail::kernel_ready_heads(k_in),
               v = detail::kernel_ready_heads(v_in);
  const kernels::PnaShape s = shape_of(q, o);
  const int64_t B = s.batch, H = s.heads, T = s.t;
  const DType stats = moments_dtype(q.dtype());
  Tensor moments = Tensor::empty({B, H, T, s.width()}, stats, q.device());
  Tensor lse = o.adjacency == kernels::PnaAdjacency::softmax
                   ? Tensor::empty({B, H, T}, stats, q.device())
                   : Tensor();
  const int64_t count = B * H * T * s.head_dim;
  Tensor arg_max = o.with_max ? arg_buffer(count, q.device()) : Tensor();
  Tensor arg_min = o.with_min ? arg_buffer(count, q.device()) : Tensor();
  static const kernels::KernelRef<kernels::PnaForwardFn> kernel(kernels::kPnaForward);
  kernel(q.device(), q.dtype())(s, detail::heads_operand(q), detail::heads_operand(k),
                                detail::heads_operand(v), moments.raw_data(), arg_data(arg_max),
                                arg_data(arg_min), lse.defined() ? lse.raw_data() : nullptr);
  finish_op(kPnaMoments, {q_in, k_in, v_in}, {moments}, {q, k, v, lse, arg_max, arg_min},
            attrs_of(o));
  return moments;
}

}  // namespace

Tensor pna_moments(const Tensor& q, const Tensor& k, const Tensor& v,
                   const PnaMomentsOptions& options) {
  const char* name = "pna_moments";
  detail::expect_defined(name, q, "q");
  detail::expect_defined(name, k, "k");
  detail::expect_defined(name, v, "v");
  return pna_moments_impl(detail::autocast_compute(q), detail::autocast_compute(k),
                          detail::autocast_compute(v), options);
}

PnaMomentBlocks split_pna_moments(const Tensor& moments, const PnaMomentsOptions& o) {
  const int64_t optional = int64_t{o.with_square} + int64_t{o.with_max} + int64_t{o.with_min};
  const int64_t W = moments.size(-1), D = (W - 1) / (1 + optional);
  GRADUS_CHECK(moments.dim() >= 1 && D >= 1 && D * (1 + optional) + 1 == W, "split_pna_moments",
               "a last axis of D (1 + {}) + 1 channels, found {}", optional, moments.describe());
  std::vector<int64_t> sizes(static_cast<size_t>(1 + optional), D);
  sizes.push_back(1);
  std::vector<Tensor> pieces = split(moments, sizes, -1);
  PnaMomentBlocks blocks;
  size_t next = 0;
  blocks.sum = pieces[next++];
  if (o.with_square) blocks.square = pieces[next++];
  if (o.with_max) blocks.max = pieces[next++];
  if (o.with_min) blocks.min = pieces[next++];
  blocks.degree = pieces[next];
  return blocks;
}

}  // namespace gradus
