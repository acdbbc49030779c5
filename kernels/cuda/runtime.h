// The CUDA runtime as Gradus uses it: error checks that name the call, file and line; the one
// stream all Gradus work runs on (in order, so a freed block can be reused at once); the cuBLAS
// handles; launch-size helpers. Included by kernels/cuda sources only (it needs the CUDA headers).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <string>

namespace gradus::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t status, const char* expr, const char* file,
                                   int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* expr, const char* file,
                                     int line);
// After a launch: the launch error, and with GRADUS_CUDA_SYNC=1 also the kernel's own error
// (a synchronisation after every launch, so an illegal access is reported at the kernel that made
// it).
void check_launch(const char* kernel, const char* file, int line);

// Checks every CUDA runtime call: on failure throws gradus::Error("cuda: <call> failed at
// file:line: <error name>: <error string>").
#define GRADUS_CUDA_CHECK(expr)                                                    \
  do {                                                                             \
    cudaError_t gradus_status_ = (expr);                                           \
    if (gradus_status_ != cudaSuccess) [[unlikely]]                                \
      ::gradus::cuda::throw_cuda_error(gradus_status_, #expr, __FILE__, __LINE__); \
  } while (0)
#define GRADUS_CUBLAS_CHECK(expr)                                                    \
  do {                                                                               \
    cublasStatus_t gradus_status_ = (expr);                                          \
    if (gradus_status_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                        \
      ::gradus::cuda::throw_cublas_error(gradus_status_, #expr, __FILE__, __LINE__); \
  } while (0)
// After every kernel launch: GRADUS_CUDA_CHECK_LAUNCH("softmax_forward");
#define GRADUS_CUDA_CHECK_LAUNCH(kernel) ::gradus::cuda::check_launch(kernel, __FILE__, __LINE__)

// Counts of what the host asked of the GPU (kernels::cuda_activity): check_launch counts a launch,
// synchronize() a host synchronisation, count_library_call() a cuBLAS product. Relaxed atomics: a
// counter costs a few nanoseconds beside a launch's microseconds.
struct Activity {
  std::atomic<int64_t> kernel_launches{0};
  std::atomic<int64_t> library_calls{0};
  std::atomic<int64_t> host_syncs{0};
};
Activity& activity();
inline void count_library_call() {
  activity().library_calls.fetch_add(1, std::memory_order_relaxed);
}

int device_count();       // 0 when there is no driver or no device (never throws)
void require_device();    // throws a clear error when device_count() == 0
cudaStream_t stream();    // the Gradus stream of cuda:0 (created on first use)
void synchronize();       // waits for the stream (every host wait goes through it: counted)
cublasHandle_t cublas();  // bound to stream()
cublasLtHandle_t cublas_lt();
int sm_count();
const cudaDeviceProp& properties();

// Launch geometry for elementwise kernels over n items: grid-stride loops with at most
// `blocks_per_sm` blocks per SM, so large tensors do not launch millions of blocks.
constexpr int kThreads = 256;
int elementwise_blocks(int64_t n, int threads = kThreads);

// A small device buffer for values a kernel reports back (a first bad index, a sum): read back
// with a synchronising copy.
int64_t* scratch_i64(int count);  // count <= 64; contents unspecified
double* scratch_f64(int count);   // count <= 64

}  // namespace gradus::cuda
