// What the compiled backends are, for `gradus info` and the benchmark headers.
#pragma once

#include <string>

namespace gradus::kernels {

std::string blas_description();   // e.g. "OpenBLAS 0.3.21 (OpenMP build) Haswell MAX_THREADS=64"
int cpu_threads();                // the OpenMP thread count Gradus's CPU kernels use
void set_cpu_threads(int n);      // sets it for Gradus and BLAS alike (one pool: see docs/threads.md)
std::string cpu_model();          // from /proc/cpuinfo where available
bool cuda_built();                // whether this build contains the CUDA backend

}  // namespace gradus::kernels
