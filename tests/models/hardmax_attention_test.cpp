// The hardmax self-attention op: gradchecks (away from ties), the facts of the spec (ties averaged,
// negative queries attend to the minimum, collapse onto the two extremes, spheres fixed by A = I),
// and bit-for-bit agreement with the evaluator and the reference of models/hardmax/.
#include <gtest/gtest.h>

#include <cmath>

#include "autodiff/ops/hardmax.h"
#include "autodiff/ops/view.h"
#include "autodiff/tape.h"
#include "core/random.h"
#include "models/hardmax/forward.h"
#include "support/expect_error.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::randn_leaf;

Tensor make(const std::vector<double>& v, const Shape& s) {
  return Tensor::from_vector(v, s, DType::f64);
}

TEST(Gradcheck, hardmax_attention) {
  Tensor x = randn_leaf({2, 5, 3}, 1);
  Tensor q = randn_leaf({3}, 2), k = randn_leaf({3}, 3);
  Tensor alpha = make({0.3}, {});
  alpha.set_requires_grad(true);
  Tensor lengths = Tensor::from_vector({5, 3}, {2}, DType::i64);
  EXPECT_GRADCHECK(
      [&](const std::vector<Tensor>& in) {
        return hardmax_attention(in[0], in[1], in[2], in[3], lengths);
      },
      (std::vector<Tensor>{x, q, k, alpha}));
  // Non-contiguous x (a strided slice) and a broadcast input (one sequence expanded to a batch).
  Tensor xn = testing::noncontiguous_leaf({2, 4, 3}, 4);
  EXPECT_GRADCHECK(
      [&](const std::vector<Tensor>& in) { return hardmax_attention(in[0], in[1], in[2], in[3]); },
      (std::vector<Tensor>{xn, q, k, alpha}));
  Tensor x1 = randn_leaf({1, 4, 3}, 5);
  EXPECT_GRADCHECK(
      [&](const std::vector<Tensor>& in) {
        return hardmax_attention(expand(in[0], {3, 4, 3}), in[1], in[2], in[3]);
      },
      (std::vector<Tensor>{x1, q, k, alpha}));
}

TEST(Gradcheck, hardmax_attention_general) {
  Tensor x = randn_leaf({2, 4, 3}, 11);
  Tensor A = randn_leaf({3, 3}, 12);
  Tensor alpha = make({0.6}, {1});
  alpha.set_requires_grad(true);
  Tensor lengths = Tensor::from_vector({2, 4}, {2}, DType::i64);
  EXPECT_GRADCHECK(
      [&](const std::vector<Tensor>& in) {
        return hardmax_attention_general(in[0], in[1], in[2], lengths);
      },
      (std::vector<Tensor>{x, A, alpha}));
  Tensor xn = testing::noncontiguous_leaf({2, 4, 3}, 13);
  EXPECT_GRADCHECK(
      [&](const std::vector<Tensor>& in) { return hardmax_attention_general(in[0], in[1], in[2]); },
      (std::vector<Tensor>{xn, A, alpha}));
}

TEST(HardmaxAttention, TiesAreAveraged) {
  // k = e_0: tokens 1 and 2 tie for the maximum; every token (q . x > 0) moves to their mean.
  Tensor x = make({1, 1, 3, 0, 3, 2}, {1, 3, 2});
  Tensor e0 = make({1, 0}, {2});
  std::vector<double> y = hardmax_attention(x, e0, e0, make({1}, {})).to_vector();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(y[i * 2 + 0], 3.0);
    EXPECT_EQ(y[i * 2 + 1], 1.0);
  }
  // q . x = 0 for every token: all tokens tie, so each goes to the mean of all of them.
  Tensor z = make({1, 0, 3, 0, 5, 3}, {1, 3, 2});
  Tensor e1 = make({0, 1}, {2});
  std::vector<double> w = hardmax_attention(z, make({0, 0}, {2}), e1, make({1}, {})).to_vector();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(w[i * 2 + 0], 3.0);
    EXPECT_EQ(w[i * 2 + 1], 1.0);
  }
}

TEST(HardmaxAttention, NegativeQueryAttendsToTheMinimum) {
  // v . x_0 < 0: token 0 goes to the v-minimal token; the others (v . x > 0) to the v-maximal.
  Tensor x = make({-1, 0, 2, 5, 4, 7}, {1, 3, 2});
  Tensor v = make({1, 0}, {2});
  std::vector<double> y = hardmax_attention(x, v, v, make({1}, {})).to_vector();
  EXPECT_EQ(y[0], -1);  // itself: the minimum
  EXPECT_EQ(y[1], 0);
  for (int i = 1; i < 3; ++i) {
    EXPECT_EQ(y[i * 2], 4);
    EXPECT_EQ(y[i * 2 + 1], 7);
  }
}

TEST(HardmaxAttention, RankOneScoresCollapseOntoTheTwoExtremes) {
  // A = v v^T, alpha = 1: tokens with v . x > 0 land on the v-maximum, those with v . x < 0 on the
  // v-minimum.
  Generator gen(3);
  Tensor x = rand_normal({1, 7, 3}, gen, DType::f64);
  const std::vector<double> v = {0.6, 0.0, 0.8};
  std::vector<double> A(9);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) A[r * 3 + c] = v[r] * v[c];
  std::vector<double> y = hardmax_attention_general(x, make(A, {3, 3}), make({1}, {})).to_vector();
  const std::vector<double> xs = x.to_vector();
  auto score = [&](const std::vector<double>& p, int i) {
    return v[0] * p[i * 3] + v[1] * p[i * 3 + 1] + v[2] * p[i * 3 + 2];
  };
  int imax = 0, imin = 0;
  for (int i = 1; i < 7; ++i) {
    if (score(xs, i) > score(xs, imax)) imax = i;
    if (score(xs, i) < score(xs, imin)) imin = i;
  }
  for (int i = 0; i < 7; ++i) {
    const int target = score(xs, i) > 0 ? imax : imin;
    for (int c = 0; c < 3; ++c) EXPECT_EQ(y[i * 3 + c], xs[target * 3 + c]) << i;
  }
}

TEST(HardmaxAttention, IdentityScoresFixPointsOnASphere) {
  // A = I: x_i . x_j is maximal at j = i for distinct points of one sphere.
  std::vector<double> x;
  for (int i = 0; i < 6; ++i) {
    const double t = 0.9 * i;
    x.insert(x.end(), {2 * std::cos(t), 2 * std::sin(t)});
  }
  Tensor xt = make(x, {1, 6, 2});
  Tensor I = make({1, 0, 0, 1}, {2, 2});
  EXPECT_EQ(hardmax_attention_general(xt, I, make({0.5}, {})).to_vector(), x);
  EXPECT_EQ(hardmax_attention_general(xt, I, make({1}, {})).to_vector(), x);
}

TEST(HardmaxAttention, PaddingIsCopiedAndIgnored) {
  Tensor x = make({0.5, 0, 1, 1, 9, 9}, {1, 3, 2});
  Tensor v = make({1, 1}, {2});
  std::vector<double> y =
      hardmax_attention(x, v, v, make({1}, {}), Tensor::from_vector({2}, {1}, DType::i64))
          .to_vector();
  EXPECT_EQ(y, (std::vector<double>{1, 1, 1, 1, 9, 9}));
}

TEST(HardmaxAttention, ErrorsNameTheArgument) {
  Tensor x = make({0, 0, 1, 1}, {1, 2, 2});
  Tensor v = make({1, 1}, {2});
  testing::expect_error(
      [&] {
        hardmax_attention(x, make({1, 2, 3}, {3}), v, make({1}, {}));
      },
      {"hardmax_attention", "q and k must be (2)"});
  testing::expect_error(
      [&] { hardmax_attention(x, v, v, make({1}, {}), Tensor::from_vector({3}, {1}, DType::i64)); },
      {"lengths[0] must lie in [1, 2], found 3"});
  testing::expect_error(
      [&] {
        hardmax_attention(make({1, 2}, {2}), v, v, make({1}, {}));
      },
      {"x must be (B, T, C)"});
}

// The op, the evaluator and the reference compute the same bits for one SA block (rank-1 and
// general), in f64 and f32.
template <class T>
void op_matches_evaluator(DType dt) {
  using namespace hardmax;
  Generator gen(21);
  const int64_t B = 5, L = 7, d = 4;
  Tensor x = rand_normal({B, L, d}, gen, dt);
  const std::vector<double> xs = x.to_vector();
  Dataset data;
  data.d = d;
  for (int64_t b = 0; b < B; ++b)
    data.add(std::span<const double>(xs.data() + b * L * d, static_cast<size_t>(L * d)), 0);
  for (Scores s : {Scores::rank1, Scores::general}) {
    Block blk;
    blk.sa.scores = s;
    blk.sa.alpha = 0.375;
    std::vector<double> q = rand_normal({d}, gen, dt).to_vector(),
                        k = rand_normal({d}, gen, dt).to_vector();
    std::vector<double> A = rand_normal({d, d}, gen, dt).to_vector();
    if (s == Scores::rank1) {
      blk.sa.q = q;
      blk.sa.k = k;
    } else {
      blk.sa.matrix = A;
    }
    Net net;
    net.d = d;
    net.dtype = dt;
    net.blocks = {blk};
    net.readout.assign(static_cast<size_t>(d), 0.0);
    const std::vector<double> ev = forward_tokens(net, data);
    const Tensor alpha = Tensor::from_vector({0.375}, {}, dt);
    const std::vector<double> op =
        (s == Scores::rank1
             ? hardmax_attention(x, Tensor::from_vector(q, {d}, dt),
                                 Tensor::from_vector(k, {d}, dt), alpha)
             : hardmax_attention_general(x, Tensor::from_vector(A, {d, d}, dt), alpha))
            .to_vector();
    std::vector<double> ref;
    for (int64_t b = 0; b < B; ++b) {
      std::vector<T> seq(xs.begin() + b * L * d, xs.begin() + (b + 1) * L * d);
      reference_block(blk, d, seq);
      ref.insert(ref.end(), seq.begin(), seq.end());
    }
    EXPECT_EQ(op, ev) << scores_name(s);
    EXPECT_EQ(op, ref) << scores_name(s);
  }
}

TEST(HardmaxAttention, OpMatchesTheEvaluatorBitForBit) {
  op_matches_evaluator<double>(DType::f64);
  op_matches_evaluator<float>(DType::f32);
}

}  // namespace
}  // namespace gradus
