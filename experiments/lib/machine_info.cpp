#include "experiments/lib/machine_info.h"

#include <unistd.h>

#include "kernels/backend_info.h"

// CMakeLists.txt sets it from the project version; a build outside CMake says so.
#ifndef GRADUS_VERSION
#define GRADUS_VERSION "unknown"
#endif

namespace gradus::experiments {

nlohmann::json machine_info() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return {{"gradus_version", GRADUS_VERSION},  {"hostname", host},
          {"cpu", kernels::cpu_model()},       {"blas", kernels::blas_description()},
          {"threads", kernels::cpu_threads()}, {"gpu", kernels::cuda_description()}};
}

}  // namespace gradus::experiments
