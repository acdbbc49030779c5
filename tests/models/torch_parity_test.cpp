// Parity with PyTorch: tests/fixtures/torch_parity.safetensors (written by
// scripts/make-torch-fixtures from a Llama-style model written by hand in plain PyTorch) holds the
// weights, a batch, the logits, the loss, every parameter gradient, the losses of 10 AdamW steps
// and the parameters after them, in float32 and (for Gradus's f64 run) float64. Gradus builds the
// model from the fixture's metadata, loads the weights and must reproduce every tensor within a
// stated per-tensor tolerance; each comparison prints how much of its tolerance it used.
// docs/parity.md explains the tolerances.
//
// Also: a PyTorch model with the same configuration loads a Gradus checkpoint and gets the same
// loss (runs scripts/check-torch-loads-checkpoint.py; skipped when /usr/bin/python3 has no torch).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "autodiff/tape.h"
#include "support/cuda.h"
#include "models/checkpoint/checkpoint.h"
#include "models/io/safetensors.h"
#include "models/optim/adam.h"

namespace gradus {
namespace {

namespace fs = std::filesystem;

const fs::path kRepo = fs::path(__FILE__).parent_path().parent_path().parent_path();
const fs::path kFixture = kRepo / "tests" / "fixtures" / "torch_parity.safetensors";

struct Fixture {
  std::map<std::string, Tensor> t;
  std::map<std::string, std::string> meta;
  ModelConfig config;
  std::vector<std::pair<std::string, Tensor>> weights;  // the initial weights, by HF name

  const Tensor& at(const std::string& name) const {
    auto it = t.find(name);
    if (it == t.end())
      throw Error(fmt::format("fixture {} has no tensor '{}'", kFixture.string(), name));
    return it->second;
  }
  double number(const std::string& key) const { return std::stod(meta.at(key)); }
};

const Fixture& fixture() {
  static const Fixture f = [] {
    Fixture f;
    SafetensorsFile file = load_safetensors(kFixture.string());
    f.meta = file.metadata;
    f.config = ModelConfig::from_map(file.metadata, /*allow_unknown=*/true);
    for (const auto& [name, t] : file.tensors) {
      f.t.emplace(name, t);
      const std::string head = name.substr(0, name.find('.'));
      if (head != "fixture" && head != "grad" && head != "train" && head != "final" &&
          head != "f64")
        f.weights.emplace_back(name, t);
    }
    return f;
  }();
  return f;
}

// Tolerances, each relative to the scale of the reference tensor (its largest |value|), so that an
// element near zero is held to the precision of the tensor rather than to its own magnitude.
constexpr double kF32Rel = 1e-5;   // one f32 forward/backward: float rounding of both sides
constexpr double kF64Rel = 1e-10;  // f64: the stored f64 references are exact to ~1e-12 of scale
// AdamW divides each gradient element by its own running RMS, so after several steps an element
// whose gradient is tiny or cancels carries its relative rounding error into an absolute change
// of order lr: f32 parameters after the steps differ by more than 1e-5 of their scale for
// PyTorch's own float32 run against its float64 run. The tolerance on the final parameters is
// therefore the larger of kF32Rel of the scale and kDriftFactor times that PyTorch f32-vs-f64
// drift of the tensor.
constexpr double kDriftFactor = 4.0;

// Compares got with want; prints max |diff|, the tolerance and the fraction of it used.
void compare(const std::string& what, const Tensor& got, const Tensor& want, double tol) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const std::vector<double> g = got.to_vector(), w = want.to_vector();
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double d = std::abs(g[i] - w[i]);
    if (!(d <= worst)) worst = d, at = i;  // NaN counts as worst
  }
  const double used = worst / tol;
  fmt::print("  {:<52} max|diff| {:9.3e}  tol {:9.3e}  used {:6.1f}%\n", what, worst, tol,
             100 * used);
  EXPECT_LE(worst, tol) << what << ": element " << at << " is " << g[at] << ", PyTorch has "
                        << w[at];
}

double scale_of(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector()) m = std::max(m, std::abs(v));
  return m > 0 ? m : 1.0;
}

void compare_rel(const std::string& what, const Tensor& got, const Tensor& want, double rel) {
  compare(what, got, want, rel * scale_of(want));
}

// want (f32) + diff (f32), in f64: how the fixture stores its float64 references.
Tensor f64_reference(const Tensor& f32, const Tensor& diff) {
  std::vector<double> a = f32.to_vector(), b = diff.to_vector();
  for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
  return Tensor::from_vector(a, f32.shape(), DType::f64);
}

Tensor item(const Tensor& batched, int64_t s) {
  return raw_contiguous(raw_squeeze(raw_slice(batched, 0, s, s + 1), 0));
}

std::shared_ptr<DecoderLM> fixture_model(DType dtype, Device device = kCPU) {
  const Fixture& f = fixture();
  Generator init(0);
  auto lm = std::make_shared<DecoderLM>(f.config, init);
  load_parameters(*lm, f.weights, "fixture '" + kFixture.string() + "'");
  if (dtype != DType::f32) lm->to(dtype);
  lm->to(device);
  lm->train();  // as the fixture (no dropout in its config)
  return lm;
}

// The fixture's AdamW steps; returns the loss of each step, before its update.
std::vector<Tensor> train_steps(DecoderLM& lm) {
  const Fixture& f = fixture();
  AdamOptions opt{.beta1 = f.number("beta1"), .beta2 = f.number("beta2"), .eps = f.number("eps")};
  AdamW adamw(lm.parameters(), f.number("lr"), f.number("weight_decay"), opt);
  const int64_t steps = static_cast<int64_t>(f.number("steps"));
  std::vector<Tensor> losses;
  for (int64_t s = 0; s < steps; ++s) {
    adamw.zero_grad();
    Tensor loss = lm.loss(raw_to_device(item(f.at("train.input_ids"), s), lm.device()),
                          raw_to_device(item(f.at("train.targets"), s), lm.device()));
    backward(loss);
    adamw.step();
    losses.push_back(loss);
  }
  return losses;
}

Tensor stack_scalars(const std::vector<Tensor>& xs, DType dtype) {
  std::vector<double> v;
  for (const Tensor& x : xs) v.push_back(x.item());
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}, dtype);
}

TEST(TorchParity, FixtureDescribesTheModel) {
  const Fixture& f = fixture();
  EXPECT_EQ(f.meta.at("format"), "pt");
  EXPECT_EQ(f.config.attention_dropout, 0.0);
  EXPECT_FALSE(f.config.tie_word_embeddings);
  // Every parameter's initial value, gradient and final value is in the fixture.
  Generator init(0);
  DecoderLM lm(f.config, init);
  for (const auto& [name, p] : lm.named_parameters()) {
    EXPECT_EQ(f.at(name).shape(), p.shape()) << name;
    EXPECT_EQ(f.at("grad." + name).shape(), p.shape()) << name;
    EXPECT_EQ(f.at("final." + name).shape(), p.shape()) << name;
  }
  EXPECT_EQ(f.weights.size(), lm.named_parameters().size());
}

// The same checks on each device: the CPU always, the GPU where there is one (SKIPPED otherwise).
void check_forward_and_gradients_f32(Device device) {
  const Fixture& f = fixture();
  auto lm = fixture_model(DType::f32, device);
  const Tensor ids = raw_to_device(f.at("fixture.input_ids"), device);
  const Tensor targets = raw_to_device(f.at("fixture.targets"), device);
  Tensor logits = lm->forward(ids);
  Tensor loss = lm->loss(ids, targets);
  fmt::print("f32 forward and backward on {} against PyTorch f32:\n", device.str());
  compare_rel("logits", logits, f.at("fixture.logits"), kF32Rel);
  compare_rel("loss", loss, f.at("fixture.loss"), kF32Rel);
  backward(loss);
  for (const auto& [name, p] : lm->named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_TRUE(p.grad().device() == device) << name;
    compare_rel("grad." + name, p.grad(), f.at("grad." + name), kF32Rel);
  }
}

void check_adamw_steps_f32(Device device) {
  const Fixture& f = fixture();
  auto lm = fixture_model(DType::f32, device);
  std::vector<Tensor> losses = train_steps(*lm);
  fmt::print("f32 AdamW steps on {} against PyTorch f32:\n", device.str());
  const Tensor want = f.at("train.losses");
  for (int64_t s = 0; s < want.numel(); ++s)
    compare_rel(fmt::format("train.losses[{}]", s), losses[s], item(want, s), kF32Rel);
  for (const auto& [name, p] : lm->named_parameters()) {
    const Tensor& final32 = f.at("final." + name);
    const Tensor drift = f.at("f64.final_minus_f32." + name);
    const double tol = std::max(kF32Rel * scale_of(final32), kDriftFactor * scale_of(drift));
    compare("final." + name, p, final32, tol);
  }
}

void check_forward_and_adamw_steps_f64(Device device) {
  const Fixture& f = fixture();
  auto lm = fixture_model(DType::f64, device);
  const Tensor ids = raw_to_device(f.at("fixture.input_ids"), device);
  const Tensor targets = raw_to_device(f.at("fixture.targets"), device);
  fmt::print("f64 forward and AdamW steps on {} against PyTorch f64:\n", device.str());
  compare_rel("logits", lm->forward(ids),
              f64_reference(f.at("fixture.logits"), f.at("f64.logits_minus_f32")), kF64Rel);
  compare_rel("loss", lm->loss(ids, targets), f.at("f64.loss"), kF64Rel);
  std::vector<Tensor> losses = train_steps(*lm);
  compare_rel("train.losses", stack_scalars(losses, DType::f64), f.at("f64.train.losses"), kF64Rel);
  for (const auto& [name, p] : lm->named_parameters())
    compare_rel("final." + name, p,
                f64_reference(f.at("final." + name), f.at("f64.final_minus_f32." + name)), kF64Rel);
}

TEST(TorchParity, ForwardAndGradientsF32) { check_forward_and_gradients_f32(kCPU); }
TEST(TorchParity, AdamWStepsF32) { check_adamw_steps_f32(kCPU); }
TEST(TorchParity, ForwardAndAdamWStepsF64) { check_forward_and_adamw_steps_f64(kCPU); }

TEST(TorchParity, ForwardAndGradientsF32OnCuda) {
  GRADUS_REQUIRE_CUDA();
  check_forward_and_gradients_f32(testing::kCUDA);
}
TEST(TorchParity, AdamWStepsF32OnCuda) {
  GRADUS_REQUIRE_CUDA();
  check_adamw_steps_f32(testing::kCUDA);
}
TEST(TorchParity, ForwardAndAdamWStepsF64OnCuda) {
  GRADUS_REQUIRE_CUDA();
  check_forward_and_adamw_steps_f64(testing::kCUDA);
}

// --------------------------------------------------------------- PyTorch loads a Gradus checkpoint

constexpr const char* kPython = "/usr/bin/python3";

// Why the PyTorch side cannot run here, or "" when it can.
std::string torch_unavailable() {
  if (access(kPython, X_OK) != 0) return std::string(kPython) + " is not installed";
  const std::string cmd = std::string(kPython) + " -c 'import torch' >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0)
    return std::string(kPython) + " has no torch (install it: apt-get install python3-torch)";
  return "";
}

// Runs the script and returns its JSON line.
nlohmann::json run_torch_loss(const std::string& checkpoint, const std::string& data) {
  const std::string cmd = fmt::format(
      "{} {} '{}' --data '{}' 2>&1", kPython,
      (kRepo / "scripts" / "check-torch-loads-checkpoint.py").string(), checkpoint, data);
  std::string out;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) throw Error("cannot run " + cmd);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int rc = pclose(pipe);
  if (rc != 0) throw Error(fmt::format("{} failed ({}):\n{}", cmd, rc, out));
  const size_t start = out.rfind('{');
  if (start == std::string::npos) throw Error(fmt::format("{} printed no JSON:\n{}", cmd, out));
  return nlohmann::json::parse(out.substr(start));
}

TEST(TorchParity, PyTorchLoadsAGradusCheckpointAndGetsTheSameLoss) {
  const std::string why = torch_unavailable();
  if (!why.empty()) GTEST_SKIP() << why;
  const fs::path dir = fs::temp_directory_path() / fmt::format("gradus_torch_parity_{}", getpid());
  fs::create_directories(dir);

  for (bool tied : {false, true}) {
    SCOPED_TRACE(tied ? "tied head" : "untied head");
    // Non-default rope_theta and rms_norm_eps: the script must take them from the metadata.
    ModelConfig c;
    c.vocab_size = 64;
    c.hidden_size = 32;
    c.intermediate_size = 40;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 2;
    c.rope_theta = 500.0;
    c.rms_norm_eps = 1e-6;
    c.max_position_embeddings = 24;
    c.tie_word_embeddings = tied;
    Generator init(tied ? 31 : 32);
    DecoderLM lm(c, init);

    // A few training steps, so the checkpoint is not the initialisation.
    std::vector<double> ids(3 * 24), targets(3 * 24);
    for (size_t i = 0; i < ids.size(); ++i) {
      ids[i] = static_cast<double>((i * 5 + 1) % 64);
      targets[i] = static_cast<double>((i * 5 + 6) % 64);
    }
    Tensor tid = Tensor::from_vector(ids, {3, 24}, DType::i64);
    Tensor ttg = Tensor::from_vector(targets, {3, 24}, DType::i64);
    AdamW opt(lm.parameters(), 1e-2);
    for (int s = 0; s < 3; ++s) {
      opt.zero_grad();
      backward(lm.loss(tid, ttg));
      opt.step();
    }
    lm.eval();
    const double gradus_loss = lm.loss(tid, ttg).item();

    const std::string ckpt = (dir / fmt::format("lm_{}.safetensors", tied)).string();
    const std::string data = (dir / "ids.safetensors").string();
    save_model(ckpt, lm);
    save_safetensors(data, {{"input_ids", tid}, {"targets", ttg}});
    const nlohmann::json r = run_torch_loss(ckpt, data);
    const double torch_loss = r.at("loss").get<double>();
    EXPECT_EQ(r.at("tokens").get<int64_t>(), 3 * 24);
    const double tol = kF32Rel * std::abs(torch_loss);
    fmt::print("  {} head: Gradus loss {:.9f}, PyTorch loss {:.9f}, |diff| {:.3e}, used {:.1f}%\n",
               tied ? "tied" : "untied", gradus_loss, torch_loss,
               std::abs(gradus_loss - torch_loss), 100 * std::abs(gradus_loss - torch_loss) / tol);
    EXPECT_NEAR(gradus_loss, torch_loss, tol);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace gradus
