// models/nn/attention_heads.h: heads are blocks of D consecutive channels, split as a view and
// merged back unchanged; rope_heads rotates every head on its own; the input check and the
// projections the attention kinds share.
#include "models/nn/attention_heads.h"

#include <gtest/gtest.h>

#include <vector>

#include "autodiff/ops/rope.h"
#include "autodiff/ops/view.h"
#include "support/expect_error.h"

namespace gradus {
namespace {

constexpr int64_t B = 2, T = 3, H = 2, D = 4;

// (B, T, H * D) holding 0, 1, 2, ... in row-major order.
Tensor channels() { return reshape(Tensor::arange(B * T * H * D, DType::f64), {B, T, H * D}); }

TEST(AttentionHeads, SplitIsAViewOfBlocksOfChannelsAndMergeUndoesIt) {
  Tensor x = channels();
  Tensor heads = split_heads(x, H);
  ASSERT_EQ(heads.shape(), (Shape{B, H, T, D}));
  EXPECT_FALSE(heads.is_contiguous());  // a view: nothing copied
  const std::vector<double> v = heads.to_vector();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t d = 0; d < D; ++d)
          EXPECT_EQ(v[static_cast<size_t>(((b * H + h) * T + t) * D + d)],
                    static_cast<double>((b * T + t) * H * D + h * D + d));
  Tensor merged = merge_heads(heads);
  EXPECT_EQ(merged.shape(), x.shape());
  EXPECT_EQ(merged.to_vector(), x.to_vector());
}

TEST(AttentionHeads, RopeHeadsRotatesEveryHeadAtItsPositions) {
  Tensor x = channels();
  const double theta = 100.0;
  const int64_t offset = 5;
  const std::vector<double> got = rope_heads(x, H, theta, offset).to_vector();
  for (int64_t h = 0; h < H; ++h) {
    // Head h alone: its D channels as one head.
    Tensor one = unsqueeze(contiguous(slice(x, 2, h * D, (h + 1) * D)), 1);  // (B, 1, T, D)
    const std::vector<double> want = rope(one, theta, offset).to_vector();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < T * D; ++i)
        EXPECT_EQ(got[static_cast<size_t>((b * H + h) * T * D + i)],
                  want[static_cast<size_t>(b * T * D + i)])
            << "head " << h << ", batch " << b << ", element " << i;
  }
}

TEST(AttentionHeads, BadShapesAreClearErrors) {
  testing::expect_error(
      [] {
        check_attention_input("MyAttention", Tensor::zeros({2, 3, 6}), 8);
      },
      {"MyAttention", "expected x of shape (B, T, 8)"});
  testing::expect_error(
      [] {
        check_attention_input("MyAttention", Tensor::zeros({3, 8}), 8);
      },
      {"MyAttention", "(B, T, 8)"});
  testing::expect_error([] { split_heads(Tensor::zeros({2, 3, 6}), 4); }, {"split_heads", "H = 4"});
  testing::expect_error(
      [] {
        merge_heads(Tensor::zeros({2, 3, 6}));
      },
      {"merge_heads", "(B, H, T, D)"});
}

TEST(AttentionHeads, ProjectionIsASquareBiasFreeLinearDrawnFromTheGenerator) {
  Module owner;
  Generator gen(3), same(3);
  std::shared_ptr<Linear> q = add_projection(owner, "q_proj", 8, gen);
  Linear want(8, 8, false, same);
  ASSERT_EQ(owner.named_children().size(), 1u);
  EXPECT_EQ(owner.named_children()[0].first, "q_proj");
  EXPECT_EQ(owner.named_children()[0].second.get(), q.get());
  EXPECT_EQ(q->weight().shape(), (Shape{8, 8}));
  EXPECT_EQ(q->weight().to_vector(), want.weight().to_vector());
  EXPECT_EQ(owner.parameters().size(), 1u);  // no bias
}

}  // namespace
}  // namespace gradus
