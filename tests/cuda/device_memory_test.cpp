// GPU memory and transfers: host <-> device round trips of every dtype (empty, one element, small,
// and more than two 8 MiB pinned staging chunks), strided copies both ways (transposed source or
// destination, expanded source), dtype conversion on the device (bf16 rounding bit for bit as the
// CPU's), fills of strided views, the caching allocator's statistics and reuse, a clear
// out-of-memory error, gradients through to_device back to a CPU leaf, and the error for operands
// on different devices.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "autodiff/ops/cross_entropy.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/embedding.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/shape.h"
#include "autodiff/ops/view.h"
#include "autodiff/tape.h"
#include "core/allocator.h"
#include "core/bfloat16.h"
#include "core/random.h"
#include "support/cuda.h"
#include "support/cuda_parity.h"
#include "support/expect_error.h"

namespace gradus {
namespace {

using testing::expect_error;
using testing::kCUDA;
using testing::PoisonGuard;

// A CPU tensor (n,) of `dtype` holding hashed bit patterns (every byte in play; for f32, f64 and
// bf16 also NaNs with payloads, infinities and subnormals, which a copy must keep bit for bit).
Tensor host_bits(int64_t n, DType dtype, uint64_t seed) {
  Tensor t = Tensor::empty({n}, dtype);
  auto* bytes = static_cast<unsigned char*>(t.raw_data());
  for (size_t i = 0; i < t.nbytes(); i += 8) {
    const uint64_t word = (static_cast<uint64_t>(i) + seed) * 0x9e3779b97f4a7c15ull;
    std::memcpy(bytes + i, &word, std::min<size_t>(8, t.nbytes() - i));
  }
  return t;
}

// Same shape, dtype and bytes (both contiguous CPU tensors).
void expect_same_bytes(const Tensor& a, const Tensor& b) {
  ASSERT_TRUE(a.device().is_cpu() && b.device().is_cpu());
  ASSERT_EQ(a.shape(), b.shape());
  ASSERT_EQ(a.dtype(), b.dtype());
  ASSERT_TRUE(a.is_contiguous() && b.is_contiguous());
  if (a.nbytes() == 0 || std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0) return;
  const auto* pa = static_cast<const unsigned char*>(a.raw_data());
  const auto* pb = static_cast<const unsigned char*>(b.raw_data());
  for (size_t i = 0; i < a.nbytes(); ++i)
    if (pa[i] != pb[i]) {
      ADD_FAILURE() << "first differing byte " << i << " of " << a.nbytes() << " ("
                    << a.describe() << "): " << int(pa[i]) << " vs " << int(pb[i]);
      return;
    }
}

// Elementwise equality of values (any devices and strides).
void expect_same_values(const Tensor& actual, const Tensor& expected) {
  EXPECT_TRUE(testing::all_close(actual, expected, testing::kExact));
}

TEST(CudaDeviceMemory, RoundTripsEveryDtypeAndSize) {
  GRADUS_REQUIRE_CUDA();
  // More than two 8 MiB staging chunks plus a partial one, in bytes divisible by every dtype size.
  const int64_t big_bytes = (int64_t{17} << 20) + 24;
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i64}) {
    for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{1000},
                      big_bytes / static_cast<int64_t>(dtype_size(dt))}) {
      SCOPED_TRACE(fmt::format("{} x {}", dtype_name(dt), n));
      Tensor host = host_bits(n, dt, 1234 + n);
      Tensor dev = raw_to_device(host, kCUDA);
      ASSERT_EQ(dev.device(), kCUDA);
      ASSERT_EQ(dev.dtype(), dt);
      ASSERT_EQ(dev.shape(), host.shape());
      Tensor back = raw_to_device(dev, kCPU);
      ASSERT_TRUE(back.device().is_cpu());
      expect_same_bytes(back, host);
      // Through to_device as well (the differentiable path), and a device -> device copy.
      expect_same_bytes(raw_to_device(raw_clone(to_device(host, kCUDA)), kCPU), host);
      // Element reads of a GPU tensor (to_vector, item) copy to the CPU.
      if (n <= 1000) expect_same_values(dev, host);
      if (n == 1) {
        const double a = dev.item(), b = host.item();
        EXPECT_TRUE(a == b || (std::isnan(a) && std::isnan(b))) << a << " vs " << b;
      }
    }
  }
}

TEST(CudaDeviceMemory, StridedCopiesBothWays) {
  GRADUS_REQUIRE_CUDA();
  PoisonGuard poison;  // an element a copy forgets is NaN
  Generator gen(77);
  // Small, and large enough (1031 x 2053 f32, 8.47 MB > 8 MiB) that the staging takes two chunks.
  for (auto [m, n] : {std::pair<int64_t, int64_t>{37, 53}, {1031, 2053}}) {
    SCOPED_TRACE(fmt::format("({}, {})", m, n));
    // Distinct exact values (m n < 2^24), so a misplaced element cannot go unnoticed.
    Tensor host = raw_view(Tensor::arange(m * n), {m, n}, {n, 1}, 0);
    // host -> device, transposed destination.
    Tensor dev_t = Tensor::empty({n, m}, DType::f32, kCUDA);
    raw_copy_(raw_transpose(dev_t, 0, 1), host);
    expect_same_values(raw_transpose(dev_t, 0, 1), host);
    // host -> device, transposed source.
    Tensor dev = Tensor::empty({n, m}, DType::f32, kCUDA);
    raw_copy_(dev, raw_transpose(host, 0, 1));
    expect_same_values(dev, raw_transpose(host, 0, 1));
    // device -> host, transposed source.
    Tensor host_out = Tensor::empty({n, m}, DType::f32);
    raw_copy_(host_out, raw_transpose(raw_to_device(host, kCUDA), 0, 1));
    expect_same_values(host_out, raw_transpose(host, 0, 1));
    // device -> host, transposed destination.
    Tensor host_t = Tensor::empty({n, m}, DType::f32);
    raw_copy_(raw_transpose(host_t, 0, 1), raw_to_device(host, kCUDA));
    expect_same_values(raw_transpose(host_t, 0, 1), host);
  }
  // Expanded (stride 0) sources: host -> device, device -> device, device -> host.
  Tensor row = rand_normal({1, 53}, gen);
  Tensor expected = raw_clone(raw_expand(row, {37, 53}));
  Tensor dev = Tensor::empty({37, 53}, DType::f32, kCUDA);
  raw_copy_(dev, raw_expand(row, {37, 53}));
  expect_same_values(dev, expected);
  Tensor dev2 = Tensor::empty({37, 53}, DType::f32, kCUDA);
  raw_copy_(dev2, raw_expand(raw_to_device(row, kCUDA), {37, 53}));
  expect_same_values(dev2, expected);
  Tensor host2 = Tensor::empty({37, 53}, DType::f32);
  raw_copy_(host2, raw_expand(raw_to_device(row, kCUDA), {37, 53}));
  expect_same_values(host2, expected);
  // device -> device between a sliced source and a transposed destination of another dtype.
  Tensor src = rand_normal({6, 20}, gen);
  Tensor dst = Tensor::empty({10, 6}, DType::f64, kCUDA);
  raw_copy_(raw_transpose(dst, 0, 1), raw_slice(raw_to_device(src, kCUDA), 1, 0, 20, 2));
  expect_same_values(raw_transpose(dst, 0, 1), raw_slice(src, 1, 0, 20, 2));
}

// f32 values where rounding to bf16 is delicate: ties (to even), just above and below ties,
// overflow to infinity, subnormals, signed zeros, infinities, NaN.
std::vector<float> delicate_floats() {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 1.00390625f /* 1 + 2^-8: tie, to 1 */,
                          1.01171875f /* 1 + 3 2^-8: tie, to 1 + 2^-6 */, 3.14159265f, 1.0f / 3,
                          std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                          3.3895314e38f /* largest bf16 */, std::numeric_limits<float>::min(),
                          std::numeric_limits<float>::denorm_min(), -1e-40f, 65504.0f, 1e30f,
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN()};
  for (float x : {1.00390625f, 1.01171875f, -2.0078125f}) {
    v.push_back(std::nextafter(x, 0.0f));
    v.push_back(std::nextafter(x, 10.0f * x));
  }
  return v;
}

// The bf16 bits of a CPU bf16 tensor.
std::vector<uint16_t> bf16_bits(const Tensor& t) {
  Tensor c = raw_contiguous(raw_to_device(t, kCPU));
  std::vector<uint16_t> out;
  for (int64_t i = 0; i < c.numel(); ++i) out.push_back(c.data<bfloat16>()[i].bits);
  return out;
}

// Bit for bit, except that a NaN need only be a NaN (the payload is the backend's own).
void expect_same_bf16(const Tensor& actual, const Tensor& expected) {
  const std::vector<uint16_t> a = bf16_bits(actual), e = bf16_bits(expected);
  ASSERT_EQ(a.size(), e.size());
  auto is_nan = [](uint16_t b) { return (b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0; };
  for (size_t i = 0; i < a.size(); ++i) {
    if (is_nan(e[i])) {
      EXPECT_TRUE(is_nan(a[i])) << "element " << i << ": 0x" << std::hex << a[i];
      continue;
    }
    EXPECT_EQ(a[i], e[i]) << "element " << i << ": 0x" << std::hex << a[i] << " vs 0x" << e[i];
  }
}

TEST(CudaDeviceMemory, DtypeConversionOnTheDeviceRoundsAsTheCpu) {
  GRADUS_REQUIRE_CUDA();
  Generator gen(99);
  std::vector<float> values = delicate_floats();
  // Random values over many binades.
  for (double x : rand_normal({4096}, gen, DType::f64).to_vector())
    values.push_back(static_cast<float>(x * std::pow(10.0, std::fmod(std::abs(x) * 97, 60) - 30)));
  const Tensor host = Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
  const Tensor host_bf16 = raw_to_dtype(host, DType::bf16);
  const Tensor dev = raw_to_device(host, kCUDA);

  // f32 -> bf16 on the device (contiguous, and through a strided view).
  expect_same_bf16(raw_to_dtype(dev, DType::bf16), host_bf16);
  const int64_t rows = host.numel() / 8;
  const Tensor host2d = raw_view(host, {rows, 8}, {8, 1}, 0);
  Tensor strided = Tensor::empty({8, rows}, DType::bf16, kCUDA);
  raw_copy_(strided, raw_transpose(raw_to_device(host2d, kCUDA), 0, 1));
  expect_same_bf16(strided, raw_to_dtype(raw_contiguous(raw_transpose(host2d, 0, 1)), DType::bf16));
  // bf16 -> f32 is exact; f32 -> bf16 -> f32 equals the CPU's round trip bit for bit.
  const Tensor round_trip = raw_to_dtype(raw_to_dtype(dev, DType::bf16), DType::f32);
  const Tensor host_round_trip = raw_to_dtype(host_bf16, DType::f32);
  expect_same_values(round_trip, host_round_trip);
  // f64 -> bf16 goes through f32 on both backends.
  const Tensor host64 = raw_to_dtype(host, DType::f64);
  expect_same_bf16(raw_to_dtype(raw_to_device(host64, kCUDA), DType::bf16), raw_to_dtype(host64, DType::bf16));
  // Conversions inside a transfer: host f32 -> device bf16, device bf16 -> host f32.
  Tensor dev_bf16 = Tensor::empty(host.shape(), DType::bf16, kCUDA);
  raw_copy_(dev_bf16, host);
  expect_same_bf16(dev_bf16, host_bf16);
  Tensor host_f32 = Tensor::empty(host.shape(), DType::f32);
  raw_copy_(host_f32, dev_bf16);
  expect_same_values(host_f32, host_round_trip);
  // f32 <-> f64 and i64 -> f32 on the device match the CPU's casts.
  expect_same_values(raw_to_dtype(dev, DType::f64), host64);
  const Tensor ids = Tensor::from_vector({-3, 0, 7, 1 << 24, (1 << 24) + 1, 123456789}, {6}, DType::i64);
  expect_same_values(raw_to_dtype(raw_to_device(ids, kCUDA), DType::f32), raw_to_dtype(ids, DType::f32));
}

TEST(CudaDeviceMemory, FillsStridedViews) {
  GRADUS_REQUIRE_CUDA();
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i64}) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor host = Tensor::zeros({6, 10}, dt);
    Tensor dev = Tensor::zeros({6, 10}, dt, kCUDA);
    for (const Tensor& t : {host, dev}) {
      raw_fill_(raw_slice(t, 1, 1, 10, 3), 2.5);                        // every third column
      raw_fill_(raw_transpose(raw_slice(t, 0, 4, 6), 0, 1), -7.0);     // the last two rows
      raw_fill_(raw_slice(raw_slice(t, 0, 0, 4, 2), 1, 0, 10, 9), 3.0);  // corners of rows 0, 2
    }
    expect_same_values(dev, host);
    expect_same_values(Tensor::full({1031}, 2.5, dt, kCUDA), Tensor::full({1031}, 2.5, dt));
  }
}

TEST(CudaDeviceMemory, AllocatorCountsAndReusesBlocks) {
  GRADUS_REQUIRE_CUDA();
  PoisonGuard no_poison(false);
  Allocator& alloc = allocator_for(DeviceType::cuda);
  alloc.empty_cache();  // no block of this size left over from other tests
  const int64_t n = (int64_t{3} << 20) / 4 + 5;  // 3 MiB + 20 bytes of f32
  const int64_t cls = static_cast<int64_t>(allocation_size_class(static_cast<size_t>(n) * 4));
  { Tensor warm = Tensor::empty({n}, DType::f32, kCUDA); }  // the runtime is up; one block cached
  const AllocatorStats s0 = alloc.stats();
  EXPECT_EQ(s0.bytes_cached, cls);
  {
    Tensor t = Tensor::empty({n}, DType::f32, kCUDA);
    const AllocatorStats s1 = alloc.stats();
    EXPECT_EQ(s1.bytes_in_use - s0.bytes_in_use, cls);
    EXPECT_EQ(s1.allocations, s0.allocations + 1);
    EXPECT_EQ(s1.system_allocations, s0.system_allocations) << "the cached block was not reused";
    EXPECT_EQ(s1.bytes_cached, s0.bytes_cached - cls);
    EXPECT_GE(s1.peak_bytes_in_use, s1.bytes_in_use);
    // A second block of the same size, while the first is held, needs the system.
    Tensor u = Tensor::empty({n}, DType::f32, kCUDA);
    const AllocatorStats s2 = alloc.stats();
    EXPECT_EQ(s2.bytes_in_use - s0.bytes_in_use, 2 * cls);
    EXPECT_EQ(s2.system_allocations, s0.system_allocations + 1);
  }
  const AllocatorStats s3 = alloc.stats();
  EXPECT_EQ(s3.bytes_in_use, s0.bytes_in_use);
  EXPECT_EQ(s3.frees, s0.frees + 2);
  EXPECT_EQ(s3.bytes_cached, s0.bytes_cached + cls);
  // Many same-size allocations in turn (a training step's steady state): no system allocation.
  for (int i = 0; i < 10; ++i) {
    Tensor t = Tensor::empty({n}, DType::f32, kCUDA);
  }
  EXPECT_EQ(alloc.stats().system_allocations, s3.system_allocations);
  // A CPU tensor does not touch the GPU's counters.
  { Tensor cpu = Tensor::empty({n}, DType::f32); }
  EXPECT_EQ(alloc.stats().allocations, s3.allocations + 10);
}

TEST(CudaDeviceMemory, OutOfMemoryIsAClearError) {
  GRADUS_REQUIRE_CUDA();
  const int64_t n = int64_t{1} << 48;  // 2^48 f32: 1 PiB
  expect_error([&] { Tensor::empty({n}, DType::f32, kCUDA); },
               {"out of memory", std::to_string(n * 4)});
  // The failure leaves the device usable.
  Tensor t = Tensor::full({1000}, 2.0, DType::f32, kCUDA);
  EXPECT_EQ(t.to_vector(), std::vector<double>(1000, 2.0));
}

TEST(CudaDeviceMemory, ToDeviceGradientsFlowBackToTheCpuLeaf) {
  GRADUS_REQUIRE_CUDA();
  Generator gen(5);
  Tensor x = rand_normal({3, 4}, gen);
  x.set_requires_grad(true);
  Tensor y = to_device(x, kCUDA);
  ASSERT_EQ(y.device(), kCUDA);
  ASSERT_TRUE(y.requires_grad());
  EXPECT_TRUE(to_device(y, kCUDA).same(y));  // already there: the tensor itself
  // sum(y * y) on the GPU: d/dx = 2 x, exact.
  backward(sum(mul(y, y)));
  ASSERT_TRUE(x.grad().defined());
  EXPECT_TRUE(x.grad().device().is_cpu()) << x.grad().describe();
  EXPECT_TRUE(testing::all_close(x.grad(), mul(x, Tensor::scalar(2.0)), testing::kExact));
  // CPU -> GPU -> CPU with a transposed view in between: the upstream gradient comes back as is.
  Tensor a = rand_normal({5, 2}, gen);
  a.set_requires_grad(true);
  Tensor b = to_device(transpose(to_device(a, kCUDA), 0, 1), kCPU);
  ASSERT_TRUE(b.device().is_cpu());
  Tensor v = rand_normal({2, 5}, gen);
  backward(b, v);
  EXPECT_TRUE(a.grad().device().is_cpu());
  EXPECT_TRUE(testing::all_close(a.grad(), raw_transpose(v, 0, 1), testing::kExact));
  // A GPU leaf keeps its gradient on the GPU.
  Tensor g = raw_to_device(rand_normal({4}, gen), kCUDA);
  g.set_requires_grad(true);
  backward(sum(to_device(g, kCPU)));
  EXPECT_EQ(g.grad().device(), kCUDA);
  EXPECT_EQ(g.grad().to_vector(), std::vector<double>(4, 1.0));
}

TEST(CudaDeviceMemory, OperandsOnDifferentDevicesAreAnError) {
  GRADUS_REQUIRE_CUDA();
  Generator gen(6);
  const Tensor cpu = rand_normal({2, 3}, gen);
  const Tensor gpu = raw_to_device(rand_normal({2, 3}, gen), kCUDA);
  expect_error([&] { add(cpu, gpu); }, {"add", "devices differ", "f32 (2, 3) cpu", "f32 (2, 3) cuda:0"});
  expect_error([&] { mul(gpu, cpu); }, {"mul", "devices differ", "cpu", "cuda:0"});
  expect_error([&] { matmul(gpu, raw_transpose(cpu, 0, 1)); }, {"matmul", "devices differ"});
  expect_error([&] { concat({cpu, gpu}, 0); }, {"concat", "devices differ"});
  expect_error([&] { where(cpu, gpu, gpu); }, {"where", "not on the device of the input"});
  const Tensor ids_cpu = Tensor::from_vector({0, 1}, {2}, DType::i64);
  expect_error([&] { embedding(gpu, ids_cpu); }, {"embedding", "different devices"});
  expect_error([&] { cross_entropy(gpu, ids_cpu); }, {"cross_entropy", "different devices"});
  expect_error([&] { index_select(gpu, 1, ids_cpu); }, {"index_select", "not on the device"});
}

}  // namespace
}  // namespace gradus
