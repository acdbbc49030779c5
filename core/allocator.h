// Allocators: a caching allocator per device type. The CPU one keeps freed blocks in size classes
// (four classes per power of two, so at most 25% of a block is slack) and hands them out again, so
// the steady state of a training step, where shapes repeat, makes no system allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "core/device.h"

namespace gradus {

struct AllocatorStats {
  int64_t bytes_in_use = 0;       // handed out and not yet returned (size-class bytes)
  int64_t peak_bytes_in_use = 0;  // maximum of bytes_in_use since the last reset_peak()
  int64_t bytes_cached = 0;       // returned blocks kept for reuse
  int64_t allocations = 0;        // allocate() calls
  int64_t system_allocations = 0; // allocate() calls the cache could not serve
  int64_t frees = 0;              // deallocate() calls
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  // Returns a block of at least nbytes, aligned to 64 bytes; never null (throws gradus::Error).
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
  virtual AllocatorStats stats() const = 0;
  virtual void reset_peak() = 0;
  virtual void empty_cache() = 0;  // gives cached blocks back to the system
};

// Rounds a request up to its size class: 64 bytes minimum, then four classes per power of two.
size_t allocation_size_class(size_t nbytes);

class CpuCachingAllocator final : public Allocator {
 public:
  ~CpuCachingAllocator() override;
  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;
  AllocatorStats stats() const override;
  void reset_peak() override;
  void empty_cache() override;

 private:
  mutable std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_blocks_;  // size class -> cached blocks
  AllocatorStats stats_;
};

// The allocator that owns memory on a device type. The CUDA backend installs its own at start-up.
Allocator& allocator_for(DeviceType type);
void set_allocator(DeviceType type, Allocator* allocator);

}  // namespace gradus
