// The kernel calls a piece of test work makes, by name (core/kernel_census.h), for tests that
// assert which kernels an op or a step runs.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "core/kernel_census.h"

namespace gradus::testing {

inline std::map<std::string, int64_t> census_of(const std::function<void()>& work) {
  census::open();
  work();
  std::map<std::string, int64_t> calls;
  for (const auto& [kernel, count] : census::close()) calls[kernel] = count;
  return calls;
}

}  // namespace gradus::testing
