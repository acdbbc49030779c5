// GPU tests: GRADUS_REQUIRE_CUDA() at the top of a test reports it SKIPPED (with the reason) where
// this build has no CUDA backend or the machine no GPU, never a silent pass.
#pragma once

#include <gtest/gtest.h>

#include "kernels/backend_info.h"

#define GRADUS_REQUIRE_CUDA()                                                           \
  do {                                                                                  \
    if (::gradus::kernels::cuda_device_count() == 0)                                    \
      GTEST_SKIP() << "needs a CUDA device; CUDA backend: "                             \
                   << ::gradus::kernels::cuda_description();                            \
  } while (0)

namespace gradus::testing {
inline constexpr Device kCUDA{DeviceType::cuda, 0};
}  // namespace gradus::testing
