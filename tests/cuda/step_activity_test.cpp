// What the host asks of the GPU during a training step (kernels::cuda_activity): a step of the
// launch-bound `small` preset is as fast as its launches and host waits allow, so the waits are
// counted and bounded here: a step waits for the device only to check the token ids, to check the
// targets and to read the loss, however many chunks the fused loss runs in.
#include <gtest/gtest.h>

#include <cmath>

#include "autodiff/ops/linear_cross_entropy.h"
#include "autodiff/tape.h"
#include "core/random.h"
#include "models/nn/lm.h"
#include "models/optim/adam.h"
#include "support/cuda.h"

namespace gradus {
namespace {

using testing::kCUDA;

kernels::CudaActivity since(const kernels::CudaActivity& start) {
  const kernels::CudaActivity now = kernels::cuda_activity();
  return {now.kernel_launches - start.kernel_launches, now.library_calls - start.library_calls,
          now.host_syncs - start.host_syncs};
}

// Integer ids in [0, vocab): (rows, cols) i64 on the GPU.
Tensor random_ids(Generator& gen, int64_t rows, int64_t cols, int64_t vocab) {
  Tensor u = rand_uniform({rows, cols}, gen, DType::f64, 0.0, static_cast<double>(vocab));
  return raw_to_device(raw_to_dtype(u, DType::i64), kCUDA);
}

TEST(CudaStepActivity, LinearCrossEntropyWaitsOnceWhateverTheChunks) {
  GRADUS_REQUIRE_CUDA();
  Generator gen(5);
  // x: (64, 16), W: (40, 16), one row per chunk: 64 chunks.
  Tensor x = raw_to_device(rand_normal({64, 16}, gen, DType::f32, 0.0, 1.0), kCUDA);
  Tensor w = raw_to_device(rand_normal({40, 16}, gen, DType::f32, 0.0, 1.0), kCUDA);
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  const Tensor targets = raw_try_reshape_view(random_ids(gen, 1, 64, 40), {64});
  const kernels::CudaActivity start = kernels::cuda_activity();
  Tensor loss = linear_cross_entropy(x, w, targets, -100, "mean", /*chunk_rows=*/1);
  const kernels::CudaActivity forward = since(start);
  EXPECT_EQ(forward.host_syncs, 1) << "one target check for all 64 chunks";
  EXPECT_GE(forward.library_calls, 64 * 2) << "a logits product and a gradient product per chunk";
  EXPECT_GT(forward.kernel_launches, 64) << "the cross-entropy kernels per chunk";
  const kernels::CudaActivity before_backward = kernels::cuda_activity();
  backward(loss);
  EXPECT_EQ(since(before_backward).host_syncs, 0);
  EXPECT_TRUE(std::isfinite(loss.item()));
}

TEST(CudaStepActivity, TrainingStepWaitsOnlyForIdsTargetsAndTheLoss) {
  GRADUS_REQUIRE_CUDA();
  ModelConfig c = ModelConfig::preset("small");
  c.num_hidden_layers = 2;
  Generator init(1);
  DecoderLM lm(c, init);
  lm.to(kCUDA);
  AdamW opt(lm.parameters(), 1e-3, 0.1);
  Generator data(2);
  Tensor ids = random_ids(data, 4, c.max_position_embeddings, c.vocab_size);
  auto step = [&] {
    opt.zero_grad();
    Tensor loss = lm.loss(ids, ids);
    backward(loss);
    opt.step();
    return loss.item();
  };
  step();  // warm-up: optimiser state, allocator cache
  const kernels::CudaActivity start = kernels::cuda_activity();
  EXPECT_TRUE(std::isfinite(step()));
  const kernels::CudaActivity one = since(start);
  // The embedding's index check, the loss's target check and loss.item().
  EXPECT_LE(one.host_syncs, 3) << one.kernel_launches << " launches, " << one.library_calls
                               << " cuBLAS calls";
  EXPECT_GT(one.kernel_launches, 0);
  EXPECT_GT(one.library_calls, 0);
}

}  // namespace
}  // namespace gradus
