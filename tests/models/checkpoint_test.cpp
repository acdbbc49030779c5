// Checkpoints: the file a model checkpoint is (Hugging Face names, (out, in) weights, the config in
// __metadata__ with "format": "pt", no lm_head.weight when tied), bit-exact round trips in f32 and
// f64, one error listing every missing / extra / mis-shaped / mis-typed tensor and architecture
// mismatch (and a failed load changing nothing), and training state: training N steps straight
// equals training k steps, saving, loading into a fresh model and optimiser, and training N - k
// steps, bit for bit, with dropout on, a learning-rate schedule and two parameter groups.
#include "models/checkpoint/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "autodiff/tape.h"
#include "models/data/text_dataset.h"
#include "models/io/safetensors.h"
#include "models/optim/adam.h"
#include "models/optim/sgd.h"

namespace gradus {
namespace {

namespace fs = std::filesystem;
using Metadata = std::map<std::string, std::string>;

template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

#define EXPECT_CONTAINS(text, part)                                                                \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "missing '" << (part) << "' in:\n" \
                                                             << (text)

// A fresh directory per test, removed afterwards.
class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fmt::format("gradus_checkpoint_test_{}_{}", getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

ModelConfig tiny_config(bool tied = false, double dropout = 0.0) {
  ModelConfig c;
  c.vocab_size = 32;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.max_position_embeddings = 12;
  c.tie_word_embeddings = tied;
  c.attention_dropout = dropout;
  return c;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ca = raw_contiguous(a), cb = raw_contiguous(b);
  return std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
}

// Every parameter of a and b, by name, bit for bit.
void expect_same_parameters(const Module& a, const Module& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].first, pb[i].first);
    EXPECT_TRUE(same_bits(pa[i].second, pb[i].second)) << pa[i].first;
  }
}

// Snapshot of the parameters, to check that a failed load changed nothing.
std::vector<Tensor> snapshot(const Module& m) {
  std::vector<Tensor> out;
  for (const Tensor& p : m.parameters()) out.push_back(raw_clone(p));
  return out;
}
void expect_unchanged(const Module& m, const std::vector<Tensor>& before) {
  auto params = m.parameters();
  ASSERT_EQ(params.size(), before.size());
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(same_bits(params[i], before[i]));
}

Tensor ids_tensor(const std::vector<double>& v, int64_t B, int64_t T) {
  return Tensor::from_vector(v, {B, T}, DType::i64);
}

// --------------------------------------------------------------------------------- model weights

TEST_F(CheckpointTest, FileHasHuggingFaceNamesLayoutAndConfig) {
  Generator gen(7);
  DecoderLM lm(tiny_config(), gen);
  save_model(path("m.safetensors"), lm, {{"run", "unit-test"}});
  const SafetensorsFile f = load_safetensors(path("m.safetensors"));

  // Exactly named_parameters(), under the Hugging Face names, (out, in) as nn.Linear.
  auto params = lm.named_parameters();
  ASSERT_EQ(f.tensors.size(), params.size());
  std::map<std::string, Tensor> by_name(f.tensors.begin(), f.tensors.end());
  for (const auto& [name, p] : params) {
    ASSERT_TRUE(by_name.count(name)) << name;
    EXPECT_TRUE(same_bits(by_name[name], p)) << name;
  }
  EXPECT_EQ(by_name.at("model.layers.1.mlp.gate_proj.weight").shape(), (Shape{24, 16}));
  EXPECT_EQ(by_name.at("model.layers.1.mlp.down_proj.weight").shape(), (Shape{16, 24}));
  EXPECT_EQ(by_name.at("lm_head.weight").shape(), (Shape{32, 16}));
  EXPECT_TRUE(by_name.count("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_TRUE(by_name.count("model.layers.0.post_attention_layernorm.weight"));

  // The configuration under the LlamaConfig keys, "format": "pt", and the extra entry.
  EXPECT_EQ(f.metadata.at("format"), "pt");
  EXPECT_EQ(f.metadata.at("gradus_checkpoint"), "model");
  EXPECT_EQ(f.metadata.at("vocab_size"), "32");
  EXPECT_EQ(f.metadata.at("hidden_size"), "16");
  EXPECT_EQ(f.metadata.at("intermediate_size"), "24");
  EXPECT_EQ(f.metadata.at("num_hidden_layers"), "2");
  EXPECT_EQ(f.metadata.at("num_attention_heads"), "2");
  EXPECT_EQ(f.metadata.at("rms_norm_eps"), "1e-05");
  EXPECT_EQ(f.metadata.at("rope_theta"), "10000");
  EXPECT_EQ(f.metadata.at("max_position_embeddings"), "12");
  EXPECT_EQ(f.metadata.at("tie_word_embeddings"), "false");
  EXPECT_EQ(f.metadata.at("attention_kind"), "std");
  EXPECT_EQ(f.metadata.at("run"), "unit-test");
  EXPECT_EQ(read_model_config(path("m.safetensors")), lm.config());
}

TEST_F(CheckpointTest, LoadModelRoundTripsBitForBit) {
  for (DType dt : {DType::f32, DType::f64}) {
    SCOPED_TRACE(dtype_name(dt));
    Generator gen(3);
    DecoderLM lm(tiny_config(), gen);
    lm.to(dt);
    save_model(path("m.safetensors"), lm);
    auto loaded = load_model(path("m.safetensors"));
    EXPECT_EQ(loaded->config(), lm.config());
    EXPECT_FALSE(loaded->is_training());  // as from_pretrained
    expect_same_parameters(*loaded, lm);
    EXPECT_EQ(loaded->named_parameters()[0].second.dtype(), dt);

    lm.eval();
    Tensor ids = ids_tensor({1, 5, 9, 30, 2, 0, 7, 7}, 2, 4);
    EXPECT_TRUE(same_bits(loaded->forward(ids), lm.forward(ids)));
  }
}

TEST_F(CheckpointTest, TiedHeadIsWrittenOnceAndReTied) {
  Generator gen(4);
  DecoderLM lm(tiny_config(/*tied=*/true), gen);
  save_model(path("tied.safetensors"), lm);
  const SafetensorsFile f = load_safetensors(path("tied.safetensors"));
  for (const auto& [name, t] : f.tensors) EXPECT_NE(name, "lm_head.weight");
  EXPECT_EQ(f.metadata.at("tie_word_embeddings"), "true");

  auto loaded = load_model(path("tied.safetensors"));
  EXPECT_TRUE(loaded->lm_head()->weight().same(loaded->model()->embed_tokens()->weight()));
  expect_same_parameters(*loaded, lm);

  // A file that also writes the head (as some exporters do) loads when the two agree ...
  auto tensors = f.tensors;
  Tensor table;
  for (const auto& [name, t] : tensors)
    if (name == "model.embed_tokens.weight") table = t;
  tensors.emplace_back("lm_head.weight", raw_clone(table));
  save_safetensors(path("both.safetensors"), tensors, f.metadata);
  EXPECT_NO_THROW(load_into(path("both.safetensors"), *loaded));
  // ... and is refused when they differ.
  Tensor other = raw_clone(table);
  other.data<float>()[3] += 1.0f;
  tensors.back().second = other;
  save_safetensors(path("differ.safetensors"), tensors, f.metadata);
  const std::string err = error_of([&] { load_into(path("differ.safetensors"), *loaded); });
  EXPECT_CONTAINS(err, path("differ.safetensors"));
  EXPECT_CONTAINS(err, "tied weight differs: lm_head.weight");
}

TEST_F(CheckpointTest, LoadIntoListsEveryMismatchAtOnceAndChangesNothing) {
  Generator gen(5);
  DecoderLM lm(tiny_config(), gen);
  auto tensors = lm.named_parameters();
  std::vector<std::pair<std::string, Tensor>> edited;
  for (auto [name, t] : tensors) {
    if (name == "model.norm.weight" || name == "model.layers.1.input_layernorm.weight")
      continue;                                                                    // missing
    if (name == "model.layers.0.mlp.up_proj.weight") t = Tensor::zeros({20, 16});  // shape
    if (name == "lm_head.weight") t = raw_to_dtype(t, DType::f64);                 // dtype
    edited.emplace_back(name, t);
  }
  edited.emplace_back("model.layers.2.mlp.up_proj.weight", Tensor::zeros({24, 16}));  // extra
  Metadata meta = lm.config().to_map();
  meta["hidden_size"] = "16";
  meta["rope_theta"] = "500000";  // another architecture
  save_safetensors(path("bad.safetensors"), edited, meta);

  Generator gen2(6);
  DecoderLM target(tiny_config(), gen2);
  const auto before = snapshot(target);
  const std::string err = error_of([&] { load_into(path("bad.safetensors"), target); });
  EXPECT_CONTAINS(err, "load_into: checkpoint '" + path("bad.safetensors") + "'");
  EXPECT_CONTAINS(err, "6 problems");
  EXPECT_CONTAINS(err, "missing from the file (2): model.layers.1.input_layernorm.weight (16)");
  EXPECT_CONTAINS(err, "model.norm.weight (16)");
  EXPECT_CONTAINS(
      err, "not parameters of the model (1): model.layers.2.mlp.up_proj.weight f32 (24, 16)");
  EXPECT_CONTAINS(err,
                  "shape mismatch: model.layers.0.mlp.up_proj.weight is (20, 16) in the file, "
                  "(24, 16) in the model");
  EXPECT_CONTAINS(err, "dtype mismatch: lm_head.weight is f64 in the file, f32 in the model");
  EXPECT_CONTAINS(err, "config mismatch: rope_theta is 500000 in the file, 10000 in the model");
  expect_unchanged(target, before);

  // load_parameters: the same check on tensors in memory, naming the given source.
  const std::string err2 = error_of([&] { load_parameters(target, edited, "the fixture"); });
  EXPECT_CONTAINS(err2, "load_parameters: the fixture does not match the model (5 problems)");
  expect_unchanged(target, before);
}

TEST_F(CheckpointTest, AttentionKindOptionsMustAgree) {
  // An option of an attention kind (here the EGT base) changes what the weights compute.
  Generator gen(8);
  DecoderLM lm(tiny_config(), gen);
  Metadata meta = lm.config().to_map();
  meta["graded_base"] = "3";
  save_safetensors(path("graded.safetensors"), lm.named_parameters(), meta);
  Generator gen2(9);
  DecoderLM target(tiny_config(), gen2);
  const std::string err = error_of([&] { load_into(path("graded.safetensors"), target); });
  EXPECT_CONTAINS(err, "config mismatch: graded_base is 3 in the file");
}

TEST_F(CheckpointTest, TrainingOnlyKeysMayDiffer) {
  // attention_dropout and max_position_embeddings do not change what the weights compute.
  Generator gen(8);
  DecoderLM lm(tiny_config(false, 0.0), gen);
  save_model(path("m.safetensors"), lm);
  ModelConfig c = tiny_config(false, 0.25);
  c.max_position_embeddings = 64;
  Generator gen2(9);
  DecoderLM other(c, gen2);
  load_into(path("m.safetensors"), other);
  expect_same_parameters(other, lm);
}

TEST_F(CheckpointTest, ConfigurationErrorsNameTheFileAndKey) {
  Generator gen(10);
  DecoderLM lm(tiny_config(), gen);
  auto tensors = lm.named_parameters();

  save_safetensors(path("nometa.safetensors"), tensors);
  std::string err = error_of([&] { load_model(path("nometa.safetensors")); });
  EXPECT_CONTAINS(err, "load_model: '" + path("nometa.safetensors") + "'");
  EXPECT_CONTAINS(err, "lacks the model configuration keys vocab_size, hidden_size");
  EXPECT_CONTAINS(err, "tie_word_embeddings");

  Metadata meta = lm.config().to_map();
  meta["num_attention_heads"] = "three";
  save_safetensors(path("badvalue.safetensors"), tensors, meta);
  err = error_of([&] { load_model(path("badvalue.safetensors")); });
  EXPECT_CONTAINS(err, path("badvalue.safetensors"));
  EXPECT_CONTAINS(err, "num_attention_heads must be an integer, found 'three'");

  err = error_of([&] { save_model(path("x.safetensors"), lm, {{"hidden_size", "3"}}); });
  EXPECT_CONTAINS(err, "extra metadata key 'hidden_size'");
  err = error_of([&] { save_model(path("x.safetensors"), lm, {{"gradus_checkpoint", "x"}}); });
  EXPECT_CONTAINS(err, "extra metadata key 'gradus_checkpoint'");
  EXPECT_FALSE(fs::exists(path("x.safetensors")));

  // A checkpoint without metadata still loads into a model: the tensors decide.
  Generator gen2(11);
  DecoderLM target(tiny_config(), gen2);
  load_into(path("nometa.safetensors"), target);
  expect_same_parameters(target, lm);
}

// --------------------------------------------------------------------------------- training state

constexpr int64_t kBatch = 3, kContext = 10;

// A token stream with structure (so the loss moves), from Philox.
TextDataset make_dataset() {
  std::vector<int64_t> tokens(2000);
  for (size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<int64_t>((i * 7 + (philox_block(99, i).v[0] % 3)) % 32);
  return TextDataset(std::move(tokens), 0.1, 32, "synthetic");
}

// A training run: model, AdamW over two groups (decay / no decay, as language-model training
// does), the data generator and a step counter.
struct TrainingRun {
  std::shared_ptr<DecoderLM> model;
  std::unique_ptr<AdamW> optimizer;
  Generator data{0};
  int64_t step = 0;
};

TrainingRun make_run(uint64_t init_seed, double lr = 3e-3) {
  TrainingRun r;
  Generator init(init_seed);
  r.model = std::make_shared<DecoderLM>(tiny_config(false, /*dropout=*/0.2), init);
  ParamGroup decay{.lr = lr, .weight_decay = 0.1, .name = "decay"};
  ParamGroup no_decay{.lr = lr, .weight_decay = 0.0, .name = "no_decay"};
  for (const auto& [name, p] : r.model->named_parameters())
    (p.dim() == 1 ? no_decay : decay).params.push_back(p);
  r.optimizer = std::make_unique<AdamW>(std::vector<ParamGroup>{decay, no_decay});
  r.data = Generator(init_seed * 1000 + 1);
  return r;
}

// `n` steps with a warm-up + cosine learning rate set from the step counter; returns the losses.
std::vector<float> train(TrainingRun& r, const TextDataset& data, int64_t n, int64_t total) {
  std::vector<float> losses;
  for (int64_t i = 0; i < n; ++i) {
    const double warm = std::min(1.0, static_cast<double>(r.step + 1) / 3.0);
    const double lr = 3e-3 * warm * 0.5 * (1 + std::cos(M_PI * r.step / total));
    for (ParamGroup& g : r.optimizer->param_groups()) g.lr = lr;
    TokenBatch b = data.sample(Split::train, kBatch, kContext, r.data);
    r.optimizer->zero_grad();
    Tensor loss = r.model->loss(b.inputs, b.targets);
    backward(loss);
    r.optimizer->step();
    ++r.step;
    losses.push_back(static_cast<float>(loss.item()));
  }
  return losses;
}

TEST_F(CheckpointTest, ResumeContinuesBitForBit) {
  const TextDataset data = make_dataset();
  constexpr int64_t kTotal = 8, kFirst = 3;

  TrainingRun straight = make_run(21);
  std::vector<float> straight_losses = train(straight, data, kTotal, kTotal);

  TrainingRun first = make_run(21);
  std::vector<float> losses = train(first, data, kFirst, kTotal);
  // The lr saved here is the schedule's value at step kFirst - 1; the resumed run overwrites it.
  save_training_state(path("state.safetensors"), *first.model, *first.optimizer,
                      {.step = first.step,
                       .generators = {{"data", first.data}},
                       .metadata = {{"run", "resume-test"}}});

  // A fresh model from another seed (its weights must come from the file) and a fresh optimiser
  // with another lr (restored from the file too).
  TrainingRun resumed = make_run(77, /*lr=*/0.5);
  TrainingState st =
      load_training_state(path("state.safetensors"), *resumed.model, *resumed.optimizer);
  EXPECT_EQ(st.step, kFirst);
  ASSERT_EQ(st.generators.count("data"), 1u);
  EXPECT_EQ(st.generators.at("data").seed, first.data.seed);
  EXPECT_EQ(st.generators.at("data").offset, first.data.offset);
  EXPECT_EQ(st.metadata, (Metadata{{"run", "resume-test"}}));
  EXPECT_EQ(resumed.model->rng()->seed, first.model->rng()->seed);
  EXPECT_EQ(resumed.model->rng()->offset, first.model->rng()->offset);
  EXPECT_NE(first.model->rng()->offset, uint64_t{1} << 62);  // dropout did draw
  EXPECT_EQ(resumed.optimizer->param_groups()[0].lr, first.optimizer->param_groups()[0].lr);
  EXPECT_EQ(resumed.optimizer->step_count(), kFirst);
  resumed.step = st.step;
  resumed.data = st.generators.at("data");

  std::vector<float> rest = train(resumed, data, kTotal - kFirst, kTotal);
  losses.insert(losses.end(), rest.begin(), rest.end());
  for (int64_t i = 0; i < kTotal; ++i)
    EXPECT_EQ(std::bit_cast<uint32_t>(losses[i]), std::bit_cast<uint32_t>(straight_losses[i]))
        << "step " << i;
  expect_same_parameters(*resumed.model, *straight.model);
  EXPECT_EQ(resumed.model->rng()->offset, straight.model->rng()->offset);
  EXPECT_EQ(resumed.data.offset, straight.data.offset);
  auto a = resumed.optimizer->state_tensors(), b = straight.optimizer->state_tensors();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(same_bits(a[i].second, b[i].second)) << a[i].first;
  }
  EXPECT_GT(straight_losses.front(), straight_losses.back());  // it trained
}

TEST_F(CheckpointTest, TrainingStateFileHoldsTheDocumentedTensors) {
  TrainingRun r = make_run(5);
  const TextDataset data = make_dataset();
  train(r, data, 1, 4);
  save_training_state(path("s.safetensors"), *r.model, *r.optimizer,
                      {.step = 1, .generators = {{"data", r.data}}});
  const SafetensorsFile f = load_safetensors(path("s.safetensors"));
  std::map<std::string, Tensor> t(f.tensors.begin(), f.tensors.end());
  EXPECT_EQ(f.metadata.at("gradus_checkpoint"), "training_state");
  EXPECT_EQ(f.metadata.at("gradus_optimizer"), "AdamW");
  EXPECT_CONTAINS(f.metadata.at("gradus_optimizer_groups"), "\"name\":\"no_decay\"");
  EXPECT_CONTAINS(f.metadata.at("gradus_optimizer_groups"), "\"model.norm.weight\"");
  EXPECT_EQ(t.at("training.step").dtype(), DType::i64);
  EXPECT_EQ(t.at("training.step").item(), 1.0);
  EXPECT_EQ(t.at("training.rng.data").shape(), (Shape{2}));
  EXPECT_EQ(t.at("training.model_rng").shape(), (Shape{2}));
  EXPECT_EQ(t.at("optimizer.step_count").item(), 1.0);
  EXPECT_EQ(t.at("optimizer.group0.param0.exp_avg").shape(), (Shape{32, 16}));
  EXPECT_TRUE(t.count("model.embed_tokens.weight"));

  // It is also a model checkpoint.
  auto loaded = load_model(path("s.safetensors"));
  expect_same_parameters(*loaded, *r.model);
}

TEST_F(CheckpointTest, TrainingStateErrorsNameTheFileAndChangeNothing) {
  TrainingRun r = make_run(6);
  const TextDataset data = make_dataset();
  train(r, data, 2, 4);
  const std::string good = path("s.safetensors");
  save_training_state(good, *r.model, *r.optimizer, {.step = 2});

  TrainingRun target = make_run(7);
  const auto before = snapshot(*target.model);

  // A model checkpoint is not a training state.
  save_model(path("m.safetensors"), *r.model);
  std::string err = error_of(
      [&] { load_training_state(path("m.safetensors"), *target.model, *target.optimizer); });
  EXPECT_CONTAINS(err,
                  "load_training_state: '" + path("m.safetensors") + "' is not a training state");

  // Another optimiser kind.
  SGD sgd(target.model->parameters(), 0.1);
  err = error_of([&] { load_training_state(good, *target.model, sgd); });
  EXPECT_CONTAINS(err, good);
  EXPECT_CONTAINS(err, "the state is of a AdamW optimiser, but a SGD was given");

  // Other parameter groups.
  AdamW one_group(target.model->parameters());
  err = error_of([&] { load_training_state(good, *target.model, one_group); });
  EXPECT_CONTAINS(err, "the state has 2 parameter groups, the optimiser 1");
  std::vector<Tensor> reversed = target.model->parameters();
  std::reverse(reversed.begin(), reversed.end());
  AdamW reordered(std::vector<ParamGroup>{{.params = reversed}, {.params = {}}});
  err = error_of([&] { load_training_state(good, *target.model, reordered); });
  EXPECT_CONTAINS(err, "optimiser group 0 holds");
  EXPECT_CONTAINS(err,
                  "first differ at position 0: 'model.embed_tokens.weight' in the state, "
                  "'lm_head.weight' here");

  // A corrupt scalar and a corrupt optimiser tensor name the tensor.
  SafetensorsFile f = load_safetensors(good);
  auto edit = [&](const std::string& name, const Tensor& value, const std::string& out) {
    auto tensors = f.tensors;
    for (auto& [n, t] : tensors)
      if (n == name) t = value;
    save_safetensors(out, tensors, f.metadata);
  };
  edit("training.step", Tensor::scalar(2.0), path("step.safetensors"));
  err = error_of(
      [&] { load_training_state(path("step.safetensors"), *target.model, *target.optimizer); });
  EXPECT_CONTAINS(err, path("step.safetensors"));
  EXPECT_CONTAINS(err, "tensor 'training.step' must be a rank-0 i64, found f32 ()");
  edit("optimizer.group0.param1.exp_avg", Tensor::zeros({3, 3}), path("opt.safetensors"));
  err = error_of(
      [&] { load_training_state(path("opt.safetensors"), *target.model, *target.optimizer); });
  EXPECT_CONTAINS(err, path("opt.safetensors"));
  EXPECT_CONTAINS(err, "group0.param1.exp_avg");

  expect_unchanged(*target.model, before);
  EXPECT_EQ(target.optimizer->step_count(), 0);
  EXPECT_EQ(target.model->rng()->offset, uint64_t{1} << 62);
}

}  // namespace
}  // namespace gradus
