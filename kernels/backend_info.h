// What the compiled backends are, for `gradus info` and the benchmark headers.
#pragma once

#include <cstdint>
#include <string>

namespace gradus::kernels {

std::string blas_description();  // e.g. "OpenBLAS 0.3.21 (OpenMP build) Haswell MAX_THREADS=64"
int cpu_threads();               // the OpenMP thread count Gradus's CPU kernels use
void set_cpu_threads(int n);  // sets it for Gradus and BLAS alike (one pool: see docs/threads.md)
std::string cpu_model();      // from /proc/cpuinfo where available

// OpenMP's threads spin between parallel regions unless OMP_WAIT_POLICY says otherwise. With more
// runnable threads than cores (two runs on two cores, a loaded machine, ctest -j) the spinning
// threads take the cores from the working ones: measured 7x slower on a tiny run and 2x on the
// `small` benchmark on a loaded 2-core machine (docs/threads.md). libgomp reads its environment
// once, before main, so a program that wants the passive policy by default must restart itself
// with it set. This does so (execv of /proc/self/exe with the same arguments, OMP_WAIT_POLICY=
// PASSIVE) when neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set, and otherwise returns at once;
// it also returns when the restart fails. Call it first thing in main.
void use_passive_openmp_wait_by_default(char** argv);
// The wait policy this process runs with: "passive" or "active (spinning)", and where it comes
// from, for `gradus info`.
std::string openmp_wait_policy();
bool cuda_built();        // whether this build contains the CUDA backend
int cuda_device_count();  // GPUs usable now (0 without the backend, a driver or a device)
// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB (78.5 free), driver 13.0, runtime 13.0", or why
// there is none.
std::string cuda_description();

// What the host asked of the GPU since the process started: kernels launched (Gradus's own),
// library calls (cuBLAS products) and host synchronisations (a wait for the stream: a value read
// back, a checked index, a freed cache). On a launch-bound step these are the costs that matter:
// `gradus bench lm --device cuda` reports them per step. All zero without the CUDA backend.
struct CudaActivity {
  int64_t kernel_launches = 0;
  int64_t library_calls = 0;
  int64_t host_syncs = 0;
};
CudaActivity cuda_activity();

}  // namespace gradus::kernels
