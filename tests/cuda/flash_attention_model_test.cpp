// The tensor-core flash attention kernels (GRADUS_ATTENTION_KERNEL=flash) inside whole models: a
// bf16 mixed-precision decoder whose heads are 64 wide (the flash kernels' size) gives the blocked
// kernels' loss and gradients within bf16 rounding, and trains. The kernels themselves are compared
// with the CPU in CudaParityAttentionKernels.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "autodiff/autocast.h"
#include "autodiff/tape.h"
#include "core/random.h"
#include "kernels/cuda/attention_select.h"
#include "models/nn/lm.h"
#include "models/optim/adam.h"
#include "support/cuda.h"

namespace gradus {
namespace {

using testing::kCUDA;

// Sets GRADUS_ATTENTION_KERNEL for the guard's lifetime, then unsets it (the default).
struct KernelChoice {
  explicit KernelChoice(const char* value) {
    setenv("GRADUS_ATTENTION_KERNEL", value, 1);
    kernels::reload_attention_kernel_choice();
  }
  ~KernelChoice() {
    unsetenv("GRADUS_ATTENTION_KERNEL");
    kernels::reload_attention_kernel_choice();
  }
};

ModelConfig config(const std::string& kind) {
  ModelConfig c;
  c.vocab_size = 40;
  c.hidden_size = 128;
  c.intermediate_size = 192;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;        // head_dim 64
  c.max_position_embeddings = 100;  // not a multiple of the 64-row tiles
  c.attention_kind = kind;
  return c;
}

// Token ids: (2, 100) in [0, vocab), on the GPU.
Tensor tokens(uint64_t seed, int64_t vocab) {
  Generator gen(seed);
  Tensor u = rand_uniform({2, 100}, gen, DType::f64, 0.0, static_cast<double>(vocab));
  return raw_to_device(raw_to_dtype(u, DType::i64), kCUDA);
}

struct LossAndGradients {
  double loss = 0;
  std::vector<std::vector<double>> grads;
};

// One bf16 mixed-precision forward and backward with the kernel family `kernel`, from the same
// initial parameters every time.
LossAndGradients run(const std::string& kind, const char* kernel) {
  KernelChoice choice(kernel);
  const ModelConfig c = config(kind);
  Generator gen(7);
  DecoderLM lm(c, gen);
  lm.to(kCUDA);
  const Tensor ids = tokens(8, c.vocab_size), targets = tokens(9, c.vocab_size);
  Tensor loss;
  {
    AutocastGuard mixed(DType::bf16, DType::f32);
    loss = lm.loss(ids, targets);
  }
  backward(loss);
  LossAndGradients out;
  out.loss = loss.item();
  for (const Tensor& p : lm.parameters())
    out.grads.push_back(raw_to_device(raw_contiguous(p.grad()), kCPU).to_vector());
  return out;
}

TEST(CudaFlashAttentionModel, GivesTheBlockedKernelsLossAndGradients) {
  GRADUS_REQUIRE_CUDA();
  for (const char* kind : {"std", "lgt"}) {
    SCOPED_TRACE(kind);
    const LossAndGradients blocked = run(kind, "blocked");
    const LossAndGradients flash = run(kind, "flash");
    EXPECT_NEAR(flash.loss, blocked.loss, 1e-2 * std::abs(blocked.loss));
    ASSERT_EQ(flash.grads.size(), blocked.grads.size());
    for (size_t i = 0; i < blocked.grads.size(); ++i) {
      double scale = 0, worst = 0;
      for (size_t j = 0; j < blocked.grads[i].size(); ++j) {
        scale = std::max(scale, std::abs(blocked.grads[i][j]));
        worst = std::max(worst, std::abs(flash.grads[i][j] - blocked.grads[i][j]));
      }
      // bf16 products on both sides, rounded at different places: a few bf16 ulps of the scale.
      EXPECT_LE(worst, std::ldexp(scale, -5) + 1e-6) << "parameter " << i;
    }
  }
}

TEST(CudaFlashAttentionModel, TrainsInMixedPrecision) {
  GRADUS_REQUIRE_CUDA();
  KernelChoice choice("flash");
  const ModelConfig c = config("std");
  Generator gen(3);
  DecoderLM lm(c, gen);
  lm.to(kCUDA);
  AdamW opt(lm.parameters(), 1e-2, 0.0);
  const Tensor ids = tokens(4, c.vocab_size), targets = tokens(5, c.vocab_size);
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    opt.zero_grad();
    Tensor loss;
    {
      AutocastGuard mixed(DType::bf16, DType::f32);
      loss = lm.loss(ids, targets);
    }
    backward(loss);
    opt.step();
    (step == 0 ? first : last) = loss.item();
  }
  EXPECT_TRUE(std::isfinite(last));
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
}

}  // namespace
}  // namespace gradus
