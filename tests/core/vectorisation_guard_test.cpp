// Guards against a compiler miscompilation seen with GCC 12 and AVX-512: a temporary
// std::vector<double>{2, 2, 2, 0} built in the caller arrived as {2, 2, 2, 2}. CMakeLists.txt turns
// AVX-512 off for GCC < 13; this test fails if that protection is lost on such a compiler.
#include <gtest/gtest.h>

#include "core/tensor.h"

namespace gradus {
namespace {

Tensor ids(const std::vector<double>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape, DType::i64);
}

TEST(TensorFactories, SmallInitializerListsSurviveVectorisation) {
  EXPECT_EQ(ids({2, 2, 2, 0}, {1, 4}).to_vector(), (std::vector<double>{2, 2, 2, 0}));
  EXPECT_EQ(ids({0, 2, 2, 2}, {4}).to_vector(), (std::vector<double>{0, 2, 2, 2}));
  EXPECT_EQ(ids({1, 1, 1, 1, 1, 1, 1, 0}, {8}).to_vector(),
            (std::vector<double>{1, 1, 1, 1, 1, 1, 1, 0}));
}

}  // namespace
}  // namespace gradus
