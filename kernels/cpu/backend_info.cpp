#include "kernels/backend_info.h"

#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

namespace gradus::kernels {

extern "C" char* openblas_get_config(void);

std::string blas_description() {
#ifdef GRADUS_OPENBLAS_OPENMP
  const char* build = " (OpenMP build: shares Gradus's thread pool)";
#else
  const char* build =
      " (not the OpenMP build: Gradus keeps it single-threaded inside its own parallel regions)";
#endif
  return std::string(openblas_get_config()) + build;
}

int cpu_threads() { return omp_get_max_threads(); }

void set_cpu_threads(int n) {
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

void use_passive_openmp_wait_by_default(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr) return;
  // Set before the exec, so that the restarted process returns above and never loops.
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  ::setenv("GRADUS_SET_OMP_WAIT_POLICY", "1", 1);
  ::execv("/proc/self/exe", argv);
  // The restart failed (no /proc): carry on with the runtime's default policy.
}

std::string openmp_wait_policy() {
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  if (policy == nullptr && spin == nullptr) return "active (spinning; the runtime's default)";
  std::string out = policy != nullptr ? std::string("OMP_WAIT_POLICY=") + policy : "";
  if (spin != nullptr) out += std::string(out.empty() ? "" : ", ") + "GOMP_SPINCOUNT=" + spin;
  const bool ours = std::getenv("GRADUS_SET_OMP_WAIT_POLICY") != nullptr;
  return out +
         (ours ? " (Gradus's default; set OMP_WAIT_POLICY to choose)" : " (from the environment)");
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

bool cuda_built() {
#ifdef GRADUS_WITH_CUDA
  return true;
#else
  return false;
#endif
}

#ifndef GRADUS_WITH_CUDA
int cuda_device_count() { return 0; }
CudaActivity cuda_activity() { return {}; }
std::string cuda_description() {
  return "not built in this binary (no nvcc when it was configured)";
}
#endif

}  // namespace gradus::kernels
