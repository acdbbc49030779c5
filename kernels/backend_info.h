// What the compiled backends are, for `gradus info` and the benchmark headers.
#pragma once

#include <string>

namespace gradus::kernels {

std::string blas_description();   // e.g. "OpenBLAS 0.3.21 (OpenMP build) Haswell MAX_THREADS=64"
int cpu_threads();                // the OpenMP thread count Gradus's CPU kernels use
void set_cpu_threads(int n);      // sets it for Gradus and BLAS alike (one pool: see docs/threads.md)
std::string cpu_model();          // from /proc/cpuinfo where available
bool cuda_built();                // whether this build contains the CUDA backend
int cuda_device_count();          // GPUs usable now (0 without the backend, a driver or a device)
// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB (78.5 free), driver 13.0, runtime 13.0", or why
// there is none.
std::string cuda_description();

}  // namespace gradus::kernels
