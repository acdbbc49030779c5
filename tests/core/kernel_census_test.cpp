// core/kernel_census.h: an open census counts the kernel calls of the work done while it is open,
// by name; a closed one counts nothing.
#include "core/kernel_census.h"

#include <gtest/gtest.h>

#include <map>

#include "autodiff/ops/matmul.h"
#include "core/tensor.h"

namespace gradus {
namespace {

std::map<std::string, int64_t> as_map(const std::vector<std::pair<std::string, int64_t>>& v) {
  return std::map<std::string, int64_t>(v.begin(), v.end());
}

TEST(KernelCensus, CountsTheCallsMadeWhileOpen) {
  const Tensor a = Tensor::ones({3, 4}), b = Tensor::ones({4, 5});
  const Tensor strided = raw_transpose(Tensor::ones({4, 3}), 0, 1);  // (3, 4), not contiguous
  census::open();
  const Tensor c = matmul(a, b);
  raw_fill_(c, 2.0);
  (void)raw_to_dtype(c, DType::f64);
  (void)raw_contiguous(strided);
  (void)raw_contiguous(a);  // already contiguous: no copy
  const auto counts = census::close();
  const auto m = as_map(counts);
  EXPECT_EQ(m.at("gemm"), 1);
  EXPECT_EQ(m.at("fill"), 1);
  EXPECT_EQ(m.at("copy (dtype conversion)"), 1);
  EXPECT_EQ(m.at("copy"), 1);
  EXPECT_EQ(counts.size(), 4u);
}

TEST(KernelCensus, CountsNothingWhileClosedAndStartsAtZero) {
  const Tensor x = Tensor::empty({2});
  census::open();
  raw_fill_(x, 1.0);
  raw_fill_(x, 1.0);
  EXPECT_EQ(as_map(census::close()).at("fill"), 2);
  raw_fill_(x, 1.0);  // closed
  census::open();
  raw_fill_(x, 1.0);
  const auto counts = census::close();
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts[0].first, "fill");
  EXPECT_EQ(counts[0].second, 1) << "a new census starts from zero; closed calls are not counted";
}

TEST(KernelCensus, ListsTheMostFrequentFirst) {
  const Tensor x = Tensor::empty({2});
  census::open();
  raw_fill_(x, 1.0);
  for (int i = 0; i < 3; ++i) (void)raw_to_dtype(x, DType::f64);
  const auto counts = census::close();
  ASSERT_EQ(counts.size(), 2u);
  EXPECT_EQ(counts[0].first, "copy (dtype conversion)");
  EXPECT_EQ(counts[0].second, 3);
  EXPECT_EQ(counts[1].first, "fill");
}

}  // namespace
}  // namespace gradus
