// CPU/GPU parity of the fused attention op (scaled_dot_product_attention), forward and backward:
// causal and full, fewer queries than keys, lengths that are not a multiple of any tile, the
// (B, T, H, D) layout of heads split from a projection, keys shared by the heads (stride 0), the
// head dims the fast kernels are written for (64, 128) and an odd one; f32, f64, and bf16 forward.
// (The kernel-level comparisons of the GPU's reference and tiled kernels are in
// parity_attention_test.cpp.)
#include "autodiff/ops/attention.h"
#include "autodiff/ops/view.h"
#include "support/cuda_parity.h"

namespace gradus {
namespace {

using testing::ParityOptions;
using testing::sum_tolerance;

// The forward sums Tk products of unit-scale terms (p v, q k); the backward's grad_k and grad_v
// sum over the Tq queries and its grad_q over the Tk keys.
ParityOptions attention_options(int64_t t_q, int64_t t_k, int64_t dim, DType dtype = DType::f32) {
  ParityOptions o;
  o.dtype = dtype;
  o.forward = sum_tolerance(dtype, std::max(t_k, dim));
  o.backward = sum_tolerance(dtype, std::max({t_q, t_k, dim}));
  return o;
}

Tensor causal(const std::vector<Tensor>& in) {
  return scaled_dot_product_attention(in[0], in[1], in[2]);
}
Tensor full(const std::vector<Tensor>& in) {
  return scaled_dot_product_attention(in[0], in[1], in[2], false);
}

TEST(CudaParity, scaled_dot_product_attention) {
  GRADUS_PARITY_SETUP(run);
  for (DType dtype : {DType::f32, DType::f64}) {
    run.check("(2, 3, 37, 64) causal", causal,
              {run.normal({2, 3, 37, 64}), run.normal({2, 3, 37, 64}), run.normal({2, 3, 37, 64})},
              attention_options(37, 37, 64, dtype));
    run.check(
        "(1, 2, 200, 128) full", full,
        {run.normal({1, 2, 200, 128}), run.normal({1, 2, 200, 128}), run.normal({1, 2, 200, 128})},
        attention_options(200, 200, 128, dtype));
  }
  run.check("(1, 2, 5, 131) keys, causal, D 24", causal,
            {run.normal({1, 2, 5, 24}), run.normal({1, 2, 131, 24}), run.normal({1, 2, 131, 24})},
            attention_options(5, 131, 24));
  run.check("one position", causal,
            {run.normal({1, 1, 1, 64}), run.normal({1, 1, 1, 64}), run.normal({1, 1, 1, 64})},
            attention_options(1, 1, 64));
  // Heads split from (B, T, H * D) projections: strided (B, H, T, D) views in and out.
  run.check(
      "heads layout",
      [](const std::vector<Tensor>& in) {
        return scaled_dot_product_attention(transpose(in[0], 1, 2), transpose(in[1], 1, 2),
                                            transpose(in[2], 1, 2));
      },
      {run.normal({2, 129, 4, 64}), run.normal({2, 129, 4, 64}), run.normal({2, 129, 4, 64})},
      attention_options(129, 129, 64));
  // Keys and values shared by the heads: stride 0 over H, gradients summed by expand's backward.
  run.check(
      "shared keys",
      [](const std::vector<Tensor>& in) {
        return scaled_dot_product_attention(in[0], expand(in[1], {2, 3, 65, 64}),
                                            expand(in[2], {2, 3, 65, 64}));
      },
      {run.normal({2, 3, 65, 64}), run.normal({2, 1, 65, 64}), run.normal({2, 1, 65, 64})},
      attention_options(65, 3 * 65, 64));
}

TEST(CudaParityBf16, scaled_dot_product_attention) {
  GRADUS_PARITY_SETUP(run);
  // bf16 loads become f32, the softmax and both products run in f32 and the output rounds once:
  // within one bf16 rounding of the f32 result, as the harness's default factor allows.
  run.check_bf16_forward(
      "(2, 3, 150, 64) causal", causal,
      {run.normal({2, 3, 150, 64}), run.normal({2, 3, 150, 64}), run.normal({2, 3, 150, 64})});
  run.check_bf16_forward(
      "(1, 2, 77, 128) full", full,
      {run.normal({1, 2, 77, 128}), run.normal({1, 2, 77, 128}), run.normal({1, 2, 77, 128})});
}

}  // namespace
}  // namespace gradus
