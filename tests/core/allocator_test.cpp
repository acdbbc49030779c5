// core/allocator: size classes, the caching allocator's statistics (on a private instance, directly
// and through tensors) and the steady state of the global one: a loop that repeats the same shapes
// makes no system allocation after its first iteration.
#include "core/allocator.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/tape.h"
#include "core/tensor.h"

namespace gradus {
namespace {

bool aligned64(const void* p) { return reinterpret_cast<uintptr_t>(p) % 64 == 0; }

// Installs `a` as the CPU allocator for the scope. Tensors made in the scope must die in it.
struct CpuAllocatorScope {
  explicit CpuAllocatorScope(Allocator* a) { set_allocator(DeviceType::cpu, a); }
  ~CpuAllocatorScope() { set_allocator(DeviceType::cpu, nullptr); }
};

TEST(AllocatorSizeClass, Properties) {
  std::vector<size_t> requests;
  for (size_t n = 1; n <= 5000; ++n) requests.push_back(n);
  for (size_t p = 12; p <= 40; ++p)  // around every power of two up to 1 TiB
    for (size_t n : {(size_t{1} << p) - 1, size_t{1} << p, (size_t{1} << p) + 1,
                     (size_t{1} << p) + (size_t{1} << (p - 2)) + 3})
      requests.push_back(n);
  for (size_t n : requests) {
    const size_t c = allocation_size_class(n);
    ASSERT_GE(c, n) << n;
    ASSERT_EQ(c % 64, 0u) << n;
    if (n > 256) {  // at most 25% slack
      ASSERT_LE(c - n, n / 4) << n << " -> " << c;
    }
    ASSERT_EQ(allocation_size_class(c), c) << n;  // a class is its own class
  }
  size_t prev = 0;
  for (size_t n = 1; n <= 5000; ++n) {  // monotone
    ASSERT_GE(allocation_size_class(n), prev) << n;
    prev = allocation_size_class(n);
  }
  EXPECT_EQ(allocation_size_class(0), 64u);
  EXPECT_EQ(allocation_size_class(64), 64u);
  EXPECT_EQ(allocation_size_class(65), 128u);
  // Few classes: between 4 KiB and 8 KiB there are exactly four.
  std::vector<size_t> classes;
  for (size_t n = 4097; n <= 8192; ++n)
    if (classes.empty() || classes.back() != allocation_size_class(n))
      classes.push_back(allocation_size_class(n));
  EXPECT_EQ(classes.size(), 4u);
}

TEST(CpuCachingAllocator, StatsThroughDirectCalls) {
  CpuCachingAllocator a;
  const int64_t c100 = static_cast<int64_t>(allocation_size_class(100));
  const int64_t c5000 = static_cast<int64_t>(allocation_size_class(5000));
  void* p = a.allocate(100);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(aligned64(p));
  std::memset(p, 0xab, 100);  // the block is usable
  AllocatorStats s = a.stats();
  EXPECT_EQ(s.bytes_in_use, c100);
  EXPECT_EQ(s.peak_bytes_in_use, c100);
  EXPECT_EQ(s.bytes_cached, 0);
  EXPECT_EQ(s.allocations, 1);
  EXPECT_EQ(s.system_allocations, 1);

  void* q = a.allocate(5000);
  EXPECT_TRUE(aligned64(q));
  EXPECT_EQ(a.stats().bytes_in_use, c100 + c5000);
  EXPECT_EQ(a.stats().peak_bytes_in_use, c100 + c5000);

  a.deallocate(q, 5000);
  s = a.stats();
  EXPECT_EQ(s.bytes_in_use, c100);
  EXPECT_EQ(s.peak_bytes_in_use, c100 + c5000);  // the peak remembers
  EXPECT_EQ(s.bytes_cached, c5000);
  EXPECT_EQ(s.frees, 1);

  // Any request of the same class is served from the cache: same block, no system allocation.
  void* r = a.allocate(static_cast<size_t>(c5000) - 10);
  EXPECT_EQ(r, q);
  s = a.stats();
  EXPECT_EQ(s.system_allocations, 2);
  EXPECT_EQ(s.allocations, 3);
  EXPECT_EQ(s.bytes_cached, 0);

  a.reset_peak();
  EXPECT_EQ(a.stats().peak_bytes_in_use, c100 + c5000);  // reset to what is in use now
  a.deallocate(r, static_cast<size_t>(c5000) - 10);
  a.deallocate(p, 100);
  a.reset_peak();
  s = a.stats();
  EXPECT_EQ(s.bytes_in_use, 0);
  EXPECT_EQ(s.peak_bytes_in_use, 0);
  EXPECT_EQ(s.bytes_cached, c100 + c5000);

  a.empty_cache();
  EXPECT_EQ(a.stats().bytes_cached, 0);
  void* t = a.allocate(100);  // the cache is empty: back to the system
  EXPECT_EQ(a.stats().system_allocations, 3);
  a.deallocate(t, 100);
  a.deallocate(nullptr, 100);  // ignored
  EXPECT_EQ(a.stats().frees, 4);
}

TEST(CpuCachingAllocator, ManyBlocksAreDistinctAndAligned) {
  CpuCachingAllocator a;
  std::vector<void*> blocks;
  for (size_t n : {1, 63, 64, 65, 200, 257, 1000, 4096, 100000}) {
    void* p = a.allocate(n);
    EXPECT_TRUE(aligned64(p)) << n;
    std::memset(p, 1, n);
    blocks.push_back(p);
  }
  for (size_t i = 0; i < blocks.size(); ++i)
    for (size_t j = i + 1; j < blocks.size(); ++j) EXPECT_NE(blocks[i], blocks[j]);
  size_t k = 0;
  for (size_t n : {1, 63, 64, 65, 200, 257, 1000, 4096, 100000}) a.deallocate(blocks[k++], n);
  EXPECT_EQ(a.stats().bytes_in_use, 0);
}

TEST(CpuCachingAllocator, StatsThroughTensors) {
  CpuCachingAllocator a;
  const int64_t c_small = static_cast<int64_t>(allocation_size_class(10 * 10 * 4));  // f32 (10, 10)
  const int64_t c_big = static_cast<int64_t>(allocation_size_class(300 * 8));        // f64 (300,)
  {
    CpuAllocatorScope scope(&a);
    {
      Tensor x = Tensor::empty({10, 10});
      EXPECT_TRUE(aligned64(x.raw_data()));
      EXPECT_EQ(a.stats().bytes_in_use, c_small);
      {
        Tensor y = Tensor::zeros({300}, DType::f64);
        Tensor view = raw_transpose(x, 0, 1);  // a view allocates nothing
        EXPECT_EQ(a.stats().bytes_in_use, c_small + c_big);
        EXPECT_EQ(a.stats().allocations, 2);
      }
      EXPECT_EQ(a.stats().bytes_in_use, c_small);
      EXPECT_EQ(a.stats().bytes_cached, c_big);
      EXPECT_EQ(a.stats().peak_bytes_in_use, c_small + c_big);
    }
    EXPECT_EQ(a.stats().bytes_in_use, 0);
    EXPECT_EQ(a.stats().bytes_cached, c_small + c_big);
    EXPECT_EQ(a.stats().system_allocations, 2);
    // The same shapes again come from the cache.
    for (int i = 0; i < 5; ++i) {
      Tensor x = Tensor::ones({10, 10});
      Tensor y = Tensor::empty({300}, DType::f64);
      Tensor z = Tensor::empty({25, 4});  // same bytes as x: a second block of x's class
    }
    EXPECT_EQ(a.stats().system_allocations, 3);
    EXPECT_EQ(a.stats().allocations, 2 + 5 * 3);
    a.empty_cache();
    EXPECT_EQ(a.stats().bytes_cached, 0);
  }
  EXPECT_EQ(a.stats().bytes_in_use, 0);
}

TEST(CpuCachingAllocator, StorageReturnsToTheAllocatorThatMadeIt) {
  // A tensor that outlives a change of allocator must still be freed by the one that allocated
  // it, or both allocators' statistics (and caches) go wrong.
  CpuCachingAllocator a;
  Tensor survivor;
  {
    CpuAllocatorScope scope(&a);
    survivor = Tensor::zeros({1000});
  }
  const AllocatorStats global_before = allocator_for(DeviceType::cpu).stats();
  survivor = Tensor();
  const AllocatorStats global_after = allocator_for(DeviceType::cpu).stats();
  EXPECT_EQ(a.stats().bytes_in_use, 0);
  EXPECT_EQ(a.stats().frees, 1);
  EXPECT_EQ(global_after.frees, global_before.frees);
  EXPECT_EQ(global_after.bytes_in_use, global_before.bytes_in_use);
}

TEST(CpuCachingAllocator, GlobalSteadyStateMakesNoSystemAllocation) {
  // One "training step" on fixed shapes: forward with broadcasting, backward, gradient dropped.
  // After the first iteration every block it needs is cached, so later iterations never reach the
  // system allocator although they allocate as much as the first.
  Allocator& global = allocator_for(DeviceType::cpu);
  Tensor w = Tensor::full({64, 32}, 0.5, DType::f32).set_requires_grad(true);
  int64_t system_after_first = -1, allocations_after_first = -1, allocations_per_step = -1;
  for (int step = 0; step < 6; ++step) {
    const int64_t allocations_before = global.stats().allocations;
    {
      Tensor x = Tensor::full({16, 1, 32}, 0.25 + step, DType::f32);
      Tensor h = tanh(mul(x, w));  // (16, 64, 32)
      Tensor loss = sum(mul(h, h));
      backward(loss);
      ASSERT_EQ(w.grad().shape(), w.shape());
      w.zero_grad();
    }
    if (step == 0) {
      system_after_first = global.stats().system_allocations;
      allocations_after_first = global.stats().allocations;
      allocations_per_step = allocations_after_first - allocations_before;
    }
  }
  EXPECT_GT(allocations_per_step, 5);
  EXPECT_EQ(global.stats().allocations, allocations_after_first + 5 * allocations_per_step);
  EXPECT_EQ(global.stats().system_allocations, system_after_first);
}

}  // namespace
}  // namespace gradus
