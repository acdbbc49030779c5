// Whole models on the GPU: a model and its optimiser moved with .to(cuda) keep training where
// they were, and checkpoints written from the GPU load on the CPU and back, bit for bit.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "autodiff/tape.h"
#include "core/random.h"
#include "models/checkpoint/checkpoint.h"
#include "models/optim/adam.h"
#include "support/cuda.h"

namespace gradus {
namespace {

namespace fs = std::filesystem;
using testing::kCUDA;

ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 32;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.max_position_embeddings = 12;
  return c;
}

// Token ids: (2, 8) in [0, 32), on `device`.
Tensor random_ids(uint64_t seed, Device device) {
  Generator gen(seed);
  Tensor u = rand_uniform({2, 8}, gen, DType::f64, 0.0, 32.0);
  std::vector<double> v = u.to_vector();
  for (double& x : v) x = static_cast<double>(static_cast<int64_t>(x));
  return raw_to_device(Tensor::from_vector(v, {2, 8}, DType::i64), device);
}

void train(DecoderLM& lm, Optimizer& opt, int steps, uint64_t seed) {
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    Tensor ids = random_ids(seed + s, lm.device());
    backward(lm.loss(ids, ids));
    opt.step();
  }
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ca = raw_to_device(raw_contiguous(a), kCPU), cb = raw_to_device(raw_contiguous(b), kCPU);
  ca = raw_contiguous(ca);
  cb = raw_contiguous(cb);
  return std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
}

class ModelOnDevice : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("gradus_model_on_device_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(ModelOnDevice, CheckpointFromTheGpuLoadsOnTheCpuAndBackBitForBit) {
  GRADUS_REQUIRE_CUDA();
  Generator init(3);
  DecoderLM gpu(tiny_config(), init);
  gpu.to(kCUDA);
  AdamW opt(gpu.parameters(), 1e-2);
  train(gpu, opt, 3, 100);
  save_training_state(path("state.safetensors"), gpu, opt, TrainingState{.step = 3});

  // On the CPU: every parameter and optimiser buffer equals the GPU's, bit for bit.
  Generator other(99);
  DecoderLM cpu(tiny_config(), other);
  AdamW cpu_opt(cpu.parameters(), 1e-2);
  TrainingState st = load_training_state(path("state.safetensors"), cpu, cpu_opt);
  EXPECT_EQ(st.step, 3);
  auto a = gpu.named_parameters(), b = cpu.named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(b[i].second.device() == kCPU);
    EXPECT_TRUE(same_bits(a[i].second, b[i].second)) << a[i].first;
  }
  auto sa = opt.state_tensors(), sb = cpu_opt.state_tensors();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(same_bits(sa[i].second, sb[i].second)) << sa[i].first;

  // And back onto the GPU: a model living there loads the file in place.
  Generator third(7);
  DecoderLM back(tiny_config(), third);
  back.to(kCUDA);
  AdamW back_opt(back.parameters(), 1e-2);
  load_training_state(path("state.safetensors"), back, back_opt);
  auto c = back.named_parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(c[i].second.device() == kCUDA) << c[i].first;
    EXPECT_TRUE(same_bits(a[i].second, c[i].second)) << a[i].first;
  }
  // The two continue identically.
  train(gpu, opt, 2, 200);
  train(back, back_opt, 2, 200);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(same_bits(a[i].second, c[i].second)) << a[i].first;
}

TEST_F(ModelOnDevice, ModelAndOptimiserMovedMidTrainingContinueAsOnTheCpu) {
  GRADUS_REQUIRE_CUDA();
  Generator init_a(5), init_b(5);
  DecoderLM moved(tiny_config(), init_a), stay(tiny_config(), init_b);
  AdamW opt_moved(moved.parameters(), 1e-2), opt_stay(stay.parameters(), 1e-2);
  train(moved, opt_moved, 2, 300);
  train(stay, opt_stay, 2, 300);
  moved.to(kCUDA);
  opt_moved.to(kCUDA);
  for (const auto& [name, buffer] : opt_moved.state_tensors())
    if (buffer.dtype() != DType::i64) EXPECT_TRUE(buffer.device() == kCUDA) << name;
  train(moved, opt_moved, 3, 400);
  train(stay, opt_stay, 3, 400);
  auto a = moved.named_parameters(), b = stay.named_parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(a[i].second.device() == kCUDA);
    const std::vector<double> ga = a[i].second.to_vector(), gb = b[i].second.to_vector();
    double worst = 0;
    for (size_t j = 0; j < ga.size(); ++j) worst = std::max(worst, std::abs(ga[j] - gb[j]));
    // f32 rounding differs between the backends; AdamW's normalised steps keep it at the level
    // of a few ulps of lr per step.
    EXPECT_LT(worst, 1e-4) << a[i].first;
  }
}

}  // namespace
}  // namespace gradus
