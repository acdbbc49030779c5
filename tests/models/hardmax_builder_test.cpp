// The constructive builder: exact on every synthetic kind, counts within the formulas, a clear
// error for inseparable data, checkpoints that reload bit for bit, the evaluator equal to the plain
// reference, permutation equivariance and the tape model (models/hardmax/modules.h).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "autodiff/tape.h"
#include "models/hardmax/builder.h"
#include "models/hardmax/forward.h"
#include "models/hardmax/modules.h"
#include "models/hardmax/synthetic.h"
#include "models/io/safetensors.h"
#include "support/expect_error.h"

namespace gradus::hardmax {
namespace {

SyntheticSpec small(const std::string& kind, int64_t n, int64_t d, int64_t vocab, int64_t classes) {
  SyntheticSpec s;
  s.kind = kind;
  s.n = n;
  s.d = d;
  s.vocab = vocab;
  s.min_length = 2;
  s.max_length = 10;
  s.classes = classes;
  return s;
}

TEST(HardmaxBuilder, ClassifiesEveryKindExactlyWithinTheBounds) {
  for (const std::string& kind : synthetic_kinds()) {
    const Dataset data = make_synthetic(small(kind, 60, 3, kind == "grid" ? 3 : 10, 3));
    const BuildResult r = build(data);
    const BuildReport& p = r.report;
    EXPECT_EQ(p.train_accuracy, 1.0) << kind;
    EXPECT_EQ(classify(r.net, data).correct, data.size()) << kind;
    EXPECT_EQ(p.blocks, 2 + 2 * p.groups_final - p.groups_initial) << kind;
    EXPECT_LE(p.blocks, 2 * data.size() + 1) << kind;
    EXPECT_EQ(p.blocks, r.net.num_blocks()) << kind;
    EXPECT_LE(p.parameters, p.parameter_bound) << kind;
    EXPECT_GT(p.readout_margin, 0.4) << kind;
  }
}

TEST(HardmaxBuilder, BuildsInF32) {
  BuildOptions o;
  o.dtype = DType::f32;
  const Dataset data = make_synthetic(small("random", 80, 4, 12, 2));
  const BuildResult r = build(data, o);
  EXPECT_EQ(r.net.dtype, DType::f32);
  EXPECT_EQ(classify(r.net, data).accuracy, 1.0);
}

TEST(HardmaxBuilder, RejectsEqualTokenSetsWithDifferentLabelsNamingThePair) {
  Dataset data;
  data.d = 2;
  data.source = "toy.jsonl";
  data.add(std::vector<double>{0, 1, 2, 3}, 0);        // {a, b}
  data.add(std::vector<double>{5, 5, 0, 1}, 1);        // {c, a}
  data.add(std::vector<double>{2, 3, 0, 1, 0, 1}, 1);  // {b, a, a}: the set of sequence 0
  testing::expect_error([&] { build(data); }, {"toy.jsonl", "sequences 0 (label 0) and 2 (label 1)",
                                               "same set of tokens"});
  data.labels[2] = 0;  // the same set with the same label is fine
  EXPECT_EQ(build(data).report.train_accuracy, 1.0);
}

TEST(HardmaxBuilder, NeedsTwoDimensions) {
  Dataset data;
  data.d = 1;
  data.add(std::vector<double>{1, 2}, 0);
  data.add(std::vector<double>{3}, 1);
  testing::expect_error([&] { build(data); }, {"d >= 2", "found d = 1"});
}

TEST(HardmaxBuilder, CheckpointReloadsBitForBit) {
  const Dataset data = make_synthetic(small("duplicates", 50, 3, 8, 2));
  for (DType dt : {DType::f64, DType::f32}) {
    BuildOptions o;
    o.dtype = dt;
    const BuildResult r = build(data, o);
    const std::string path = (std::filesystem::temp_directory_path() /
                              fmt::format("hardmax_test_{}.safetensors", dtype_name(dt)))
                                 .string();
    save_net(r.net, path);
    const Net back = load_net(path);
    std::remove(path.c_str());
    ASSERT_EQ(back.num_blocks(), r.net.num_blocks());
    EXPECT_EQ(back.dtype, dt);
    for (int64_t b = 0; b < back.num_blocks(); ++b) {
      EXPECT_EQ(back.blocks[b].ff.in_weight, r.net.blocks[b].ff.in_weight);
      EXPECT_EQ(back.blocks[b].ff.out_weight, r.net.blocks[b].ff.out_weight);
      EXPECT_EQ(back.blocks[b].sa.alpha, r.net.blocks[b].sa.alpha);
      EXPECT_EQ(back.blocks[b].role, r.net.blocks[b].role);
    }
    EXPECT_EQ(forward_tokens(back, data), forward_tokens(r.net, data));
    EXPECT_EQ(classify(back, data).accuracy, 1.0);
    EXPECT_NE(back.info.count("build"), 0u);
  }
}

TEST(HardmaxBuilder, LoadRejectsOtherFiles) {
  const std::string path =
      (std::filesystem::temp_directory_path() / "hardmax_test_not_a_model.safetensors").string();
  save_safetensors(path, {{"w", Tensor::zeros({2})}}, {{"format", "pt"}});
  testing::expect_error([&] { load_net(path); }, {path, "not a hardmax model"});
  std::remove(path.c_str());
}

TEST(HardmaxBuilder, EvaluatorEqualsTheReferenceBitForBit) {
  const Dataset data = make_synthetic(small("random", 40, 3, 8, 2));
  const BuildResult r = build(data);
  const std::vector<double> fast = forward_tokens(r.net, data);
  for (int64_t n = 0; n < data.size(); ++n) {
    std::vector<double> x(data.tokens.begin() + data.offsets[n] * data.d,
                          data.tokens.begin() + data.offsets[n + 1] * data.d);
    for (const Block& b : r.net.blocks) reference_block(b, data.d, x);
    for (size_t i = 0; i < x.size(); ++i)
      ASSERT_EQ(x[i], fast[data.offsets[n] * data.d + i]) << "sequence " << n;
  }
}

TEST(HardmaxBuilder, PermutingTokensPermutesTheOutputs) {
  const Dataset data = make_synthetic(small("random", 40, 3, 8, 2));
  const BuildResult r = build(data);
  Dataset rev = data;  // every sequence reversed
  for (int64_t n = 0; n < data.size(); ++n)
    for (int64_t i = 0; i < data.length(n); ++i)
      for (int64_t c = 0; c < data.d; ++c)
        rev.tokens[(data.offsets[n] + i) * data.d + c] =
            data.tokens[(data.offsets[n + 1] - 1 - i) * data.d + c];
  int64_t split_end = 0;
  while (r.net.blocks[split_end].role != BlockRole::collapse) ++split_end;
  const auto y = forward_tokens(r.net, data, split_end), yr = forward_tokens(r.net, rev, split_end);
  for (int64_t n = 0; n < data.size(); ++n)
    for (int64_t i = 0; i < data.length(n); ++i)
      for (int64_t c = 0; c < data.d; ++c)
        ASSERT_EQ(yr[(data.offsets[n] + i) * data.d + c],
                  y[(data.offsets[n + 1] - 1 - i) * data.d + c]);
  EXPECT_EQ(classify(r.net, rev).accuracy, 1.0);
}

TEST(HardmaxBuilder, TapeModelClassifiesTheTrainingSet) {
  const Dataset data = make_synthetic(small("random", 30, 3, 8, 2));
  const BuildResult r = build(data);
  HardmaxTransformer model(r.net);
  EXPECT_EQ(model.num_parameters(), r.net.num_parameters() + data.d);
  const int64_t B = data.size(), T = data.max_length(), d = data.d;
  std::vector<double> x(static_cast<size_t>(B * T * d), 0.0);
  std::vector<double> lengths;
  for (int64_t n = 0; n < B; ++n) {
    lengths.push_back(static_cast<double>(data.length(n)));
    for (int64_t i = 0; i < data.length(n); ++i)
      for (int64_t c = 0; c < d; ++c)
        x[(n * T + i) * d + c] = data.tokens[(data.offsets[n] + i) * d + c];
  }
  NoGradGuard g;
  const Tensor y = model.forward(Tensor::from_vector(x, {B, T, d}, DType::f64),
                                 Tensor::from_vector(lengths, {B}, DType::i64));
  const std::vector<double> ro = model.readout(y).to_vector();
  for (int64_t n = 0; n < B; ++n) EXPECT_EQ(std::llround(ro[n]), data.labels[n]) << n;
  // And back to plain data without loss.
  EXPECT_EQ(forward_tokens(model.to_net(), data), forward_tokens(r.net, data));
}

}  // namespace
}  // namespace gradus::hardmax
