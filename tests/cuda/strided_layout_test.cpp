// The index arithmetic of the CUDA strided kernels (kernels/cuda/strided_layout.h), run on the
// host: the same functions the kernels call, so they are checked here in every build, GPU or not.
// IndexDivider against the / and % of the machine; offsets() of merged layouts against the
// coordinates of the unmerged shape and strides, in the 32-bit and the 64-bit path.
#include "kernels/cuda/strided_layout.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

namespace gradus::cuda {
namespace {

constexpr uint32_t kMaxNumerator = (uint32_t{1} << 31) - 1;

// Checks n / d for the numerators most likely to go wrong (around multiples of d, at the top of
// the range) and `random_count` random ones. Returns the number of checks.
int64_t check_divisor(uint32_t d, std::mt19937_64& rng, int random_count) {
  const IndexDivider divider = IndexDivider::make(d);
  int64_t checks = 0;
  auto check = [&](uint32_t n) {
    ASSERT_EQ(divider.div(n), n / d) << "n = " << n << ", d = " << d;
    ++checks;
  };
  for (uint32_t n = 0; n < 64; ++n) check(n);
  for (uint64_t m : {uint64_t{1}, uint64_t{2}, uint64_t{3}, uint64_t{kMaxNumerator / d}}) {
    const uint64_t base = m * d;
    for (int64_t delta = -2; delta <= 2; ++delta) {
      const int64_t n = static_cast<int64_t>(base) + delta;
      if (n >= 0 && n <= kMaxNumerator) check(static_cast<uint32_t>(n));
    }
  }
  for (uint32_t n = kMaxNumerator - 64; n != kMaxNumerator; ++n) check(n);
  check(kMaxNumerator);
  std::uniform_int_distribution<uint32_t> any(0, kMaxNumerator);
  for (int r = 0; r < random_count; ++r) check(any(rng));
  return checks;
}

TEST(StridedLayout, DividerMatchesDivision) {
  std::mt19937_64 rng(7);
  int64_t checks = 0;
  for (uint32_t d = 1; d <= 4096; ++d) checks += check_divisor(d, rng, 16);
  for (int s = 12; s <= 30; ++s)  // around every power of two, where shift changes
    for (int64_t delta = -3; delta <= 3; ++delta)
      checks += check_divisor(static_cast<uint32_t>((int64_t{1} << s) + delta), rng, 64);
  checks += check_divisor(kMaxNumerator, rng, 64);
  std::uniform_int_distribution<uint32_t> any_divisor(1, kMaxNumerator);
  for (int r = 0; r < 2000; ++r) checks += check_divisor(any_divisor(rng), rng, 16);
  EXPECT_GT(checks, 500000);
}

TEST(StridedLayout, DividerRejectsDivisorsOutOfRange) {
  EXPECT_THROW(IndexDivider::make(0), Error);
  EXPECT_THROW(IndexDivider::make(uint32_t{1} << 31), Error);
}

// Element offset of row-major element i of `shape` in a tensor of `strides`: the definition.
int64_t reference_offset(const Shape& shape, const Strides& strides, int64_t i) {
  int64_t off = 0;
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    off += (i % shape[d]) * strides[d];
    i /= shape[d];
  }
  return off;
}

Strides contiguous_strides(const Shape& shape) {
  Strides s(shape.size());
  int64_t stride = 1;
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    s[d] = stride;
    stride *= shape[d];
  }
  return s;
}

// Operand 0 contiguous (an output), 1 a random permutation of a contiguous tensor (a transposed
// view), 2 with broadcast (stride 0) axes and padded rows.
TEST(StridedLayout, OffsetsMatchTheUnmergedStrides) {
  std::mt19937_64 rng(11);
  int64_t checks = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const int ndim = 1 + static_cast<int>(rng() % 6);
    Shape shape(ndim);
    for (int64_t& e : shape) e = 1 + static_cast<int64_t>(rng() % 7);
    const Strides out = contiguous_strides(shape);
    std::vector<int> order(ndim);
    for (int d = 0; d < ndim; ++d) order[d] = d;
    std::shuffle(order.begin(), order.end(), rng);
    Shape permuted(ndim);
    for (int d = 0; d < ndim; ++d) permuted[d] = shape[order[d]];
    const Strides permuted_strides = contiguous_strides(permuted);
    Strides transposed(ndim);
    for (int d = 0; d < ndim; ++d) transposed[order[d]] = permuted_strides[d];
    Strides broadcast(ndim);
    int64_t stride = 3;  // rows padded by 2 elements
    for (int d = ndim - 1; d >= 0; --d) {
      broadcast[d] = rng() % 3 == 0 ? 0 : stride;
      stride = stride * shape[d] + 2;
    }
    Layout<3> layout = make_layout<3>(shape, {&out, &transposed, &broadcast}, "test");
    ASSERT_TRUE(layout.index32);
    Layout<3> wide = layout;
    wide.index32 = false;  // the 64-bit path on the same layout
    int64_t numel = 1;
    for (int64_t e : shape) numel *= e;
    for (int64_t i = 0; i < numel; ++i) {
      int64_t got[3], got_wide[3];
      offsets(layout, i, got);
      offsets(wide, i, got_wide);
      const Strides* strides[3] = {&out, &transposed, &broadcast};
      for (int k = 0; k < 3; ++k) {
        const int64_t want = reference_offset(shape, *strides[k], i);
        ASSERT_EQ(got[k], want) << "operand " << k << ", element " << i << " of "
                                << shape_str(shape);
        ASSERT_EQ(got_wide[k], want) << "64-bit path, operand " << k << ", element " << i;
        ++checks;
      }
    }
  }
  EXPECT_GT(checks, 10000);
}

// Large extents: a (3, 5, 2^21 + 1, 64) tensor (about 2^31 elements would not fit this test's
// memory, but its offsets need none) with its middle axes swapped; past 2^31 elements the 64-bit
// path takes over.
TEST(StridedLayout, LargeExtentsAndTheSwitchTo64Bits) {
  const Shape shape = {3, 5, (int64_t{1} << 21) + 1, 64};
  const Strides out = contiguous_strides(shape);
  const Strides swapped = {5 * shape[2] * 64, 64, 5 * 64, 1};
  const Layout<2> layout = make_layout<2>(shape, {&out, &swapped}, "test");
  EXPECT_TRUE(layout.index32);
  const int64_t numel = 3 * 5 * shape[2] * 64;
  std::mt19937_64 rng(3);
  for (int r = 0; r < 20000; ++r) {
    const int64_t i = r < 64 ? numel - 1 - r : static_cast<int64_t>(rng() % numel);
    int64_t got[2];
    offsets(layout, i, got);
    EXPECT_EQ(got[0], i);
    EXPECT_EQ(got[1], reference_offset(shape, swapped, i)) << "element " << i;
  }
  const Shape huge = {2, int64_t{1} << 30, 3};
  const Strides huge_out = contiguous_strides(huge);
  const Strides huge_in = {3, 6, 1};
  const Layout<2> wide = make_layout<2>(huge, {&huge_out, &huge_in}, "test");
  EXPECT_FALSE(wide.index32);
  for (int64_t i : {int64_t{0}, int64_t{5}, (int64_t{3} << 30) + 7, 6 * (int64_t{1} << 30) - 1}) {
    int64_t got[2];
    offsets(wide, i, got);
    EXPECT_EQ(got[1], reference_offset(huge, huge_in, i)) << "element " << i;
  }
}

}  // namespace
}  // namespace gradus::cuda
