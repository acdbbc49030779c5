// embedding: f64 gradchecks (repeated ids, non-contiguous table and ids, scalar ids), forward and
// scatter-add backward against naive loops in f32 and f64, thread-count independence, and errors.
#include "autodiff/ops/embedding.h"

#include <omp.h>

#include <string>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "support/expect_error.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::error_message;

using testing::noncontiguous_leaf;
using testing::randn_leaf;

Tensor ids_tensor(const std::vector<double>& values, const Shape& shape) {
  return Tensor::from_vector(values, shape, DType::i64);
}

TEST(Gradcheck, embedding) {
  // Repeated ids (1 three times, 6 twice): their gradients must accumulate in the scatter-add.
  Tensor ids = ids_tensor({1, 3, 1, 6, 0, 1, 6, 2}, {2, 4});
  auto fn = [&](const std::vector<Tensor>& in) { return embedding(in[0], ids); };
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{randn_leaf({7, 5}, 1)}));
  EXPECT_GRADCHECK(fn, (std::vector<Tensor>{noncontiguous_leaf({7, 5}, 2)}));
  // Non-contiguous ids (a transposed view) and a rank-0 id.
  Tensor ids_t = raw_transpose(ids, 0, 1);
  auto fn_t = [&](const std::vector<Tensor>& in) { return embedding(in[0], ids_t); };
  EXPECT_GRADCHECK(fn_t, (std::vector<Tensor>{noncontiguous_leaf({7, 3}, 3)}));
  Tensor id0 = ids_tensor({4}, {});
  auto fn0 = [&](const std::vector<Tensor>& in) { return embedding(in[0], id0); };
  EXPECT_GRADCHECK(fn0, (std::vector<Tensor>{randn_leaf({6, 3}, 4)}));
  // In a graph: the looked-up rows are used twice, nonlinearly.
  auto composed = [&](const std::vector<Tensor>& in) {
    Tensor e = embedding(in[0], ids);
    return e * e + e;
  };
  EXPECT_GRADCHECK(composed, (std::vector<Tensor>{randn_leaf({7, 2}, 5)}));
}

TEST(Embedding, ForwardGathersRows) {
  for (DType dt : {DType::f32, DType::f64}) {
    Generator gen(11);
    Tensor w = rand_normal({9, 4}, gen, dt);
    Tensor ids = ids_tensor({8, 0, 3, 3, 5, 8}, {3, 2});
    Tensor y = embedding(w, ids);
    ASSERT_EQ(y.shape(), (Shape{3, 2, 4}));
    EXPECT_EQ(y.dtype(), dt);
    std::vector<double> ws = w.to_vector(), ys = y.to_vector(), is = ids.to_vector();
    for (size_t i = 0; i < is.size(); ++i)
      for (size_t c = 0; c < 4; ++c)
        EXPECT_EQ(ys[i * 4 + c], ws[static_cast<size_t>(is[i]) * 4 + c]) << i << " " << c;
    // A transposed table reads the same logical rows.
    Tensor wt = raw_transpose(rand_normal({4, 9}, gen, dt), 0, 1);
    EXPECT_EQ(embedding(wt, ids).to_vector(), embedding(raw_clone(wt), ids).to_vector());
  }
}

TEST(Embedding, BackwardScatterAddsRepeatedIds) {
  for (DType dt : {DType::f32, DType::f64}) {
    Generator gen(21);
    const int64_t vocab = 6, cols = 3;
    Tensor w = rand_normal({vocab, cols}, gen, dt);
    w.set_requires_grad(true);
    std::vector<double> id_values{2, 5, 2, 2, 0, 5, 2};
    Tensor ids = ids_tensor(id_values, {7});
    Tensor g = rand_normal({7, cols}, gen, dt);
    backward(embedding(w, ids), g);
    std::vector<double> want(vocab * cols, 0.0), gs = g.to_vector();
    for (size_t i = 0; i < id_values.size(); ++i)
      for (int64_t c = 0; c < cols; ++c)
        want[static_cast<size_t>(id_values[i]) * cols + c] += gs[i * cols + c];
    std::vector<double> got = w.grad().to_vector();
    const double tol = dt == DType::f32 ? 1e-6 : 1e-14;
    for (size_t k = 0; k < want.size(); ++k) EXPECT_NEAR(got[k], want[k], tol) << k;
    // Rows 1, 3 and 4 never occur: exactly zero.
    for (int64_t c = 0; c < cols; ++c) {
      EXPECT_EQ(got[1 * cols + c], 0.0);
      EXPECT_EQ(got[3 * cols + c], 0.0);
      EXPECT_EQ(got[4 * cols + c], 0.0);
    }
  }
}

TEST(Embedding, BackwardIsBitwiseIdenticalAcrossThreadCounts) {
  const int threads_before = omp_get_max_threads();
  auto run = [](int threads) {
    omp_set_num_threads(threads);
    Generator gen(31);
    Tensor w = rand_normal({50, 64}, gen, DType::f32);
    w.set_requires_grad(true);
    std::vector<double> ids(4000);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<double>((i * 7919) % 37);
    Tensor g = rand_normal({4000, 64}, gen, DType::f32);
    backward(embedding(w, ids_tensor(ids, {40, 100})), raw_try_reshape_view(g, {40, 100, 64}));
    return w.grad().to_float_vector();
  };
  std::vector<float> one = run(1);
  EXPECT_EQ(one, run(3));
  EXPECT_EQ(one, run(8));
  omp_set_num_threads(threads_before);
}

TEST(Embedding, EmptyIdsGiveAnEmptyOutputAndZeroGradient) {
  Tensor w = randn_leaf({5, 3}, 41);
  Tensor y = embedding(w, Tensor::zeros({2, 0}, DType::i64));
  EXPECT_EQ(y.shape(), (Shape{2, 0, 3}));
  backward(sum(y));
  EXPECT_EQ(w.grad().to_vector(), std::vector<double>(15, 0.0));
}

TEST(Embedding, OutOfRangeIdNamesTheIdPositionAndV) {
  Tensor w = Tensor::zeros({7, 2});
  std::string msg = error_message([&] { embedding(w, ids_tensor({0, 1, 2, 3, 4, 9}, {2, 3})); });
  EXPECT_NE(msg.find("embedding"), std::string::npos) << msg;
  EXPECT_NE(msg.find("id 9"), std::string::npos) << msg;
  EXPECT_NE(msg.find("position (1, 2)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("V = 7"), std::string::npos) << msg;

  msg = error_message([&] { embedding(w, ids_tensor({3, -1}, {2})); });
  EXPECT_NE(msg.find("id -1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("position (1,)"), std::string::npos) << msg;

  // The first bad position is reported, whatever the threads.
  msg = error_message([&] { embedding(w, ids_tensor({7, 8}, {2})); });
  EXPECT_NE(msg.find("id 7 at position (0,)"), std::string::npos) << msg;
}

TEST(Embedding, BadArgumentsNameTheOpAndShapes) {
  std::string msg = error_message([&] { embedding(Tensor::zeros({7}), ids_tensor({1}, {1})); });
  EXPECT_NE(msg.find("embedding"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(7,)"), std::string::npos) << msg;

  msg = error_message([&] { embedding(Tensor::zeros({7, 2}), Tensor::zeros({3})); });
  EXPECT_NE(msg.find("i64"), std::string::npos) << msg;
  EXPECT_NE(msg.find("ids"), std::string::npos) << msg;

  msg = error_message([&] { embedding(Tensor::zeros({7, 2}, DType::i64), ids_tensor({1}, {1})); });
  EXPECT_NE(msg.find("floating-point"), std::string::npos) << msg;
}

}  // namespace
}  // namespace gradus
