// The CUDA caching allocator: device memory in the size classes of the CPU allocator
// (core/allocator.h), kept on free and handed out again. All Gradus work runs in order on one
// stream (runtime.h), so a block freed by the host can be reused at once by the next kernel: the
// kernels that used it run before any that reuses it. Installed for DeviceType::cuda when this
// library loads; the device itself is touched on the first allocation only.
#include "core/allocator.h"

#include <map>
#include <mutex>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/runtime.h"

namespace gradus::cuda {
namespace {

class CudaCachingAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    require_device();
    stream();  // the runtime (device 0, stream, handles) exists before the first block
    const size_t cls = allocation_size_class(nbytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++stats_.allocations;
      auto it = free_blocks_.find(cls);
      if (it != free_blocks_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        stats_.bytes_cached -= static_cast<int64_t>(cls);
        note_in_use(cls);
        return p;
      }
      ++stats_.system_allocations;
    }
    void* p = nullptr;
    cudaError_t status = cudaMalloc(&p, cls);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      empty_cache();  // give every cached block back and try once more
      status = cudaMalloc(&p, cls);
    }
    if (status != cudaSuccess) {
      cudaGetLastError();
      size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      std::lock_guard<std::mutex> lock(mutex_);
      GRADUS_FAIL("cuda allocator",
                  "out of memory allocating {} ({} requested); Gradus has {} in use (peak {}), "
                  "{} cached; the device has {} free of {} ({})",
                  human_bytes(cls), nbytes, human_bytes(stats_.bytes_in_use),
                  human_bytes(stats_.peak_bytes_in_use), human_bytes(stats_.bytes_cached),
                  human_bytes(free_bytes), human_bytes(total_bytes), cudaGetErrorString(status));
    }
    std::lock_guard<std::mutex> lock(mutex_);
    note_in_use(cls);
    return p;
  }

  void deallocate(void* ptr, size_t nbytes) override {
    if (ptr == nullptr) return;
    const size_t cls = allocation_size_class(nbytes);
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.frees;
    stats_.bytes_in_use -= static_cast<int64_t>(cls);
    stats_.bytes_cached += static_cast<int64_t>(cls);
    free_blocks_[cls].push_back(ptr);
  }

  AllocatorStats stats() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_bytes_in_use = stats_.bytes_in_use;
  }

  void empty_cache() override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_blocks_.empty()) return;
    // Kernels queued before the free may still read a cached block: wait for them first.
    synchronize();
    for (auto& [cls, blocks] : free_blocks_) {
      for (void* p : blocks) GRADUS_CUDA_CHECK(cudaFree(p));
      stats_.bytes_cached -= static_cast<int64_t>(cls * blocks.size());
    }
    free_blocks_.clear();
  }

 private:
  void note_in_use(size_t cls) {
    stats_.bytes_in_use += static_cast<int64_t>(cls);
    stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
  }
  static std::string human_bytes(size_t n) {
    return n >= (1u << 20) ? fmt::format("{:.1f} MiB", n / 1048576.0) : fmt::format("{} bytes", n);
  }
  static std::string human_bytes(int64_t n) { return human_bytes(static_cast<size_t>(n)); }

  mutable std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_blocks_;
  AllocatorStats stats_;
};

// Deliberately leaked (see runtime.cpp): device tensors may outlive main().
const bool g_installed = [] {
  set_allocator(DeviceType::cuda, new CudaCachingAllocator());
  return true;
}();

}  // namespace
}  // namespace gradus::cuda
