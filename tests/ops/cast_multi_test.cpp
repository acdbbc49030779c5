// kernels::kCastMulti on the CPU: each array converted bit for bit as a copy between the dtypes
// converts (raw_to_dtype), for every pair of floating dtypes, lists of 0 to 30 arrays of lengths 0
// to 70000 (above the threading threshold), and a refused destination dtype.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"
#include "kernels/copy.h"
#include "kernels/registry.h"

namespace gradus {
namespace {

// The storage of a contiguous tensor, byte for byte.
std::vector<unsigned char> bytes_of(const Tensor& t) {
  std::vector<unsigned char> out(t.nbytes());
  if (!out.empty()) std::memcpy(out.data(), t.raw_data(), out.size());
  return out;
}

TEST(CastMulti, EachArrayEqualsItsConversionBitForBit) {
  static const kernels::KernelRef<kernels::CastMultiFn> cast_multi(kernels::kCastMulti);
  const std::vector<int64_t> lengths = {0, 1, 7, 1000, 70000};
  for (DType from : {DType::f32, DType::f64, DType::bf16})
    for (DType to : {DType::f32, DType::f64, DType::bf16})
      for (int64_t count : {0, 1, 5, 30}) {
        SCOPED_TRACE(fmt::format("{} -> {}, {} arrays", dtype_name(from), dtype_name(to), count));
        Generator gen(static_cast<uint64_t>(count) + 7);
        std::vector<Tensor> sources, casts;
        std::vector<kernels::CastArray> arrays;
        for (int64_t i = 0; i < count; ++i) {
          const int64_t n = lengths[static_cast<size_t>(i) % lengths.size()];
          // Values spread over many binades, so the narrowing conversions round.
          Tensor x = raw_to_dtype(rand_normal({n}, gen, DType::f64, 0.0, 1e3), from);
          Tensor y = Tensor::empty({n}, to);
          arrays.push_back({x.raw_data(), y.raw_data(), n});
          sources.push_back(x);
          casts.push_back(y);
        }
        cast_multi(kCPU, from)(arrays.data(), count, to);
        for (int64_t i = 0; i < count; ++i)
          ASSERT_EQ(bytes_of(casts[i]), bytes_of(raw_to_dtype(sources[i], to))) << "array " << i;
      }
}

TEST(CastMulti, RefusesADestinationThatIsNotFloating) {
  static const kernels::KernelRef<kernels::CastMultiFn> cast_multi(kernels::kCastMulti);
  Tensor x = Tensor::ones({3}), y = Tensor::empty({3}, DType::i64);
  const kernels::CastArray a{x.raw_data(), y.raw_data(), 3};
  try {
    cast_multi(kCPU, DType::f32)(&a, 1, DType::i64);
    FAIL() << "i64 is not a destination";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot convert to i64: expected f32, f64 or bf16"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace gradus
