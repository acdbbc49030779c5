#include <gtest/gtest.h>

#include "kernels/backend_info.h"

int main(int argc, char** argv) {
  // ctest runs several test processes at once: spinning OpenMP threads would starve each other.
  gradus::kernels::use_passive_openmp_wait_by_default(argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
