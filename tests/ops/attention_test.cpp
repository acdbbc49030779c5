// Fused scaled-dot-product attention: forward and gradients against the composite
// softmax(mask(scale q k^T)) v in f64 and f32 (causal and not, fewer queries than keys, several
// query blocks, the (B, T, H, D) layout of heads split from a projection), f64 gradchecks (a
// strided leaf, keys and values broadcast over the heads, a custom scale), the output layout, and
// the errors.
#include "autodiff/ops/attention.h"

#include <cmath>
#include <limits>
#include <string>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/softmax.h"
#include "autodiff/ops/view.h"
#include "support/compare.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::max_abs_difference;
using testing::noncontiguous_leaf;
using testing::randn_leaf;

// (Tq, Tk) additive mask: 0 where key j is visible to query i (j <= i + Tk - Tq), -inf elsewhere.
Tensor additive_causal_mask(int64_t t_q, int64_t t_k, DType dtype) {
  std::vector<double> m(static_cast<size_t>(t_q * t_k));
  for (int64_t i = 0; i < t_q; ++i)
    for (int64_t j = 0; j < t_k; ++j)
      m[i * t_k + j] = j <= i + (t_k - t_q) ? 0.0 : -std::numeric_limits<double>::infinity();
  return raw_to_dtype(Tensor::from_vector(m, {t_q, t_k}), dtype);
}

// The composite the fused op replaces: q, k, v: (B, H, T, D).
Tensor composite_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                           double scale) {
  Tensor scores = matmul(q * scale, transpose(k, -2, -1));  // (B, H, Tq, Tk)
  if (causal) scores = scores + additive_causal_mask(q.size(2), k.size(2), q.dtype());
  return matmul(softmax(scores, -1), v);
}

struct Case {
  int64_t batch, heads, t_q, t_k, dim;
  bool causal;
};

// Forward and every input gradient of the fused op equal the composite's within `tolerance`.
void expect_matches_composite(const Case& c, DType dtype, double tolerance, uint64_t seed) {
  SCOPED_TRACE(::testing::Message()
               << "B " << c.batch << " H " << c.heads << " Tq " << c.t_q << " Tk " << c.t_k << " D "
               << c.dim << " causal " << c.causal << " " << dtype_name(dtype));
  Tensor q = randn_leaf({c.batch, c.heads, c.t_q, c.dim}, seed, 0, 1, dtype);
  Tensor k = randn_leaf({c.batch, c.heads, c.t_k, c.dim}, seed + 1, 0, 1, dtype);
  Tensor v = randn_leaf({c.batch, c.heads, c.t_k, c.dim}, seed + 2, 0, 1, dtype);
  Tensor w = randn_leaf({c.batch, c.heads, c.t_q, c.dim}, seed + 3, 0, 1, dtype);
  w.set_requires_grad(false);
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.dim));

  Tensor fused = scaled_dot_product_attention(q, k, v, c.causal);
  backward(sum(fused * w));
  const Tensor gq = q.grad(), gk = k.grad(), gv = v.grad();
  q.zero_grad();
  k.zero_grad();
  v.zero_grad();
  Tensor reference = composite_attention(q, k, v, c.causal, scale);
  backward(sum(reference * w));

  EXPECT_LE(max_abs_difference(fused, reference), tolerance) << "forward";
  EXPECT_LE(max_abs_difference(gq, q.grad()), tolerance) << "grad q";
  EXPECT_LE(max_abs_difference(gk, k.grad()), tolerance) << "grad k";
  EXPECT_LE(max_abs_difference(gv, v.grad()), tolerance) << "grad v";
}

const Case kCases[] = {
    {2, 3, 37, 37, 8, true},     // one block, causal
    {2, 3, 37, 37, 8, false},    // full attention
    {1, 2, 5, 19, 6, true},      // fewer queries than keys: the last 5 positions
    {1, 2, 5, 19, 6, false},     //
    {1, 1, 1, 1, 4, true},       // a single position
    {2, 2, 150, 150, 16, true},  // three query blocks, the last one partial
    {1, 2, 70, 130, 8, false},   // two blocks against more keys
};

TEST(Attention, MatchesTheCompositeInF64) {
  uint64_t seed = 10;
  for (const Case& c : kCases) expect_matches_composite(c, DType::f64, 1e-12, seed += 4);
}

TEST(Attention, MatchesTheCompositeInF32) {
  uint64_t seed = 50;
  for (const Case& c : kCases) expect_matches_composite(c, DType::f32, 2e-5, seed += 4);
}

// Heads split from a (B, T, H * D) projection are (B, H, T, D) views of (B, T, H, D) storage: the
// kernels read them through their strides, and the output comes back in the same layout, so
// merging the heads is a reshape without a copy.
TEST(Attention, ReadsAndWritesTheHeadsLayoutWithoutCopies) {
  const int64_t B = 2, T = 21, H = 3, D = 8;
  Tensor projected = randn_leaf({B, T, H * D}, 7, 0, 1, DType::f64);
  auto heads = [&](const Tensor& t) { return transpose(reshape(t, {B, T, H, D}), 1, 2); };
  Tensor q = heads(projected), k = heads(projected * 0.5), v = heads(projected * -1.5);
  ASSERT_FALSE(q.is_contiguous());
  Tensor out = scaled_dot_product_attention(q, k, v);
  EXPECT_EQ(out.shape(), (Shape{B, H, T, D}));
  EXPECT_TRUE(transpose(out, 1, 2).is_contiguous()) << "the output is (B, T, H, D) storage";
  Tensor reference = composite_attention(raw_contiguous(q), raw_contiguous(k), raw_contiguous(v),
                                         true, 1.0 / std::sqrt(8.0));
  EXPECT_LE(max_abs_difference(out, reference), 1e-12);
}

TEST(Gradcheck, scaled_dot_product_attention) {
  auto causal = [](const std::vector<Tensor>& in) {
    return scaled_dot_product_attention(in[0], in[1], in[2]);
  };
  EXPECT_GRADCHECK(causal,
                   (std::vector<Tensor>{randn_leaf({2, 2, 5, 4}, 1), randn_leaf({2, 2, 5, 4}, 2),
                                        randn_leaf({2, 2, 5, 4}, 3)}));
  // Full attention with fewer queries than keys and a custom scale.
  auto full = [](const std::vector<Tensor>& in) {
    return scaled_dot_product_attention(in[0], in[1], in[2], false, 0.7);
  };
  EXPECT_GRADCHECK(full,
                   (std::vector<Tensor>{randn_leaf({1, 2, 3, 4}, 4), randn_leaf({1, 2, 6, 4}, 5),
                                        randn_leaf({1, 2, 6, 4}, 6)}));
  // Non-contiguous leaves: a strided slice (last stride 2, copied first) and the heads layout
  // (a transposed view read through its strides).
  auto heads_view = [](const std::vector<Tensor>& in) {
    return scaled_dot_product_attention(transpose(in[0], 1, 2), in[1], transpose(in[2], 1, 2));
  };
  EXPECT_GRADCHECK(heads_view, (std::vector<Tensor>{noncontiguous_leaf({1, 5, 2, 4}, 7),
                                                    noncontiguous_leaf({1, 2, 5, 4}, 8),
                                                    randn_leaf({1, 5, 2, 4}, 9)}));
  // Keys and values shared by the heads (broadcast: stride 0 over H); their gradients sum over H.
  auto shared_kv = [](const std::vector<Tensor>& in) {
    return scaled_dot_product_attention(in[0], expand(in[1], {1, 3, 4, 2}),
                                        expand(in[2], {1, 3, 4, 2}));
  };
  EXPECT_GRADCHECK(shared_kv,
                   (std::vector<Tensor>{randn_leaf({1, 3, 4, 2}, 10), randn_leaf({1, 1, 4, 2}, 11),
                                        randn_leaf({1, 1, 4, 2}, 12)}));
  // One key and value repeated along T (stride 0 between rows: copied before the kernels).
  auto repeated_kv = [](const std::vector<Tensor>& in) {
    return scaled_dot_product_attention(in[0], expand(in[1], {1, 2, 4, 3}),
                                        expand(in[2], {1, 2, 4, 3}));
  };
  EXPECT_GRADCHECK(repeated_kv,
                   (std::vector<Tensor>{randn_leaf({1, 2, 4, 3}, 16), randn_leaf({1, 2, 1, 3}, 17),
                                        randn_leaf({1, 2, 1, 3}, 18)}));
  // More rows than one query block (64), causal.
  EXPECT_GRADCHECK(causal, (std::vector<Tensor>{randn_leaf({1, 1, 67, 2}, 13, 0, 0.5),
                                                randn_leaf({1, 1, 67, 2}, 14, 0, 0.5),
                                                randn_leaf({1, 1, 67, 2}, 15, 0, 0.5)}));
}

// Large scores (a sharp softmax) stay finite: the row maximum is subtracted before exp.
TEST(Attention, StableForLargeScores) {
  Tensor q = randn_leaf({1, 1, 9, 4}, 20, 0, 40, DType::f32);
  Tensor k = randn_leaf({1, 1, 9, 4}, 21, 0, 40, DType::f32);
  Tensor v = randn_leaf({1, 1, 9, 4}, 22, 0, 1, DType::f32);
  Tensor out = scaled_dot_product_attention(q, k, v);
  backward(sum(out));
  for (const Tensor& t : {out, q.grad(), k.grad(), v.grad()})
    for (double x : raw_to_dtype(t, DType::f64).to_vector()) EXPECT_TRUE(std::isfinite(x));
  EXPECT_LE(max_abs_difference(out, composite_attention(q, k, v, true, 0.5)), 1e-5);
}

TEST(Attention, EmptyQueriesGiveEmptyOutputAndZeroKeyGradients) {
  Tensor q = randn_leaf({1, 2, 0, 4}, 30), k = randn_leaf({1, 2, 3, 4}, 31),
         v = randn_leaf({1, 2, 3, 4}, 32);
  Tensor out = scaled_dot_product_attention(q, k, v, false);
  EXPECT_EQ(out.shape(), (Shape{1, 2, 0, 4}));
  backward(sum(out));
  for (double x : k.grad().to_vector()) EXPECT_EQ(x, 0.0);
  for (double x : v.grad().to_vector()) EXPECT_EQ(x, 0.0);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error thrown";
}

TEST(Attention, ErrorsNameTheProblem) {
  const Tensor x = Tensor::zeros({1, 2, 4, 8}, DType::f64);
  std::string msg = error_of([&] {
    scaled_dot_product_attention(x, x, Tensor::zeros({1, 2, 5, 8}, DType::f64));
  });
  EXPECT_NE(msg.find("same shape"), std::string::npos) << msg;
  msg = error_of([&] {
    scaled_dot_product_attention(x, Tensor::zeros({1, 2, 3, 8}, DType::f64),
                                 Tensor::zeros({1, 2, 3, 8}, DType::f64));
  });
  EXPECT_NE(msg.find("causal"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(1, 2, 3, 8)"), std::string::npos) << msg;
  msg = error_of([&] {
    scaled_dot_product_attention(x, Tensor::zeros({1, 3, 4, 8}, DType::f64),
                                 Tensor::zeros({1, 3, 4, 8}, DType::f64));
  });
  EXPECT_NE(msg.find("B, H and D"), std::string::npos) << msg;
  msg = error_of([&] { scaled_dot_product_attention(Tensor::zeros({2, 4, 8}, DType::f64), x, x); });
  EXPECT_NE(msg.find("q (B, H, Tq, D)"), std::string::npos) << msg;
  EXPECT_THROW(scaled_dot_product_attention(x, x, Tensor::zeros({1, 2, 4, 8})), Error);  // f32
  EXPECT_THROW(scaled_dot_product_attention(x, x, x, true, std::nan("")), Error);
}

}  // namespace
}  // namespace gradus
