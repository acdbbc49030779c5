// Streaming PNA aggregation (pna_moments): the moments and every input gradient against the
// composite the model used before (matmul, relu / softmax, threshold_adjacency, matmul, neighbour
// max / min, sum) in f64 and f32, for both adjacencies, every streamable threshold, with and
// without the optional moments, one position to three query blocks, the heads layout of a split
// projection; f64 gradchecks (strided leaves, keys and values shared by the heads); the errors.
#include "autodiff/ops/pna.h"

#include <cmath>
#include <limits>
#include <string>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/graph.h"
#include "autodiff/ops/mask.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/shape.h"
#include "autodiff/ops/softmax.h"
#include "autodiff/ops/view.h"
#include "models/graph/adjacency.h"
#include "support/compare.h"
#include "support/expect_error.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using kernels::PnaAdjacency;
using kernels::PnaThreshold;
using testing::expect_error;
using testing::max_abs_difference;
using testing::noncontiguous_leaf;
using testing::randn_leaf;

// The composite: q, k, v: (B, H, T, D) -> the moments (B, H, T, W) in pna_moments' block order.
Tensor composite_moments(const Tensor& q, const Tensor& k, const Tensor& v,
                         const PnaMomentsOptions& o) {
  Tensor s = matmul(q * o.scale, transpose(k, -2, -1));  // (B, H, T, T)
  Tensor a = o.adjacency == PnaAdjacency::softmax ? softmax(causal_masked_fill(s), -1)
                                                  : relu(causal_masked_fill(s, 0.0));
  graph::ThresholdOptions t;
  t.mode = static_cast<graph::ThresholdMode>(static_cast<int>(o.threshold));
  t.tau = o.tau;
  t.beta = o.beta;
  a = graph::threshold_adjacency(a, t);
  std::vector<Tensor> blocks = {matmul(a, v)};
  if (o.with_square) blocks.push_back(matmul(a, v * v));
  if (o.with_max) blocks.push_back(neighbour_max(a, v));
  if (o.with_min) blocks.push_back(neighbour_min(a, v));
  blocks.push_back(sum(a, {-1}, true));
  return concat(blocks, -1);
}

const char* threshold_name(PnaThreshold t) {
  return graph::threshold_mode_name(static_cast<graph::ThresholdMode>(static_cast<int>(t)));
}

struct Sizes {
  int64_t batch, heads, t, dim;
};

// Moments and the gradients of q, k, v for a random weighting of the moments equal the
// composite's within `tolerance` (relative to 1 + |reference|).
void expect_matches_composite(const Sizes& z, const PnaMomentsOptions& o, DType dtype,
                              double tolerance, uint64_t seed, bool heads_layout = false) {
  SCOPED_TRACE(::testing::Message()
               << "B " << z.batch << " H " << z.heads << " T " << z.t << " D " << z.dim << " "
               << (o.adjacency == PnaAdjacency::softmax ? "softmax" : "relu") << " "
               << threshold_name(o.threshold) << " sq " << o.with_square << " max " << o.with_max
               << " min " << o.with_min << " " << dtype_name(dtype)
               << (heads_layout ? " heads layout" : ""));
  auto operand = [&](uint64_t s) {
    if (!heads_layout) return randn_leaf({z.batch, z.heads, z.t, z.dim}, s, 0, 1, dtype);
    // (B, T, H, D) storage viewed as (B, H, T, D), as heads split from a projection.
    return randn_leaf({z.batch, z.t, z.heads, z.dim}, s, 0, 1, dtype);
  };
  Tensor qs = operand(seed), ks = operand(seed + 1), vs = operand(seed + 2);
  auto view = [&](const Tensor& x) { return heads_layout ? transpose(x, 1, 2) : x; };
  Tensor fused = pna_moments(view(qs), view(ks), view(vs), o);
  ASSERT_EQ(fused.shape(), (Shape{z.batch, z.heads, z.t,
                                  z.dim * (1 + o.with_square + o.with_max + o.with_min) + 1}));
  EXPECT_EQ(fused.dtype(), dtype == DType::f64 ? DType::f64 : DType::f32);
  Generator weights(seed + 3);
  Tensor w = rand_normal(fused.shape(), weights, fused.dtype());
  backward(sum(fused * w));
  // A binary threshold passes no gradient to q and k: the composite leaves theirs undefined.
  auto grad = [](const Tensor& x) {
    return x.grad().defined() ? x.grad() : Tensor::zeros(x.shape(), x.dtype());
  };
  const Tensor gq = grad(qs), gk = grad(ks), gv = grad(vs);
  qs.zero_grad();
  ks.zero_grad();
  vs.zero_grad();
  Tensor reference = composite_moments(view(qs), view(ks), view(vs), o);
  backward(sum(reference * w));
  auto scale_of = [](const Tensor& t) {
    double m = 0;
    for (double x : raw_to_dtype(raw_contiguous(t), DType::f64).to_vector())
      m = std::max(m, std::abs(x));
    return 1 + m;
  };
  EXPECT_LE(max_abs_difference(fused, reference), tolerance * scale_of(reference)) << "moments";
  EXPECT_LE(max_abs_difference(gq, grad(qs)), tolerance * scale_of(grad(qs))) << "grad q";
  EXPECT_LE(max_abs_difference(gk, grad(ks)), tolerance * scale_of(grad(ks))) << "grad k";
  EXPECT_LE(max_abs_difference(gv, grad(vs)), tolerance * scale_of(grad(vs))) << "grad v";
}

// Every adjacency x threshold, with all optional moments and with none.
std::vector<PnaMomentsOptions> every_option(double scale) {
  std::vector<PnaMomentsOptions> out;
  for (PnaAdjacency adj : {PnaAdjacency::relu, PnaAdjacency::softmax})
    for (int t = 0; t <= 4; ++t)
      for (bool all : {true, false}) {
        PnaMomentsOptions o;
        o.adjacency = adj;
        o.threshold = static_cast<PnaThreshold>(t);
        o.scale = scale;
        // tau within the adjacency's range: softmax rows sum to 1, so their entries are small.
        o.tau = adj == PnaAdjacency::softmax ? 0.05 : 0.2;
        o.with_square = o.with_max = o.with_min = all;
        out.push_back(o);
      }
  return out;
}

TEST(PnaMoments, MatchesTheCompositeForEveryAdjacencyAndThresholdInF64) {
  uint64_t seed = 100;
  for (const PnaMomentsOptions& o : every_option(0.6))
    for (const Sizes& z : {Sizes{2, 2, 5, 3}, Sizes{1, 2, 70, 4}})
      expect_matches_composite(z, o, DType::f64, 1e-12, seed += 4);
}

TEST(PnaMoments, MatchesTheCompositeInF32) {
  uint64_t seed = 300;
  for (const PnaMomentsOptions& o : every_option(0.5))
    expect_matches_composite({2, 1, 37, 8}, o, DType::f32, 2e-5, seed += 4);
}

// One position, three query blocks (the last partial), and the (B, T, H, D) storage of heads split
// from a projection, read through its strides.
TEST(PnaMoments, ShapesAndLayouts) {
  PnaMomentsOptions o;
  o.threshold = PnaThreshold::sharp_softplus;
  o.scale = 0.5;
  o.with_square = o.with_max = true;
  expect_matches_composite({1, 1, 1, 4}, o, DType::f64, 1e-12, 500);
  expect_matches_composite({1, 2, 150, 6}, o, DType::f64, 1e-12, 510);
  expect_matches_composite({2, 3, 21, 8}, o, DType::f64, 1e-12, 520, /*heads_layout=*/true);
  o.adjacency = PnaAdjacency::softmax;
  o.with_min = true;
  expect_matches_composite({2, 3, 21, 8}, o, DType::f64, 1e-12, 530, /*heads_layout=*/true);
}

TEST(PnaMoments, SplitGivesTheBlocks) {
  PnaMomentsOptions o;
  o.with_max = true;
  Tensor m = pna_moments(randn_leaf({1, 2, 6, 3}, 1), randn_leaf({1, 2, 6, 3}, 2),
                         randn_leaf({1, 2, 6, 3}, 3), o);
  const PnaMomentBlocks b = split_pna_moments(m, o);
  EXPECT_EQ(b.sum.shape(), (Shape{1, 2, 6, 3}));
  EXPECT_EQ(b.max.shape(), (Shape{1, 2, 6, 3}));
  EXPECT_EQ(b.degree.shape(), (Shape{1, 2, 6, 1}));
  EXPECT_FALSE(b.square.defined());
  EXPECT_FALSE(b.min.defined());
  PnaMomentsOptions all;
  all.with_square = all.with_max = all.with_min = true;  // 7 channels cannot be 4 D + 1
  expect_error([&] { split_pna_moments(m, all); }, {"split_pna_moments", "(1, 2, 6, 7)"});
}

TEST(Gradcheck, pna_moments) {
  auto with = [](PnaAdjacency adj, PnaThreshold t, bool extrema) {
    PnaMomentsOptions o;
    o.adjacency = adj;
    o.threshold = t;
    o.scale = 0.7;
    o.tau = adj == PnaAdjacency::softmax ? 0.1 : 0.2;
    o.with_square = true;
    o.with_max = o.with_min = extrema;
    return o;
  };
  for (const PnaMomentsOptions& o : {with(PnaAdjacency::relu, PnaThreshold::sharp_softplus, true),
                                     with(PnaAdjacency::relu, PnaThreshold::none, true),
                                     with(PnaAdjacency::softmax, PnaThreshold::sigmoid, true),
                                     with(PnaAdjacency::softmax, PnaThreshold::none, false)}) {
    SCOPED_TRACE(threshold_name(o.threshold));
    auto fn = [o](const std::vector<Tensor>& in) { return pna_moments(in[0], in[1], in[2], o); };
    EXPECT_GRADCHECK(fn,
                     (std::vector<Tensor>{randn_leaf({2, 2, 5, 3}, 1), randn_leaf({2, 2, 5, 3}, 2),
                                          randn_leaf({2, 2, 5, 3}, 3)}));
  }
  const PnaMomentsOptions o = with(PnaAdjacency::relu, PnaThreshold::sharp_softplus, true);
  // Strided leaves (last stride 2, copied first) and the heads layout (a transposed view).
  auto heads_view = [o](const std::vector<Tensor>& in) {
    return pna_moments(transpose(in[0], 1, 2), in[1], transpose(in[2], 1, 2), o);
  };
  EXPECT_GRADCHECK(heads_view, (std::vector<Tensor>{noncontiguous_leaf({1, 5, 2, 4}, 7),
                                                    noncontiguous_leaf({1, 2, 5, 4}, 8),
                                                    randn_leaf({1, 5, 2, 4}, 9)}));
  // Keys and values shared by the heads (broadcast: stride 0 over H); their gradients sum over H.
  auto shared_kv = [o](const std::vector<Tensor>& in) {
    return pna_moments(in[0], expand(in[1], {1, 3, 4, 2}), expand(in[2], {1, 3, 4, 2}), o);
  };
  EXPECT_GRADCHECK(shared_kv,
                   (std::vector<Tensor>{randn_leaf({1, 3, 4, 2}, 10), randn_leaf({1, 1, 4, 2}, 11),
                                        randn_leaf({1, 1, 4, 2}, 12)}));
  // One key and value repeated along T (stride 0 between rows: copied before the kernels).
  auto repeated_kv = [o](const std::vector<Tensor>& in) {
    return pna_moments(in[0], expand(in[1], {1, 2, 4, 3}), expand(in[2], {1, 2, 4, 3}), o);
  };
  EXPECT_GRADCHECK(repeated_kv,
                   (std::vector<Tensor>{randn_leaf({1, 2, 4, 3}, 16), randn_leaf({1, 2, 1, 3}, 17),
                                        randn_leaf({1, 2, 1, 3}, 18)}));
  // More rows than one query block (64).
  auto fn = [o](const std::vector<Tensor>& in) { return pna_moments(in[0], in[1], in[2], o); };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn_leaf({1, 1, 67, 2}, 13, 0, 0.7),
                                            randn_leaf({1, 1, 67, 2}, 14, 0, 0.7),
                                            randn_leaf({1, 1, 67, 2}, 15, 0, 0.7)}));
}

// Gradients accumulate: a second backward adds the same gradient again.
TEST(PnaMoments, GradientsAccumulate) {
  PnaMomentsOptions o;
  o.threshold = PnaThreshold::sharp_softplus;
  o.with_square = o.with_max = true;
  Tensor q = randn_leaf({1, 2, 9, 3}, 40), k = randn_leaf({1, 2, 9, 3}, 41),
         v = randn_leaf({1, 2, 9, 3}, 42);
  backward(sum(pna_moments(q, k, v, o)));
  const std::vector<double> once_q = q.grad().to_vector(), once_v = v.grad().to_vector();
  backward(sum(pna_moments(q, k, v, o)));
  const std::vector<double> twice_q = q.grad().to_vector(), twice_v = v.grad().to_vector();
  for (size_t i = 0; i < once_q.size(); ++i) EXPECT_DOUBLE_EQ(twice_q[i], 2 * once_q[i]);
  for (size_t i = 0; i < once_v.size(); ++i) EXPECT_DOUBLE_EQ(twice_v[i], 2 * once_v[i]);
}

TEST(PnaMoments, ErrorsNameTheProblem) {
  const Tensor x = Tensor::zeros({1, 2, 4, 8}, DType::f64);
  PnaMomentsOptions o;
  expect_error(
      [&] {
        pna_moments(x, x, Tensor::zeros({1, 2, 5, 8}, DType::f64), o);
      },
      {"pna_moments", "same shape"});
  expect_error(
      [&] {
        pna_moments(Tensor::zeros({2, 4, 8}, DType::f64), x, x, o);
      },
      {"pna_moments", "q (B, H, T, D)"});
  o.beta = 0;
  expect_error([&] { pna_moments(x, x, x, o); }, {"pna_moments", "beta > 0"});
  o.beta = 10;
  o.scale = std::numeric_limits<double>::quiet_NaN();
  expect_error([&] { pna_moments(x, x, x, o); }, {"pna_moments", "finite"});
}

}  // namespace
}  // namespace gradus
