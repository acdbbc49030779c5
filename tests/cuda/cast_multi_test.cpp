// kernels::kCastMulti on the GPU: each array equals the conversion copy (raw_to_dtype on the GPU)
// and the CPU's conversion bit for bit, for the dtype pairs mixed precision uses and their
// reverses, 30 arrays of lengths 0 to 300000 (two launches: more than one launch's 24), in
// ceil(non-empty / 24) launches and no host wait; and a bf16 mixed-precision step with
// AutocastWeights gives the same loss and gradients as one without. Skipped without a GPU.
#include <gtest/gtest.h>

#include <cstring>
#include <utility>
#include <vector>

#include "autodiff/autocast.h"
#include "autodiff/tape.h"
#include "core/random.h"
#include "core/tensor.h"
#include "kernels/backend_info.h"
#include "kernels/copy.h"
#include "kernels/registry.h"
#include "models/nn/lm.h"
#include "support/cuda.h"

namespace gradus {
namespace {

using testing::kCUDA;

std::vector<unsigned char> bytes_of(const Tensor& t) {
  const Tensor host = raw_to_device(t, kCPU);
  std::vector<unsigned char> out(host.nbytes());
  if (!out.empty()) std::memcpy(out.data(), host.raw_data(), out.size());
  return out;
}

TEST(CudaCastMulti, EachArrayEqualsItsConversionBitForBit) {
  GRADUS_REQUIRE_CUDA();
  static const kernels::KernelRef<kernels::CastMultiFn> cast_multi(kernels::kCastMulti);
  const std::vector<int64_t> lengths = {0, 1, 7, 1000, 70000, 300000};
  const std::vector<std::pair<DType, DType>> pairs = {{DType::f32, DType::bf16},
                                                      {DType::f64, DType::f32},
                                                      {DType::bf16, DType::f32},
                                                      {DType::f32, DType::f64}};
  for (const auto& [from, to] : pairs) {
    SCOPED_TRACE(std::string(dtype_name(from)) + " -> " + std::string(dtype_name(to)));
    Generator gen(11);
    std::vector<Tensor> sources, casts;
    std::vector<kernels::CastArray> arrays;
    int64_t non_empty = 0;
    for (size_t i = 0; i < 30; ++i) {
      const int64_t n = lengths[i % lengths.size()];
      non_empty += n > 0;
      Tensor x =
          raw_to_device(raw_to_dtype(rand_normal({n}, gen, DType::f64, 0.0, 1e3), from), kCUDA);
      Tensor y = Tensor::empty({n}, to, kCUDA);
      arrays.push_back({x.raw_data(), y.raw_data(), n});
      sources.push_back(x);
      casts.push_back(y);
    }
    const kernels::CudaActivity before = kernels::cuda_activity();
    cast_multi(kCUDA, from)(arrays.data(), static_cast<int64_t>(arrays.size()), to);
    const kernels::CudaActivity after = kernels::cuda_activity();
    EXPECT_EQ(after.kernel_launches - before.kernel_launches, (non_empty + 23) / 24);
    EXPECT_EQ(after.host_syncs - before.host_syncs, 0);
    for (size_t i = 0; i < casts.size(); ++i) {
      ASSERT_EQ(bytes_of(casts[i]), bytes_of(raw_to_dtype(sources[i], to))) << "array " << i;
      ASSERT_EQ(bytes_of(casts[i]), bytes_of(raw_to_dtype(raw_to_device(sources[i], kCPU), to)))
          << "array " << i << " against the CPU's conversion";
    }
  }
}

TEST(CudaCastMulti, WeightsCastOnEntryChangeNoBit) {
  GRADUS_REQUIRE_CUDA();
  ModelConfig c;
  c.vocab_size = 64;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.max_position_embeddings = 32;
  Generator gen(3);
  DecoderLM lm(c, gen);
  lm.to(kCUDA);
  Generator data(4);
  auto ids = [&] {
    return raw_to_device(
        raw_to_dtype(rand_uniform({2, 32}, data, DType::f64, 0.0, 64.0), DType::i64), kCUDA);
  };
  const Tensor inputs = ids(), targets = ids();
  AutocastWeights weights;
  auto step = [&](AutocastWeights* w) {
    for (const Tensor& p : lm.parameters()) p.zero_grad();
    Tensor loss;
    {
      AutocastGuard mixed(DType::bf16, DType::f32, w);
      loss = lm.loss(inputs, targets);
    }
    backward(loss);
    std::vector<std::vector<double>> grads;
    for (const Tensor& p : lm.parameters()) grads.push_back(p.grad().to_vector());
    return std::make_pair(loss.item(), grads);
  };
  step(&weights);  // remembers the weights
  ASSERT_GT(weights.size(), 0);
  const auto on_entry = step(&weights), at_use = step(nullptr);
  EXPECT_EQ(on_entry.first, at_use.first);
  EXPECT_EQ(on_entry.second, at_use.second);
}

}  // namespace
}  // namespace gradus
