// core/tensor: factories, element access, describe(), the raw views (which must share storage and
// never copy), the reshape-without-copy rules, contiguous()/clone/to_dtype, error messages, poison
// mode and i64 tensors. Expected values come from index arithmetic in the tests, not from the
// implementation.
#include "core/tensor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "support/expect_error.h"

namespace gradus {
namespace {

using testing::error_message;
using testing::expect_error;

// Restores the poison switch however the test leaves.
struct PoisonGuard {
  bool previous = poison_uninitialized();
  explicit PoisonGuard(bool on) { set_poison_uninitialized(on); }
  ~PoisonGuard() { set_poison_uninitialized(previous); }
};

// 0, 1, ..., n-1 as f64 of `shape` (row-major).
Tensor iota(const Shape& shape, DType dtype = DType::f64) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i);
  return Tensor::from_vector(v, shape, dtype);
}

// ------------------------------------------------------------------ factories and element access

TEST(Tensor, EmptyIsContiguousWithRowMajorStrides) {
  Tensor t = Tensor::empty({2, 3, 4}, DType::f64);
  EXPECT_EQ(t.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(t.strides(), (Strides{12, 4, 1}));
  EXPECT_EQ(t.dim(), 3);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 24u * 8u);
  EXPECT_EQ(t.offset(), 0);
  EXPECT_EQ(t.dtype(), DType::f64);
  EXPECT_TRUE(t.device().is_cpu());
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.size(-1), 4);
  EXPECT_EQ(t.stride(0), 12);
  expect_error([] { Tensor::empty({2, -1}); }, {"Tensor::empty", "(2, -1)"});
}

TEST(Tensor, ZerosOnesFullScalar) {
  for (DType dt : {DType::f32, DType::f64, DType::i64}) {
    for (double v : Tensor::zeros({2, 3}, dt).to_vector()) EXPECT_EQ(v, 0.0);
    for (double v : Tensor::ones({4}, dt).to_vector()) EXPECT_EQ(v, 1.0);
    for (double v : Tensor::full({3, 1}, -7.0, dt).to_vector()) EXPECT_EQ(v, -7.0);
  }
  Tensor s = Tensor::scalar(2.5, DType::f64);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.item(), 2.5);
  EXPECT_EQ(s.at({}), 2.5);
  // A zero-element tensor is valid and has nothing to read.
  Tensor z = Tensor::zeros({0, 3});
  EXPECT_EQ(z.numel(), 0);
  EXPECT_TRUE(z.to_vector().empty());
}

TEST(Tensor, FromVectorRoundTripsAndConverts) {
  std::vector<double> v = {1.5, -2.25, 3.0, 4.0, 0.125, -6.0};
  Tensor d = Tensor::from_vector(v, {2, 3}, DType::f64);
  EXPECT_EQ(d.to_vector(), v);
  Tensor f = Tensor::from_vector(v, {3, 2}, DType::f32);  // all exactly representable in f32
  EXPECT_EQ(f.dtype(), DType::f32);
  EXPECT_EQ(f.to_vector(), v);
  std::vector<float> fv = {0.1f, 0.2f, 0.3f};
  Tensor g = Tensor::from_vector(fv, {3});
  EXPECT_EQ(g.to_float_vector(), fv);
  Tensor i = Tensor::from_vector({3.0, -1.0, 7.0}, {3}, DType::i64);
  EXPECT_EQ(i.to_vector(), (std::vector<double>{3.0, -1.0, 7.0}));
  expect_error(
      [] {
        Tensor::from_vector(std::vector<double>{1, 2, 3}, {2, 2});
      },
      {"Tensor::from_vector", "3 values", "(2, 2)", "4 elements"});
  expect_error(
      [] {
        Tensor::from_vector(std::vector<float>{1, 2}, {3});
      },
      {"Tensor::from_vector", "2 values", "(3,)"});
}

TEST(Tensor, ItemAndAt) {
  Tensor t = iota({2, 3});
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t c = 0; c < 3; ++c) EXPECT_EQ(t.at({r, c}), static_cast<double>(r * 3 + c));
  EXPECT_EQ(Tensor::from_vector({4.0}, {1, 1}, DType::f64).item(), 4.0);
  expect_error([&] { t.item(); }, {"Tensor::item", "one element", "(2, 3)"});
  expect_error([&] { t.at({2, 0}); }, {"Tensor::at", "index 2", "axis 0", "(2, 3)"});
  expect_error([&] { t.at({0, -1}); }, {"Tensor::at", "index -1"});
  expect_error([&] { t.at({1}); }, {"Tensor::at", "1 indices", "(2, 3)"});
  expect_error([] { Tensor().shape(); }, {"undefined"});
}

TEST(Tensor, Describe) {
  EXPECT_EQ(Tensor::empty({2, 3}).describe(), "f32 (2, 3) cpu");
  EXPECT_EQ(Tensor::empty({5}, DType::f64).describe(), "f64 (5,) cpu");
  EXPECT_EQ(Tensor::scalar(1.0).describe(), "f32 () cpu");
  EXPECT_EQ(Tensor::empty({4}, DType::i64).describe(), "i64 (4,) cpu");
  // Non-contiguous views also show their strides.
  EXPECT_EQ(raw_transpose(Tensor::empty({2, 3}), 0, 1).describe(), "f32 (3, 2) strides (1, 3) cpu");
  EXPECT_EQ(Tensor().describe(), "undefined tensor");
}

TEST(Tensor, DataChecksTheDtype) {
  Tensor t = Tensor::zeros({2}, DType::f64);
  EXPECT_NE(t.data<double>(), nullptr);
  expect_error([&] { t.data<float>(); }, {"Tensor::data", "f32", "f64 (2,) cpu"});
}

TEST(Tensor, Arange) {
  Tensor a = Tensor::arange(5, DType::i64);
  EXPECT_EQ(a.dtype(), DType::i64);
  EXPECT_EQ(a.to_vector(), (std::vector<double>{0, 1, 2, 3, 4}));
  EXPECT_EQ(Tensor::arange(0).numel(), 0);
}

// ------------------------------------------------------------------ reshape views

TEST(TensorViews, ReshapeOfContiguousIsAView) {
  Tensor x = iota({2, 3, 4});
  Tensor r = raw_try_reshape_view(x, {4, -1});
  ASSERT_TRUE(r.defined());
  EXPECT_TRUE(r.shares_storage(x));
  EXPECT_EQ(r.raw_data(), x.raw_data());
  EXPECT_EQ(r.shape(), (Shape{4, 6}));
  EXPECT_EQ(r.strides(), (Strides{6, 1}));
  EXPECT_EQ(r.to_vector(), x.to_vector());
  // A contiguous slice keeps its offset through the reshape.
  Tensor rows = raw_slice(x, 0, 1, 2);  // (1, 3, 4) starting at element 12
  Tensor flat = raw_try_reshape_view(rows, {12});
  ASSERT_TRUE(flat.defined());
  EXPECT_EQ(flat.offset(), 12);
  EXPECT_EQ(flat.at({0}), 12.0);
  EXPECT_EQ(flat.at({11}), 23.0);
}

TEST(TensorViews, ReshapeOfTransposedMatrixTo1DNeedsACopy) {
  Tensor x = iota({2, 3});
  Tensor t = raw_transpose(x, 0, 1);  // (3, 2) strides (1, 3)
  EXPECT_FALSE(raw_try_reshape_view(t, {6}).defined());
  EXPECT_FALSE(raw_try_reshape_view(t, {2, 3}).defined());
  EXPECT_FALSE(raw_try_reshape_view(t, {-1}).defined());
  // Adding or removing size-1 axes never needs a copy.
  Tensor u = raw_try_reshape_view(t, {3, 1, 2});
  ASSERT_TRUE(u.defined());
  EXPECT_TRUE(u.shares_storage(x));
  EXPECT_EQ(u.stride(0), 1);
  EXPECT_EQ(u.stride(2), 3);
  EXPECT_EQ(u.to_vector(), t.to_vector());
  Tensor back = raw_try_reshape_view(u, {3, 2});
  ASSERT_TRUE(back.defined());
  EXPECT_EQ(back.strides(), (Strides{1, 3}));
}

TEST(TensorViews, ReshapeOfStridedSlices) {
  Tensor x = iota({4, 6});
  Tensor s = raw_slice(x, 1, 0, 6, 2);  // (4, 3) strides (6, 2): element (r, c) = 6r + 2c
  ASSERT_FALSE(s.is_contiguous());
  // Splitting an axis keeps a view.
  Tensor split = raw_try_reshape_view(s, {2, 2, 3});
  ASSERT_TRUE(split.defined());
  EXPECT_TRUE(split.shares_storage(x));
  EXPECT_EQ(split.strides(), (Strides{12, 6, 2}));
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t c = 0; c < 3; ++c)
        EXPECT_EQ(split.at({a, b, c}), static_cast<double>(6 * (2 * a + b) + 2 * c));
  // Every other column of a 6-wide matrix is one evenly spaced run (row stride 6 == 3 * 2), so
  // even merging rows with columns is a view: elements 0, 2, ..., 22.
  Tensor merged = raw_try_reshape_view(s, {12});
  ASSERT_TRUE(merged.defined());
  EXPECT_TRUE(merged.shares_storage(x));
  EXPECT_EQ(merged.strides(), (Strides{2}));
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(merged.at({i}), static_cast<double>(2 * i));
  EXPECT_TRUE(raw_try_reshape_view(s, {4, 3, 1}).defined());
  // Columns 0..2 of each row (strides (6, 1)) leave gaps: the row axis splits, but rows and
  // columns do not merge.
  Tensor c = raw_slice(x, 1, 0, 3);
  Tensor c_split = raw_try_reshape_view(c, {2, 2, 3});
  ASSERT_TRUE(c_split.defined());
  EXPECT_EQ(c_split.strides(), (Strides{12, 6, 1}));
  EXPECT_FALSE(raw_try_reshape_view(c, {12}).defined());
  EXPECT_FALSE(raw_try_reshape_view(c, {2, 6}).defined());
  EXPECT_TRUE(raw_try_reshape_view(c, {4, 1, 3, 1}).defined());
}

TEST(TensorViews, ReshapeOfExpandedKeepsZeroStrides) {
  Tensor x = Tensor::from_vector({1.0, 2.0, 3.0}, {1, 3}, DType::f64);
  Tensor e = raw_expand(x, {4, 3});  // strides (0, 1)
  Tensor r = raw_try_reshape_view(e, {2, 2, 3});
  ASSERT_TRUE(r.defined());
  EXPECT_EQ(r.strides(), (Strides{0, 0, 1}));
  EXPECT_EQ(r.to_vector(), e.to_vector());
  EXPECT_FALSE(raw_try_reshape_view(e, {12}).defined());  // 12 distinct slots need a copy
}

TEST(TensorViews, ReshapeOfZeroElementNonContiguousTensor) {
  // Any layout of zero elements can be viewed in any shape of zero elements.
  Tensor x = Tensor::zeros({0, 3});
  Tensor t = raw_transpose(x, 0, 1);  // (3, 0)
  Tensor r = raw_try_reshape_view(t, {0});
  ASSERT_TRUE(r.defined());
  EXPECT_EQ(r.shape(), (Shape{0}));
  Tensor r2 = raw_try_reshape_view(t, {0, 5, 2});
  ASSERT_TRUE(r2.defined());
  EXPECT_EQ(r2.numel(), 0);
}

TEST(TensorViews, ReshapeErrorsNameOpAndShapes) {
  Tensor x = iota({2, 3});
  expect_error(
      [&] {
        raw_try_reshape_view(x, {4, 2});
      },
      {"reshape", "(4, 2)", "8 elements", "has 6"});
  expect_error([&] { raw_try_reshape_view(x, {-1, -1}); }, {"reshape", "only one -1", "(-1, -1)"});
  expect_error([&] { raw_try_reshape_view(x, {4, -1}); }, {"reshape", "(4, -1)", "6 elements"});
  expect_error([&] { raw_try_reshape_view(x, {-2, 3}); }, {"reshape", "negative size", "(-2, 3)"});
  EXPECT_EQ(infer_reshape({-1, 3}, 6, "view"), (Shape{2, 3}));
  expect_error([] { infer_reshape({5}, 6, "my_op"); }, {"my_op", "(5,)"});
}

// ------------------------------------------------------------------ other views

TEST(TensorViews, TransposeAndPermuteShareStorage) {
  Tensor x = iota({2, 3, 4});
  Tensor t = raw_transpose(x, 0, -1);  // (4, 3, 2)
  EXPECT_TRUE(t.shares_storage(x));
  EXPECT_EQ(t.shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(t.strides(), (Strides{1, 4, 12}));
  EXPECT_FALSE(t.is_contiguous());
  Tensor p = raw_permute(x, {1, 2, 0});  // (3, 4, 2): p[a, b, c] = x[c, a, b]
  EXPECT_TRUE(p.shares_storage(x));
  EXPECT_EQ(p.shape(), (Shape{3, 4, 2}));
  for (int64_t a = 0; a < 3; ++a)
    for (int64_t b = 0; b < 4; ++b)
      for (int64_t c = 0; c < 2; ++c) {
        EXPECT_EQ(p.at({a, b, c}), static_cast<double>(c * 12 + a * 4 + b));
        EXPECT_EQ(t.at({b, a, c}), static_cast<double>(c * 12 + a * 4 + b));
      }
  // Writes through a view are seen by the base.
  raw_fill_(raw_slice(t, 0, 1, 2), -1.0);  // t[1, :, :] = x[:, :, 1]
  EXPECT_EQ(x.at({1, 2, 1}), -1.0);
  EXPECT_EQ(x.at({1, 2, 0}), 20.0);
}

TEST(TensorViews, TransposeOfAScalarIsTheScalar) {
  // Axis 0 / -1 of a rank-0 tensor are accepted (as in PyTorch); the result is the same scalar.
  Tensor s = Tensor::scalar(3.0, DType::f64);
  Tensor t = raw_transpose(s, 0, -1);
  EXPECT_EQ(t.dim(), 0);
  EXPECT_EQ(t.item(), 3.0);
  EXPECT_TRUE(t.shares_storage(s));
  Tensor q = raw_squeeze(s, 0);
  EXPECT_EQ(q.dim(), 0);
  EXPECT_EQ(q.item(), 3.0);
  expect_error([&] { s.size(0); }, {"rank 0"});
  expect_error([&] { raw_slice(s, 0, 0, 1); }, {"slice", "f64 () cpu"});
}

TEST(TensorViews, PermuteErrors) {
  Tensor x = iota({2, 3});
  expect_error([&] { raw_permute(x, {0}); }, {"permute", "1 axes", "rank 2"});
  expect_error([&] { raw_permute(x, {1, 1}); }, {"permute", "repeated"});
  expect_error([&] { raw_permute(x, {0, 2}); }, {"permute", "axis 2", "rank 2"});
  expect_error([&] { raw_transpose(x, 0, 2); }, {"transpose", "axis 2", "rank 2"});
  expect_error([&] { raw_transpose(x, -3, 0); }, {"transpose", "axis -3", "rank 2"});
}

TEST(TensorViews, SliceWithNegativeBoundsAndSteps) {
  Tensor x = iota({10});
  auto vals = [](const Tensor& t) { return t.to_vector(); };
  EXPECT_EQ(vals(raw_slice(x, 0, 2, 5)), (std::vector<double>{2, 3, 4}));
  EXPECT_EQ(vals(raw_slice(x, 0, -3, 10)), (std::vector<double>{7, 8, 9}));
  EXPECT_EQ(vals(raw_slice(x, 0, 1, -1, 3)), (std::vector<double>{1, 4, 7}));
  EXPECT_EQ(vals(raw_slice(x, 0, 0, 10, 4)), (std::vector<double>{0, 4, 8}));
  EXPECT_EQ(vals(raw_slice(x, 0, -100, 2)), (std::vector<double>{0, 1}));  // clamped
  EXPECT_EQ(vals(raw_slice(x, 0, 8, 100)), (std::vector<double>{8, 9}));   // clamped
  EXPECT_EQ(raw_slice(x, 0, 6, 3).numel(), 0);                             // empty, not negative
  EXPECT_EQ(raw_slice(x, 0, 10, 10).numel(), 0);
  Tensor s = raw_slice(x, 0, 1, 9, 2);
  EXPECT_TRUE(s.shares_storage(x));
  EXPECT_EQ(s.offset(), 1);
  EXPECT_EQ(s.strides(), (Strides{2}));
  expect_error([&] { raw_slice(x, 0, 0, 5, 0); }, {"slice", "step", "0"});
  expect_error([&] { raw_slice(x, 1, 0, 5); }, {"slice", "axis 1", "rank 1"});

  // Along a middle axis of a 3-D tensor, from a non-zero base offset.
  Tensor y = iota({3, 5, 2});
  Tensor m = raw_slice(raw_slice(y, 0, 1, 3), 1, -4, -1, 2);  // rows 1..2, cols 1, 3
  EXPECT_EQ(m.shape(), (Shape{2, 2, 2}));
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t c = 0; c < 2; ++c)
        EXPECT_EQ(m.at({a, b, c}), static_cast<double>((a + 1) * 10 + (1 + 2 * b) * 2 + c));
}

TEST(TensorViews, ExpandUsesZeroStrides) {
  Tensor x = Tensor::from_vector({1.0, 2.0, 3.0}, {3, 1}, DType::f64);
  Tensor e = raw_expand(x, {2, 3, 4});
  EXPECT_TRUE(e.shares_storage(x));
  EXPECT_EQ(e.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(e.strides(), (Strides{0, 1, 0}));
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t c = 0; c < 4; ++c) EXPECT_EQ(e.at({a, b, c}), static_cast<double>(b + 1));
  Tensor k = raw_expand(x, {-1, 5});  // -1 keeps the size
  EXPECT_EQ(k.shape(), (Shape{3, 5}));
  expect_error([&] { raw_expand(x, {2, 4}); }, {"expand", "(3, 1)", "(2, 4)", "axis 0", "size 3"});
  expect_error([&] { raw_expand(x, {3}); }, {"expand", "(3, 1)", "smaller rank", "(3,)"});
  expect_error([&] { raw_expand(x, {-1, 3, 1}); }, {"expand", "leading", "(-1, 3, 1)"});
}

TEST(TensorViews, UnsqueezeAndSqueeze) {
  Tensor x = iota({2, 3});
  Tensor u0 = raw_unsqueeze(x, 0);
  EXPECT_EQ(u0.shape(), (Shape{1, 2, 3}));
  EXPECT_TRUE(u0.is_contiguous());
  Tensor u1 = raw_unsqueeze(x, 1);
  EXPECT_EQ(u1.shape(), (Shape{2, 1, 3}));
  Tensor ul = raw_unsqueeze(x, -1);  // -1 is the new last axis
  EXPECT_EQ(ul.shape(), (Shape{2, 3, 1}));
  EXPECT_TRUE(ul.shares_storage(x));
  EXPECT_EQ(ul.to_vector(), x.to_vector());
  Tensor s = raw_squeeze(u1, 1);
  EXPECT_EQ(s.shape(), (Shape{2, 3}));
  EXPECT_EQ(s.strides(), x.strides());
  // On a transposed tensor the new axis keeps the view non-contiguous but valid.
  Tensor t = raw_unsqueeze(raw_transpose(x, 0, 1), 1);  // (3, 1, 2)
  EXPECT_EQ(t.at({2, 0, 1}), 5.0);
  expect_error([&] { raw_squeeze(x, 1); }, {"squeeze", "axis 1", "(2, 3)", "size 3"});
  expect_error([&] { raw_unsqueeze(x, 3); }, {"unsqueeze", "axis 3", "rank 3"});
}

// ------------------------------------------------------------------ copies

TEST(TensorCopies, ContiguousCopiesOnlyWhenNeeded) {
  Tensor x = iota({3, 4});
  EXPECT_TRUE(raw_contiguous(x).same(x));
  Tensor row = raw_slice(x, 0, 1, 2);  // one row: contiguous although offset
  EXPECT_TRUE(row.is_contiguous());
  EXPECT_TRUE(raw_contiguous(row).same(row));
  // Size-1 axes may carry any stride.
  Tensor one = raw_view(x, {1, 4}, {99, 1}, 0);
  EXPECT_TRUE(one.is_contiguous());

  Tensor t = raw_transpose(x, 0, 1);
  Tensor c = raw_contiguous(t);
  EXPECT_FALSE(c.shares_storage(x));
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_EQ(c.strides(), (Strides{3, 1}));
  EXPECT_EQ(c.to_vector(), t.to_vector());
  for (int64_t a = 0; a < 4; ++a)
    for (int64_t b = 0; b < 3; ++b) EXPECT_EQ(c.at({a, b}), static_cast<double>(b * 4 + a));
  // Clone always copies.
  Tensor k = raw_clone(x);
  EXPECT_FALSE(k.shares_storage(x));
  EXPECT_EQ(k.to_vector(), x.to_vector());
}

TEST(TensorCopies, CopyIntoStridedDestination) {
  Tensor dst = Tensor::zeros({3, 4}, DType::f64);
  Tensor src = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {3, 2}, DType::f32);
  raw_copy_(raw_slice(dst, 1, 1, 4, 2), src);  // columns 1 and 3, converting f32 -> f64
  std::vector<double> expect = {0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6};
  EXPECT_EQ(dst.to_vector(), expect);
  expect_error([&] { raw_copy_(dst, src); }, {"copy", "(3, 4)", "(3, 2)"});
}

TEST(TensorCopies, ToDtype) {
  Tensor x = Tensor::from_vector({1.5, -2.5, 3.75}, {3}, DType::f64);
  EXPECT_TRUE(raw_to_dtype(x, DType::f64).same(x));  // no copy when the dtype already matches
  Tensor f = raw_to_dtype(x, DType::f32);
  EXPECT_EQ(f.dtype(), DType::f32);
  EXPECT_FALSE(f.shares_storage(x));
  EXPECT_EQ(f.to_vector(), x.to_vector());
  Tensor i = raw_to_dtype(x, DType::i64);  // truncates toward zero, as a C++ cast
  EXPECT_EQ(i.to_vector(), (std::vector<double>{1, -2, 3}));
  Tensor back = raw_to_dtype(raw_transpose(iota({2, 3}, DType::i64), 0, 1), DType::f32);
  EXPECT_TRUE(back.is_contiguous());
  EXPECT_EQ(back.to_vector(), (std::vector<double>{0, 3, 1, 4, 2, 5}));
}

// ------------------------------------------------------------------ poison mode

TEST(TensorPoison, EmptyIsNaNOnlyWhenPoisonIsOn) {
  {
    PoisonGuard on(true);
    for (DType dt : {DType::f32, DType::f64}) {
      for (double v : Tensor::empty({5, 7}, dt).to_vector()) EXPECT_TRUE(std::isnan(v));
      for (double v : Tensor::zeros({5, 7}, dt).to_vector()) EXPECT_EQ(v, 0.0);
      for (double v : Tensor::full({9}, 2.0, dt).to_vector()) EXPECT_EQ(v, 2.0);
      for (double v : Tensor::from_vector({1, 2}, {2}, dt).to_vector()) EXPECT_FALSE(std::isnan(v));
    }
    // Copies are fully written, so they are never poisoned either.
    Tensor t = raw_transpose(iota({3, 2}), 0, 1);
    for (double v : raw_contiguous(t).to_vector()) EXPECT_FALSE(std::isnan(v));
    for (double v : raw_to_dtype(t, DType::f32).to_vector()) EXPECT_FALSE(std::isnan(v));
    EXPECT_TRUE(poison_uninitialized());  // factories that pause poisoning restore it
  }
  PoisonGuard off(false);
  EXPECT_FALSE(poison_uninitialized());
}

// ------------------------------------------------------------------ i64

TEST(TensorI64, HoldsExactIndicesAndCannotRequireGrad) {
  const int64_t big = (int64_t{1} << 53) + 1;  // not representable in f64: check data<> directly
  Tensor t = Tensor::empty({3}, DType::i64);
  int64_t* p = t.data<int64_t>();
  p[0] = big;
  p[1] = -5;
  p[2] = 0;
  EXPECT_EQ(t.data<int64_t>()[0], big);
  EXPECT_EQ(raw_clone(t).data<int64_t>()[0], big);
  EXPECT_EQ(raw_transpose(raw_unsqueeze(t, 0), 0, 1).at({1, 0}), -5.0);
  EXPECT_EQ(t.nbytes(), 24u);
  expect_error([&] { t.set_requires_grad(true); }, {"set_requires_grad", "i64 (3,) cpu"});
  EXPECT_FALSE(t.requires_grad());
}

#ifndef GRADUS_WITH_CUDA
TEST(Tensor, NoCudaBackendIsAClearError) {
  expect_error(
      [] {
        Tensor::empty({2}, DType::f32, Device{DeviceType::cuda, 0});
      },
      {"allocator", "cuda"});
}
#endif

}  // namespace
}  // namespace gradus
