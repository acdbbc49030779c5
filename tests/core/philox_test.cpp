// core/philox + core/random: Philox-4x32-10 against the known-answer vectors of the Random123
// distribution (kat_vectors), the stream layout stated in core/philox.h, determinism and offset
// bookkeeping of the Generator, and the statistics of rand_uniform / rand_normal in f32 and f64.
#include "core/philox.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/random.h"

namespace gradus {
namespace {

// ------------------------------------------------------------------ the block function

struct Kat {
  PhiloxBlock counter;
  uint32_t k0, k1;
  PhiloxBlock expect;
};

TEST(Philox, KnownAnswerVectorsFromRandom123) {
  // Random123 kat_vectors, "philox4x32 10" lines: counter, key, expected output.
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
      {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}},
       0xffffffff,
       0xffffffff,
       {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
      {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}},
       0xa4093822,
       0x299f31d0,
       {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
  };
  for (const Kat& k : kats) {
    PhiloxBlock out = philox4x32_10(k.counter, k.k0, k.k1);
    for (int lane = 0; lane < 4; ++lane)
      EXPECT_EQ(out.v[lane], k.expect.v[lane])
          << "lane " << lane << " of counter 0x" << std::hex << k.counter.v[0];
  }
}

TEST(Philox, BlockIndexAndSeedMapToCounterAndKey) {
  // philox_block(seed, index): key = (seed lo, seed hi), counter = (index lo, index hi, 0, 0).
  const uint64_t seed = 0x0123456789abcdefull, index = 0xfedcba9876543210ull;
  PhiloxBlock a = philox_block(seed, index);
  PhiloxBlock b = philox4x32_10({{0x76543210u, 0xfedcba98u, 0u, 0u}}, 0x89abcdefu, 0x01234567u);
  for (int lane = 0; lane < 4; ++lane) EXPECT_EQ(a.v[lane], b.v[lane]);
  // The high halves matter: neighbours in either half give different blocks.
  EXPECT_NE(philox_block(seed, index).v[0], philox_block(seed, index ^ (1ull << 40)).v[0]);
  EXPECT_NE(philox_block(seed, index).v[0], philox_block(seed ^ (1ull << 40), index).v[0]);
}

TEST(Philox, UnitConversions) {
  EXPECT_EQ(philox_to_unit_float(0u), 0.0f);
  EXPECT_EQ(philox_to_unit_float(0xffffffffu), 1.0f - 1.0f / 16777216.0f);  // largest, below 1
  EXPECT_EQ(philox_to_unit_float(0x80000000u), 0.5f);
  EXPECT_EQ(philox_to_unit_float(0x000000ffu), 0.0f);  // the low 8 bits are dropped
  EXPECT_EQ(philox_to_unit_double(0u, 0u), 0.0);
  EXPECT_EQ(philox_to_unit_double(0xffffffffu, 0xffffffffu), 1.0 - std::ldexp(1.0, -53));
  EXPECT_EQ(philox_to_unit_double(0x80000000u, 0u), 0.5);
  EXPECT_EQ(philox_to_unit_double(0u, 0x00000800u), std::ldexp(1.0, -53));  // lowest kept bit
}

// ------------------------------------------------------------------ stream layout

TEST(PhiloxStream, UniformElementsFollowTheStatedLayout) {
  // f32 element i: block (o + i/4), lane i%4. f64 element i: block (o + i/2), lanes 2(i%2), +1.
  const uint64_t seed = 1234, o = 77;
  for (uint64_t i = 0; i < 64; ++i) {
    PhiloxBlock b4 = philox_block(seed, o + i / 4);
    EXPECT_EQ(philox_uniform_f32(seed, o, i), philox_to_unit_float(b4.v[i % 4])) << i;
    PhiloxBlock b2 = philox_block(seed, o + i / 2);
    const int lane = static_cast<int>(i % 2) * 2;
    EXPECT_EQ(philox_uniform_f64(seed, o, i), philox_to_unit_double(b2.v[lane], b2.v[lane + 1]));
  }
}

TEST(PhiloxStream, RandUniformIsTheStreamAndAdvancesByBlocksUsed) {
  const uint64_t seed = 99;
  for (int64_t n : {1, 3, 4, 5, 1001, 100003}) {  // 100003 takes the parallel path
    Generator g32(seed, 7);
    Tensor a = rand_uniform({n}, g32, DType::f32);
    EXPECT_EQ(g32.offset, 7u + static_cast<uint64_t>((n + 3) / 4)) << n;
    const float* pa = a.data<float>();
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(pa[i], philox_uniform_f32(seed, 7, static_cast<uint64_t>(i))) << n << " " << i;

    Generator g64(seed, 7);
    Tensor b = rand_uniform({n}, g64, DType::f64);
    EXPECT_EQ(g64.offset, 7u + static_cast<uint64_t>((n + 1) / 2)) << n;
    const double* pb = b.data<double>();
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(pb[i], philox_uniform_f64(seed, 7, static_cast<uint64_t>(i))) << n << " " << i;
  }
}

TEST(PhiloxStream, RandNormalIsBoxMullerOnUniformPairs) {
  const uint64_t seed = 5;
  for (int64_t n : {1, 2, 7, 50000}) {
    Generator g(seed, 3);
    Tensor z = rand_normal({n}, g, DType::f64);
    // Pairs of uniforms: an odd n still uses the second half of its last pair.
    EXPECT_EQ(g.offset, 3u + static_cast<uint64_t>((n + (n & 1)) / 2)) << n;
    const double* p = z.data<double>();
    const double two_pi = 2.0 * std::acos(-1.0);
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t k = static_cast<uint64_t>(i) & ~uint64_t{1};
      const double u1 = 1.0 - philox_uniform_f64(seed, 3, k);  // in (0, 1]
      const double u2 = philox_uniform_f64(seed, 3, k + 1);
      const double r = std::sqrt(-2.0 * std::log(u1));
      const double expect = (i & 1) ? r * std::sin(two_pi * u2) : r * std::cos(two_pi * u2);
      ASSERT_NEAR(p[i], expect, 1e-12 * (1.0 + std::abs(expect))) << n << " " << i;
      ASSERT_EQ(p[i], philox_normal<double>(seed, 3, static_cast<uint64_t>(i)));
    }
    Generator g32(seed, 3);
    Tensor z32 = rand_normal({n}, g32, DType::f32);
    EXPECT_EQ(g32.offset, 3u + static_cast<uint64_t>((n + (n & 1) + 3) / 4)) << n;
    const float* q = z32.data<float>();
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(q[i], philox_normal<float>(seed, 3, static_cast<uint64_t>(i))) << n << " " << i;
  }
}

TEST(PhiloxStream, DeterministicForSameSeedAndOffset) {
  Generator a(42), b(42);
  Tensor x1 = rand_normal({3, 100}, a, DType::f32);
  Tensor y1 = rand_normal({3, 100}, b, DType::f32);
  EXPECT_EQ(x1.to_vector(), y1.to_vector());
  EXPECT_EQ(a.offset, b.offset);
  // The generator moved on, so the next draw differs from the first.
  Tensor x2 = rand_normal({3, 100}, a, DType::f32);
  EXPECT_NE(x1.to_vector(), x2.to_vector());
  // A generator rebuilt at the saved offset reproduces it.
  Generator c(42, b.offset);
  EXPECT_EQ(rand_normal({3, 100}, c, DType::f32).to_vector(), x2.to_vector());
  // Another seed gives another stream.
  Generator d(43);
  EXPECT_NE(rand_normal({3, 100}, d, DType::f32).to_vector(), x1.to_vector());
}

TEST(PhiloxStream, SplitDrawsMatchOneDrawOnlyWhenOffsetsLineUp) {
  // Two draws of n then m equal one draw of n + m when n fills whole blocks (a multiple of 4 for
  // f32, of 2 for f64): the second draw starts at block n/4. Otherwise the rest of the first
  // draw's last block is skipped: the second draw starts at element 4*ceil(n/4) of the one stream.
  const uint64_t seed = 2024;
  Generator whole(seed);
  std::vector<double> one = rand_uniform({40}, whole, DType::f32).to_vector();
  {
    Generator g(seed);
    std::vector<double> a = rand_uniform({8}, g, DType::f32).to_vector();
    std::vector<double> b = rand_uniform({12}, g, DType::f32).to_vector();
    for (size_t i = 0; i < 8; ++i) EXPECT_EQ(a[i], one[i]);
    for (size_t i = 0; i < 12; ++i) EXPECT_EQ(b[i], one[8 + i]);
  }
  {
    Generator g(seed);
    std::vector<double> a = rand_uniform({5}, g, DType::f32).to_vector();  // blocks 0..1
    std::vector<double> b = rand_uniform({6}, g, DType::f32).to_vector();  // starts at block 2
    for (size_t i = 0; i < 5; ++i) EXPECT_EQ(a[i], one[i]);
    EXPECT_NE(b[0], one[5]);
    for (size_t i = 0; i < 6; ++i) EXPECT_EQ(b[i], one[8 + i]);
  }
  Generator whole64(seed);
  std::vector<double> one64 = rand_uniform({20}, whole64, DType::f64).to_vector();
  {
    Generator g(seed);
    std::vector<double> a = rand_uniform({3}, g, DType::f64).to_vector();  // blocks 0..1
    std::vector<double> b = rand_uniform({4}, g, DType::f64).to_vector();  // starts at element 4
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(a[i], one64[i]);
    for (size_t i = 0; i < 4; ++i) EXPECT_EQ(b[i], one64[4 + i]);
  }
  // The shape does not matter, only the element count: (4, 5) is the same stream as (20,).
  Generator g(seed);
  EXPECT_EQ(rand_uniform({4, 5}, g, DType::f64).to_vector(), one64);
}

TEST(PhiloxStream, UniformNeverReturnsTheUpperBound) {
  // Seed 42, block 3135530, lane 0 holds 0xffffff in its top 24 bits: the largest f32 unit value
  // 1 - 2^-24. Scaled into [1, 2), 1 + (1 - 2^-24) is a tie between 2 - 2^-23 and 2.0f and rounds
  // to even, 2.0f; the result must still lie below the upper bound.
  const uint64_t seed = 42, block = 3135530;
  ASSERT_EQ(philox_uniform_f32(seed, block, 0), 1.0f - 1.0f / 16777216.0f);
  Generator g(seed, block);
  Tensor t = rand_uniform({4}, g, DType::f32, 1.0, 2.0);
  EXPECT_LT(t.at({0}), 2.0);
  EXPECT_GE(t.at({0}), 1.0);
  EXPECT_EQ(t.at({0}), 2.0 - std::ldexp(1.0, -23));  // the largest f32 below 2
  // The other lanes are unaffected by the guard.
  for (int64_t i = 1; i < 4; ++i)
    EXPECT_EQ(t.at({i}), static_cast<double>(1.0f + philox_uniform_f32(seed, block, i)));
}

TEST(PhiloxStream, RejectsNonFloatDtypes) {
  Generator g(1);
  try {
    rand_uniform({2}, g, DType::i64);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rand_uniform"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("i64"), std::string::npos) << e.what();
  }
  EXPECT_THROW(rand_normal({2}, g, DType::i64), Error);
  EXPECT_EQ(g.offset, 0u);  // a refused draw consumes nothing
}

// ------------------------------------------------------------------ statistics

struct Moments {
  double mean = 0, var = 0, min = 0, max = 0;
  double within_one = 0;  // fraction with |x - center| < half_width (set by the caller)
};

Moments moments(const Tensor& t, double center, double half_width) {
  std::vector<double> v = t.to_vector();
  Moments m;
  m.min = m.max = v[0];
  double s = 0;
  for (double x : v) {
    s += x;
    m.min = std::min(m.min, x);
    m.max = std::max(m.max, x);
  }
  m.mean = s / static_cast<double>(v.size());
  double ss = 0, inside = 0;
  for (double x : v) {
    ss += (x - m.mean) * (x - m.mean);
    if (std::abs(x - center) < half_width) inside += 1;
  }
  m.var = ss / static_cast<double>(v.size() - 1);
  m.within_one = inside / static_cast<double>(v.size());
  return m;
}

// Tolerances are 6 standard errors of each estimate over n = 1e6 draws, so an honest generator
// fails with probability ~1e-9 per check; every check is deterministic for the fixed seeds anyway.
constexpr int64_t kDraws = 1000000;
constexpr double kSigmas = 6.0;

TEST(PhiloxStatistics, UniformMeanVarianceRange) {
  const double n = static_cast<double>(kDraws);
  for (DType dt : {DType::f32, DType::f64}) {
    const double lo = -2.0, hi = 3.0, w = hi - lo;
    Generator g(dt == DType::f32 ? 11 : 12);
    Moments m = moments(rand_uniform({kDraws}, g, dt, lo, hi), 0.5, 1.25);
    // U(lo, hi): mean (lo+hi)/2, variance w^2/12; Var of the sample mean w^2/(12n); the variance
    // estimate's standard error is sqrt((mu4 - sigma^4)/n) with mu4 = w^4/80.
    const double var = w * w / 12.0;
    EXPECT_NEAR(m.mean, (lo + hi) / 2, kSigmas * std::sqrt(var / n)) << dtype_name(dt);
    EXPECT_NEAR(m.var, var, kSigmas * std::sqrt((std::pow(w, 4) / 80 - var * var) / n))
        << dtype_name(dt);
    EXPECT_GE(m.min, lo);
    EXPECT_LT(m.max, hi);
    // The extremes are approached: 1e6 draws leave gaps of order w/n at both ends.
    EXPECT_LT(m.min, lo + 1e-4 * w);
    EXPECT_GT(m.max, hi - 1e-4 * w);
    // P(|x - 0.5| < 1.25) = 2.5/5 = 0.5 (a check on the shape, not only the moments).
    EXPECT_NEAR(m.within_one, 0.5, kSigmas * std::sqrt(0.25 / n)) << dtype_name(dt);
  }
}

TEST(PhiloxStatistics, NormalMeanVarianceTails) {
  const double n = static_cast<double>(kDraws);
  for (DType dt : {DType::f32, DType::f64}) {
    const double mu = 1.5, sigma = 2.0;
    Generator g(dt == DType::f32 ? 21 : 22);
    Moments m = moments(rand_normal({kDraws}, g, dt, mu, sigma), mu, sigma);
    // Sample mean SE sigma/sqrt(n); variance estimate SE sigma^2 sqrt(2/n) (mu4 = 3 sigma^4).
    EXPECT_NEAR(m.mean, mu, kSigmas * sigma / std::sqrt(n)) << dtype_name(dt);
    EXPECT_NEAR(m.var, sigma * sigma, kSigmas * sigma * sigma * std::sqrt(2.0 / n))
        << dtype_name(dt);
    // P(|z| < 1) = erf(1/sqrt 2) = 0.682689...
    const double p = std::erf(1.0 / std::sqrt(2.0));
    EXPECT_NEAR(m.within_one, p, kSigmas * std::sqrt(p * (1 - p) / n)) << dtype_name(dt);
    // Finite values; with 1e6 draws the extreme |z| is about 5 and P(|z| > 6.5) ~ 8e-11 per draw.
    EXPECT_TRUE(std::isfinite(m.min) && std::isfinite(m.max));
    EXPECT_GT((m.max - mu) / sigma, 3.5);
    EXPECT_LT((m.max - mu) / sigma, 6.5);
    EXPECT_LT((m.min - mu) / sigma, -3.5);
    EXPECT_GT((m.min - mu) / sigma, -6.5);
  }
}

TEST(PhiloxStatistics, EvenAndOddNormalsAreUncorrelated) {
  // Box-Muller's cos and sin halves of one pair are independent; a bug that reused one uniform for
  // both would correlate them.
  Generator g(31);
  std::vector<double> v = rand_normal({kDraws}, g, DType::f64).to_vector();
  double sxy = 0;
  for (size_t i = 0; i + 1 < v.size(); i += 2) sxy += v[i] * v[i + 1];
  const double pairs = static_cast<double>(v.size() / 2);
  EXPECT_NEAR(sxy / pairs, 0.0, kSigmas / std::sqrt(pairs));
}

}  // namespace
}  // namespace gradus
