// Graph ops: neighbour_max / neighbour_min against a naive loop (f32, f64, broadcast, strided,
// isolated rows), their gradchecks, the streaming kernel's memory bound; greater_mask and
// topk_mask; dense_to_csr against a naive filter (causal, lengths); csr_matmul against the dense
// product and its gradcheck; error messages.
#include "autodiff/ops/graph.h"

#include <cmath>
#include <limits>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/shape.h"
#include "autodiff/ops/view.h"
#include "core/allocator.h"
#include "support/expect_error.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::expect_error;
using testing::noncontiguous_leaf;
using testing::randn_leaf;

// A soft adjacency (batch..., L, S) with about a third of the entries exactly 0 and the rest in
// [0.05, 1): relu of shifted uniforms.
Tensor soft_adjacency(const Shape& shape, uint64_t seed, DType dt = DType::f64) {
  Generator gen(seed);
  Tensor u = rand_uniform(shape, gen, dt, -0.5, 1.0);
  std::vector<double> v = u.to_vector();
  for (double& a : v) a = a < 0 ? 0.0 : 0.05 + 0.95 * a;
  return Tensor::from_vector(v, shape, dt);
}

// Naive extremum: adj and x already broadcast to (nb, L, S) and (nb, S, d) row-major values.
std::vector<double> naive_extremum(const std::vector<double>& a, const std::vector<double>& x,
                                   int64_t nb, int64_t L, int64_t S, int64_t d, bool is_min) {
  std::vector<double> out(static_cast<size_t>(nb * L * d), 0.0);
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t i = 0; i < L; ++i)
      for (int64_t c = 0; c < d; ++c) {
        bool any = false;
        double best = 0;
        for (int64_t j = 0; j < S; ++j) {
          if (!(a[(b * L + i) * S + j] > 0)) continue;
          const double v = x[(b * S + j) * d + c];
          if (!any || (is_min ? v < best : v > best)) best = v, any = true;
        }
        out[(b * L + i) * d + c] = any ? best : 0.0;
      }
  return out;
}

void check_extremum(const Tensor& adj, const Tensor& x, const Shape& batch) {
  const int64_t L = adj.size(-2), S = adj.size(-1), d = x.size(-1);
  Shape as = batch, xs = batch;
  as.insert(as.end(), {L, S});
  xs.insert(xs.end(), {S, d});
  const std::vector<double> a = raw_expand(adj, as).to_vector(), xv = raw_expand(x, xs).to_vector();
  const int64_t nb = shape_numel(batch);
  for (bool is_min : {false, true}) {
    SCOPED_TRACE(
        fmt::format("{} adj {} x {}", is_min ? "min" : "max", adj.describe(), x.describe()));
    Tensor y = is_min ? neighbour_min(adj, x) : neighbour_max(adj, x);
    Shape ys = batch;
    ys.insert(ys.end(), {L, d});
    ASSERT_EQ(y.shape(), ys);
    // Selection copies values: exact in every dtype.
    EXPECT_EQ(y.to_vector(), naive_extremum(a, xv, nb, L, S, d, is_min));
  }
}

TEST(NeighbourExtremum, MatchesNaiveLoop) {
  for (DType dt : {DType::f32, DType::f64}) {
    Generator gen(3);
    // Contiguous, with rows that have no neighbour (L = 9 rows, S = 7 senders).
    Tensor adj = soft_adjacency({2, 3, 9, 7}, 4, dt);
    Tensor x = rand_normal({2, 3, 7, 5}, gen, dt);
    check_extremum(adj, x, {2, 3});
    // Broadcast: one adjacency per sequence shared by the heads; x shared by the batch.
    check_extremum(soft_adjacency({2, 1, 9, 7}, 5, dt), x, {2, 3});
    check_extremum(adj, rand_normal({7, 5}, gen, dt), {2, 3});
    // Strided x (a transposed view) and a strided adjacency.
    Tensor xt = raw_transpose(rand_normal({2, 3, 5, 7}, gen, dt), -1, -2);
    Tensor at = raw_transpose(soft_adjacency({2, 3, 7, 9}, 6, dt), -1, -2);
    check_extremum(at, xt, {2, 3});
    // Large enough for the parallel path, with head dim 64 (the vector loop's width).
    check_extremum(soft_adjacency({4, 2, 40, 40}, 7, dt), rand_normal({4, 2, 40, 64}, gen, dt),
                   {4, 2});
  }
}

TEST(NeighbourExtremum, IsolatedRowsGiveZeroAndInfinitiesCompare) {
  // Row 0 has no neighbour; row 1 sees sender 1 only, whose features are infinite.
  const double inf = std::numeric_limits<double>::infinity();
  Tensor adj = Tensor::from_vector({0, 0, 0, 0.5}, {2, 2}, DType::f64);
  Tensor x = Tensor::from_vector({1, 2, -inf, inf}, {2, 2}, DType::f64);
  EXPECT_EQ(neighbour_max(adj, x).to_vector(), (std::vector<double>{0, 0, -inf, inf}));
  EXPECT_EQ(neighbour_min(adj, x).to_vector(), (std::vector<double>{0, 0, -inf, inf}));
  // The gradient of an isolated row goes nowhere; the attained sender gets the rest.
  Tensor xl = randn_leaf({2, 2}, 1);
  backward(sum(neighbour_max(adj, xl)));
  EXPECT_EQ(xl.grad().to_vector(), (std::vector<double>{0, 0, 1, 1}));
}

TEST(NeighbourExtremum, TiesGoToTheFirstSender) {
  Tensor adj = Tensor::ones({1, 3}, DType::f64);
  Tensor x = Tensor::from_vector({2, 2, 2}, {3, 1}, DType::f64);
  x.set_requires_grad(true);
  backward(sum(neighbour_max(adj, x)));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{1, 0, 0}));
}

// The streaming kernel never holds the (batch, L, S, d) candidates that the PyTorch reference
// builds: at 8 x 256 x 256 x 64 those are 134 MB in f32; the op's own outputs are 1.5 MB.
TEST(NeighbourExtremum, MemoryDoesNotScaleWithLSquaredTimesD) {
  Generator gen(9);
  Tensor adj = soft_adjacency({8, 256, 256}, 10, DType::f32);
  Tensor x = rand_normal({8, 256, 64}, gen, DType::f32);
  Allocator& alloc = allocator_for(DeviceType::cpu);
  const int64_t before = alloc.stats().bytes_in_use;
  alloc.reset_peak();
  Tensor y = neighbour_max(adj, x);
  const int64_t extra = alloc.stats().peak_bytes_in_use - before;
  EXPECT_LT(extra, 4 << 20) << "peak extra bytes " << extra;
  EXPECT_EQ(y.shape(), (Shape{8, 256, 64}));
}

void gradcheck_extremum(bool is_min) {
  auto op = [is_min](const Tensor& a, const Tensor& x) {
    return is_min ? neighbour_min(a, x) : neighbour_max(a, x);
  };
  // adj is a constant: perturbing an exact 0 would add an edge (a step, not a slope).
  Tensor adj = soft_adjacency({2, 2, 6, 5}, 21);
  EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return op(adj, in[0]); },
                   {randn_leaf({2, 2, 5, 3}, 22)});
  // Non-contiguous x.
  EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return op(adj, in[0]); },
                   {noncontiguous_leaf({2, 2, 5, 3}, 23)});
  // Broadcast: x (S, d) shared by every sequence and head; the gradient is summed back.
  EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return op(adj, in[0]); },
                   {randn_leaf({5, 3}, 24)});
  // Broadcast adjacency (one per sequence) and a later op using the output twice.
  Tensor adj1 = soft_adjacency({2, 1, 6, 5}, 25);
  EXPECT_GRADCHECK(
      [&](const std::vector<Tensor>& in) {
        Tensor y = op(adj1, in[0]);
        return y * y;
      },
      {randn_leaf({2, 2, 5, 3}, 26)});
}

TEST(Gradcheck, neighbour_max) { gradcheck_extremum(false); }
TEST(Gradcheck, neighbour_min) { gradcheck_extremum(true); }

TEST(NeighbourExtremum, AdjacencyTakesNoGradient) {
  Tensor adj = soft_adjacency({4, 4}, 31);
  adj.set_requires_grad(true);
  Tensor x = randn_leaf({4, 2}, 32);
  backward(sum(neighbour_max(adj, x) * 2.0) + sum(adj));
  EXPECT_EQ(adj.grad().to_vector(), std::vector<double>(16, 1.0));  // only sum(adj)'s gradient
}

TEST(NeighbourExtremum, ErrorsNameTheShapes) {
  Tensor adj = Tensor::zeros({3, 4}, DType::f64), x = Tensor::zeros({5, 2}, DType::f64);
  expect_error([&] { neighbour_max(adj, x); }, {"neighbour_max", "(3, 4)", "(5, 2)", "S = 4"});
  expect_error([&] { neighbour_min(Tensor::zeros({4}, DType::f64), x); },
               {"neighbour_min", "(..., L, S)"});
}

TEST(Masks, GreaterMask) {
  const double nan = std::nan("");
  Tensor x = Tensor::from_vector({-1, 0.2, 0.2000001, 3, nan}, {5}, DType::f64);
  EXPECT_EQ(greater_mask(x, 0.2).to_vector(), (std::vector<double>{0, 0, 1, 1, 0}));
  Tensor xl = randn_leaf({3}, 1);
  EXPECT_FALSE(greater_mask(xl, 0).requires_grad());
}

TEST(Masks, TopkMaskKeepsTheLargestFirstIndexOnTies) {
  const double nan = std::nan("");
  Tensor x = Tensor::from_vector({1, 5, 3, 5, nan, 2, 0, 0, 0}, {3, 3}, DType::f32);
  EXPECT_EQ(topk_mask(x, 2).to_vector(), (std::vector<double>{0, 1, 1, 1, 0, 1, 1, 1, 0}));
  EXPECT_EQ(topk_mask(x, 3).to_vector(), std::vector<double>(9, 1.0));
  expect_error([&] { topk_mask(x, 4); }, {"topk_mask", "k must be in [1, 3]", "found 4"});
}

TEST(DenseToCsr, MatchesNaiveFilter) {
  Tensor adj = soft_adjacency({3, 5, 5}, 41);
  Tensor lengths = Tensor::from_vector({5, 3, 0}, {3}, DType::i64);
  for (bool causal : {false, true})
    for (bool with_len : {false, true}) {
      SCOPED_TRACE(fmt::format("causal {} lengths {}", causal, with_len));
      CsrGraph g = dense_to_csr(adj, 0.3, causal, with_len ? lengths : Tensor());
      ASSERT_EQ(g.rows, 15);
      ASSERT_EQ(g.cols, 15);
      const std::vector<double> a = adj.to_vector(), rp = g.row_ptr.to_vector(),
                                col = g.col.to_vector(), src = g.source.to_vector();
      const int64_t len[3] = {5, 3, 0};
      int64_t e = 0;
      for (int64_t b = 0; b < 3; ++b)
        for (int64_t i = 0; i < 5; ++i) {
          ASSERT_EQ(rp[b * 5 + i], e);
          for (int64_t j = 0; j < 5; ++j) {
            const int64_t n = with_len ? len[b] : 5;
            if (!(a[(b * 5 + i) * 5 + j] > 0.3) || (causal && j > i) || i >= n || j >= n) continue;
            ASSERT_LT(e, g.nnz());
            EXPECT_EQ(col[e], b * 5 + j);
            EXPECT_EQ(src[e], (b * 5 + i) * 5 + j);
            ++e;
          }
        }
      EXPECT_EQ(e, g.nnz());
      EXPECT_EQ(rp.back(), e);
    }
  expect_error(
      [&] {
        dense_to_csr(adj, 0.2, true, Tensor::from_vector({1, 9, 1}, {3}, DType::i64));
      },
      {"dense_to_csr", "lengths[1] = 9", "[0, 5]"});
  expect_error(
      [&] {
        dense_to_csr(Tensor::zeros({5, 5}, DType::f64), 0.2, true);
      },
      {"dense_to_csr", "adj (B, L, S)"});
}

// The dense matrix of a CSR graph with `values`.
Tensor densify(const CsrGraph& g, const Tensor& values) {
  std::vector<double> m(static_cast<size_t>(g.rows * g.cols), 0.0);
  const std::vector<double> rp = g.row_ptr.to_vector(), col = g.col.to_vector(),
                            v = values.to_vector();
  for (int64_t i = 0; i < g.rows; ++i)
    for (auto e = static_cast<int64_t>(rp[i]); e < static_cast<int64_t>(rp[i + 1]); ++e)
      m[i * g.cols + static_cast<int64_t>(col[e])] += v[e];
  return Tensor::from_vector(m, {g.rows, g.cols}, values.dtype());
}

TEST(CsrMatmul, MatchesDenseProduct) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor adj = soft_adjacency({4, 30, 30}, 51, dt);
    CsrGraph g = dense_to_csr(adj, 0.5, true);
    ASSERT_GT(g.nnz(), 0);
    ASSERT_LT(g.nnz(), 4 * 30 * 31 / 2);
    Tensor values = index_select(reshape(adj, {-1}), 0, g.source);
    Generator gen(52);
    Tensor x = rand_normal({g.cols, 70}, gen, dt);
    Tensor y = csr_matmul(g, values, x);
    Tensor ref = matmul(densify(g, values), x);
    const std::vector<double> a = y.to_vector(), b = ref.to_vector();
    const double tol = dt == DType::f32 ? 1e-5 : 1e-12;
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], tol * (1 + std::abs(b[i])));
  }
}

TEST(Gradcheck, csr_matmul) {
  Tensor adj = soft_adjacency({2, 6, 6}, 61);
  CsrGraph g = dense_to_csr(adj, 0.3, true);
  ASSERT_GT(g.nnz(), 4);
  Tensor values = index_select(reshape(adj, {-1}), 0, g.source);
  values.set_requires_grad(true);
  auto fn = [&](const std::vector<Tensor>& in) { return csr_matmul(g, in[0], in[1]); };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{values, randn_leaf({12, 3}, 62)}));
  // Non-contiguous x.
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{values, noncontiguous_leaf({12, 3}, 63)}));
  // Broadcast: one feature row expanded to every sender inside fn.
  EXPECT_GRADCHECK(
      [&](const std::vector<Tensor>& in) {
        return csr_matmul(g, in[0], expand(in[1], {12, 3}));
      },
      (std::vector<Tensor>{values, randn_leaf({1, 3}, 64)}));
  // Weights gathered from a dense adjacency that requires gradients (the Sparse-GIN path).
  Tensor dense = soft_adjacency({2, 6, 6}, 61);
  dense.set_requires_grad(true);
  EXPECT_GRADCHECK(
      [&](const std::vector<Tensor>& in) {
        return csr_matmul(g, index_select(reshape(in[0], {-1}), 0, g.source), in[1]);
      },
      (std::vector<Tensor>{dense, randn_leaf({12, 3}, 65)}));
}

TEST(CsrMatmul, ErrorsNameTheShapes) {
  Tensor adj = soft_adjacency({1, 4, 4}, 71);
  CsrGraph g = dense_to_csr(adj, 0.1, true);
  Tensor values = Tensor::ones({g.nnz()}, DType::f64);
  expect_error(
      [&] {
        csr_matmul(g, values, Tensor::zeros({5, 2}, DType::f64));
      },
      {"csr_matmul", "(5, 2)", "4 columns"});
  expect_error(
      [&] {
        csr_matmul(g, Tensor::ones({g.nnz() + 1}, DType::f64), Tensor::zeros({4, 2}, DType::f64));
      },
      {"csr_matmul", "one weight per edge"});
}

}  // namespace
}  // namespace gradus
