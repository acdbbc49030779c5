#include "kernels/cuda/runtime.h"

#include <algorithm>
#include <cstdlib>
#include <mutex>

#include "core/error.h"

namespace gradus::cuda {

namespace {
struct Runtime {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cublasLtHandle_t cublas_lt = nullptr;
  cudaDeviceProp props{};
  int64_t* scratch_i64 = nullptr;
  double* scratch_f64 = nullptr;
};

// Created on first use and deliberately never destroyed: tensors in static storage may be freed
// after main() returns, when the CUDA runtime may already be shutting down.
Runtime& runtime() {
  static Runtime* rt = [] {
    require_device();
    auto* r = new Runtime();
    GRADUS_CUDA_CHECK(cudaSetDevice(0));
    GRADUS_CUDA_CHECK(cudaGetDeviceProperties(&r->props, 0));
    GRADUS_CUDA_CHECK(cudaStreamCreateWithFlags(&r->stream, cudaStreamNonBlocking));
    GRADUS_CUBLAS_CHECK(cublasCreate(&r->cublas));
    GRADUS_CUBLAS_CHECK(cublasSetStream(r->cublas, r->stream));
    // Deterministic by default: no atomics-based algorithms in cuBLAS reductions.
    GRADUS_CUBLAS_CHECK(cublasSetAtomicsMode(r->cublas, CUBLAS_ATOMICS_NOT_ALLOWED));
    GRADUS_CUBLAS_CHECK(cublasLtCreate(&r->cublas_lt));
    GRADUS_CUDA_CHECK(cudaMalloc(&r->scratch_i64, 64 * sizeof(int64_t)));
    GRADUS_CUDA_CHECK(cudaMalloc(&r->scratch_f64, 64 * sizeof(double)));
    return r;
  }();
  return *rt;
}

bool sync_after_launch() {
  static const bool on = [] {
    const char* v = std::getenv("GRADUS_CUDA_SYNC");
    return v != nullptr && v[0] != '\0' && v[0] != '0';
  }();
  return on;
}
}  // namespace

void throw_cuda_error(cudaError_t status, const char* expr, const char* file, int line) {
  GRADUS_FAIL("cuda", "{} failed at {}:{}: {}: {}", expr, file, line, cudaGetErrorName(status),
              cudaGetErrorString(status));
}

void throw_cublas_error(cublasStatus_t status, const char* expr, const char* file, int line) {
  GRADUS_FAIL("cublas", "{} failed at {}:{}: {} ({})", expr, file, line,
              cublasGetStatusName(status), cublasGetStatusString(status));
}

Activity& activity() {
  static Activity counters;
  return counters;
}

void check_launch(const char* kernel, const char* file, int line) {
  activity().kernel_launches.fetch_add(1, std::memory_order_relaxed);
  cudaError_t status = cudaGetLastError();
  if (status == cudaSuccess && sync_after_launch()) status = cudaStreamSynchronize(stream());
  if (status != cudaSuccess) [[unlikely]]
    GRADUS_FAIL("cuda", "kernel {} launched at {}:{} failed: {}: {}", kernel, file, line,
                cudaGetErrorName(status), cudaGetErrorString(status));
}

int device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no driver" status
      return 0;
    }
    return n;
  }();
  return count;
}

void require_device() {
  if (device_count() > 0) return;
  int n = 0;
  cudaError_t status = cudaGetDeviceCount(&n);
  GRADUS_FAIL("cuda",
              "no CUDA device is available ({}); use \"device\": \"cpu\" or run where a "
              "GPU is",
              status == cudaSuccess ? "the driver reports 0 devices" : cudaGetErrorString(status));
}

cudaStream_t stream() { return runtime().stream; }
void synchronize() {
  activity().host_syncs.fetch_add(1, std::memory_order_relaxed);
  GRADUS_CUDA_CHECK(cudaStreamSynchronize(stream()));
}
cublasHandle_t cublas() { return runtime().cublas; }
cublasLtHandle_t cublas_lt() { return runtime().cublas_lt; }
int sm_count() { return runtime().props.multiProcessorCount; }
const cudaDeviceProp& properties() { return runtime().props; }

int elementwise_blocks(int64_t n, int threads) {
  const int64_t needed = (n + threads - 1) / threads;
  const int64_t cap = static_cast<int64_t>(sm_count()) * 8;
  return static_cast<int>(std::max<int64_t>(1, std::min(needed, cap)));
}

int64_t* scratch_i64(int count) {
  GRADUS_CHECK(count <= 64, "cuda", "scratch request of {} values (at most 64)", count);
  return runtime().scratch_i64;
}
double* scratch_f64(int count) {
  GRADUS_CHECK(count <= 64, "cuda", "scratch request of {} values (at most 64)", count);
  return runtime().scratch_f64;
}

}  // namespace gradus::cuda
