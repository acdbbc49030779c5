// `gradus info` and the test suite's view of the GPU.
#include <fmt/format.h>

#include "kernels/backend_info.h"
#include "kernels/cuda/runtime.h"

namespace gradus::kernels {

int cuda_device_count() { return cuda::device_count(); }

CudaActivity cuda_activity() {
  const cuda::Activity& a = cuda::activity();
  return {a.kernel_launches.load(std::memory_order_relaxed),
          a.library_calls.load(std::memory_order_relaxed),
          a.host_syncs.load(std::memory_order_relaxed)};
}

std::string cuda_description() {
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  auto version = [](int v) { return fmt::format("{}.{}", v / 1000, (v % 1000) / 10); };
  if (cuda::device_count() == 0)
    return fmt::format("built (runtime {}), but no CUDA device is available{}", version(runtime),
                       driver == 0 ? " (no driver)" : "");
  const cudaDeviceProp& p = cuda::properties();
  size_t free_bytes = 0, total_bytes = 0;
  GRADUS_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return fmt::format("{}, sm_{}{}, {} SMs, {:.1f} GiB ({:.1f} free), driver {}, runtime {}", p.name,
                     p.major, p.minor, p.multiProcessorCount, total_bytes / 1073741824.0,
                     free_bytes / 1073741824.0, version(driver), version(runtime));
}

}  // namespace gradus::kernels
