// bf16 forward parity for the ops a bf16 model runs: the GPU computes on bf16 tensors, the CPU in
// f32 on the same values (inputs rounded to bf16 first), and each result is compared per tensor:
// max |gpu - cpu| <= factor * 2^-7 * max |cpu| (the reasoning is at
// ParityRun::check_bf16_forward; a factor above 1 is justified where it is used).
#include "autodiff/ops/cross_entropy.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/embedding.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/norm.h"
#include "autodiff/ops/rope.h"
#include "autodiff/ops/softmax.h"
#include "autodiff/ops/view.h"
#include "support/cuda_parity.h"

namespace gradus {
namespace {

TEST(CudaParityBf16, matmul) {
  GRADUS_PARITY_SETUP(run);
  // cuBLAS multiplies bf16 with f32 accumulation and rounds each output once.
  auto mm = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
  run.check_bf16_forward("(33, 256) (256, 17)", mm, {run.normal({33, 256}), run.normal({256, 17})});
  run.check_bf16_forward("transposed b, batched a", [](const std::vector<Tensor>& in) {
    return matmul(in[0], transpose(in[1], 0, 1));
  }, {run.normal({2, 3, 16, 64}), run.normal({24, 64})});
  run.check_bf16_forward("linear with bias", [](const std::vector<Tensor>& in) {
    // The (bf16) bias is copied into the output and the product added onto it in f32 (beta = 1):
    // one rounding.
    return linear(in[0], in[1], in[2]);
  }, {run.normal({4, 7, 64}), run.normal({48, 64}), run.normal({48})});
}

TEST(CudaParityBf16, add) {
  GRADUS_PARITY_SETUP(run);
  auto fn = [](const std::vector<Tensor>& in) { return add(in[0], in[1]); };
  run.check_bf16_forward("same shape", fn, {run.normal({1031}), run.normal({1031})});
  run.check_bf16_forward("broadcast", fn, {run.normal({4, 1, 6}), run.normal({5, 1})});
}

TEST(CudaParityBf16, mul) {
  GRADUS_PARITY_SETUP(run);
  auto fn = [](const std::vector<Tensor>& in) { return mul(in[0], in[1]); };
  run.check_bf16_forward("same shape", fn, {run.normal({1031}), run.normal({1031})});
  run.check_bf16_forward("transposed, broadcast", [](const std::vector<Tensor>& in) {
    return mul(transpose(in[0], 0, 1), in[1]);
  }, {run.normal({9, 5}), run.normal({9})});
}

TEST(CudaParityBf16, silu) {
  GRADUS_PARITY_SETUP(run);
  run.check_bf16_forward("silu", [](const std::vector<Tensor>& in) { return silu(in[0]); },
                         {run.uniform({4099}, -8, 8)});
}

TEST(CudaParityBf16, gelu) {
  GRADUS_PARITY_SETUP(run);
  run.check_bf16_forward("gelu", [](const std::vector<Tensor>& in) { return gelu(in[0]); },
                         {run.uniform({4099}, -6, 6)});
  run.check_bf16_forward("gelu_tanh", [](const std::vector<Tensor>& in) { return gelu(in[0], true); },
                         {run.uniform({4099}, -6, 6)});
}

TEST(CudaParityBf16, rms_norm) {
  GRADUS_PARITY_SETUP(run);
  // Statistics in f32; each output rounded once (weight applied before the rounding).
  run.check_bf16_forward("(6, 7, 128) weighted", [](const std::vector<Tensor>& in) {
    return rms_norm(in[0], in[1]);
  }, {run.normal({6, 7, 128}, 0, 2), run.normal({128}, 1, 0.5)});
  run.check_bf16_forward("(4, 3000) no weight", [](const std::vector<Tensor>& in) {
    return rms_norm(in[0], Tensor());
  }, {run.normal({4, 3000})});
}

TEST(CudaParityBf16, softmax) {
  GRADUS_PARITY_SETUP(run);
  run.check_bf16_forward("(8, 300)", [](const std::vector<Tensor>& in) { return softmax(in[0]); },
                         {run.normal({8, 300}, 0, 3)});
  // Attention-like: (B, H, T, T) scores, softmax over the keys.
  run.check_bf16_forward("(2, 4, 33, 33)", [](const std::vector<Tensor>& in) { return softmax(in[0], -1); },
                         {run.normal({2, 4, 33, 33}, 0, 2)});
}

TEST(CudaParityBf16, cross_entropy) {
  GRADUS_PARITY_SETUP(run);
  Tensor t = run.ids({64}, 1000);
  // "none": each loss (logsumexp in f32 minus the target logit) rounded once. "mean": the per-row
  // losses may be rounded to bf16 before being summed, then the sum and its scaling by 1 / count
  // rounded again: up to three roundings of 2^-8 (all losses are positive), factor 2.
  run.check_bf16_forward("none", [](const std::vector<Tensor>& in) {
    return cross_entropy(in[0], in[1], -100, "none");
  }, {run.normal({64, 1000}, 0, 2), t});
  run.check_bf16_forward("mean", [](const std::vector<Tensor>& in) {
    return cross_entropy(in[0], in[1]);
  }, {run.normal({64, 1000}, 0, 2), t}, 2.0);
}

TEST(CudaParityBf16, embedding) {
  GRADUS_PARITY_SETUP(run);
  // A copy of bf16 rows: exact (the tolerance allows what the factor says, but any error is a bug).
  run.check_bf16_forward("(50, 64) ids (4, 33)", [](const std::vector<Tensor>& in) {
    return embedding(in[0], in[1]);
  }, {run.normal({50, 64}), run.ids({4, 33}, 50)}, 0.0);
}

TEST(CudaParityBf16, rope) {
  GRADUS_PARITY_SETUP(run);
  // cos and sin are rounded to bf16 before use (2^-8 each), then x1 cos - x2 sin is rounded:
  // |error| <= 2^-8 (|x1| + |x2|) + 2^-8 |y| <= 2^-8 (sqrt 2 + 1) r with r = |(x1, x2)| =
  // |(y1, y2)| <= sqrt 2 max|y|, i.e. about 3.4 * 2^-8 max|y|: factor 2.
  run.check_bf16_forward("(2, 3, 16, 64)", [](const std::vector<Tensor>& in) { return rope(in[0]); },
                         {run.normal({2, 3, 16, 64})}, 2.0);
  run.check_bf16_forward("offset 4096", [](const std::vector<Tensor>& in) {
    return rope(in[0], 10000.0, 4096);
  }, {run.normal({7, 32})}, 2.0);
}

}  // namespace
}  // namespace gradus
