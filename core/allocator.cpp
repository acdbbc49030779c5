#include "core/allocator.h"

#include <algorithm>
#include <bit>
#include <cstdlib>

#include "core/error.h"

namespace gradus {

size_t allocation_size_class(size_t nbytes) {
  if (nbytes <= 64) return 64;
  // Four classes per power of two: step = 2^(floor(log2(n)) - 2), rounded up to 64 bytes.
  size_t high = std::bit_floor(nbytes);
  size_t step = std::max<size_t>(high / 4, 64);
  return (nbytes + step - 1) / step * step;
}

CpuCachingAllocator::~CpuCachingAllocator() { empty_cache(); }

void* CpuCachingAllocator::allocate(size_t nbytes) {
  size_t cls = allocation_size_class(nbytes);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.allocations;
    stats_.bytes_in_use += static_cast<int64_t>(cls);
    stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
    auto it = free_blocks_.find(cls);
    if (it != free_blocks_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      stats_.bytes_cached -= static_cast<int64_t>(cls);
      return p;
    }
    ++stats_.system_allocations;
  }
  void* p = std::aligned_alloc(64, cls);
  if (p == nullptr) {
    // Give the cache back and try once more before reporting.
    empty_cache();
    p = std::aligned_alloc(64, cls);
  }
  if (p == nullptr) {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.bytes_in_use -= static_cast<int64_t>(cls);
    GRADUS_FAIL("cpu allocator", "out of memory allocating {} bytes ({} bytes already in use)",
                nbytes, stats_.bytes_in_use);
  }
  return p;
}

void CpuCachingAllocator::deallocate(void* ptr, size_t nbytes) {
  if (ptr == nullptr) return;
  size_t cls = allocation_size_class(nbytes);
  std::lock_guard<std::mutex> lock(mutex_);
  ++stats_.frees;
  stats_.bytes_in_use -= static_cast<int64_t>(cls);
  stats_.bytes_cached += static_cast<int64_t>(cls);
  free_blocks_[cls].push_back(ptr);
}

AllocatorStats CpuCachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CpuCachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_bytes_in_use = stats_.bytes_in_use;
}

void CpuCachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [cls, blocks] : free_blocks_) {
    for (void* p : blocks) std::free(p);
    stats_.bytes_cached -= static_cast<int64_t>(cls * blocks.size());
  }
  free_blocks_.clear();
}

namespace {
Allocator* g_allocators[kNumDeviceTypes] = {nullptr, nullptr};
}

Allocator& allocator_for(DeviceType type) {
  if (type == DeviceType::cpu) {
    // Deliberately leaked: tensors in static storage may be freed after main() returns.
    static CpuCachingAllocator* cpu = new CpuCachingAllocator();
    return g_allocators[0] ? *g_allocators[0] : *cpu;
  }
  Allocator* a = g_allocators[static_cast<int>(type)];
  GRADUS_CHECK(a != nullptr, "allocator", "no allocator for device type {}: this build has no {} backend",
               device_type_name(type), device_type_name(type));
  return *a;
}

void set_allocator(DeviceType type, Allocator* allocator) {
  g_allocators[static_cast<int>(type)] = allocator;
}

}  // namespace gradus
