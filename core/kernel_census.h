// A census of the kernel calls a piece of work makes, by name: every registry kernel resolved for
// a call (kernels::KernelRef) and every tensor copy or fill of the core, while a census is open.
// On a GPU each call is at least one launch, so the census of one training step is its launch
// budget, and it is the same on the CPU (the same ops call the same kernels): `gradus bench lm
// --census` prints it, so launches can be found and removed on a machine without a GPU.
//
// Closed (the default) it costs one relaxed atomic load per call. Not for concurrent censuses: one
// process-wide table.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace gradus::census {

namespace detail {
inline std::atomic<bool>& open_flag() {
  static std::atomic<bool> open{false};
  return open;
}
void record(const char* name);
}  // namespace detail

// Counts one call of `name` (a string with static storage) when a census is open.
inline void count(const char* name) {
  if (detail::open_flag().load(std::memory_order_relaxed)) [[unlikely]]
    detail::record(name);
}

// Opens a census with every count at zero.
void open();
// Closes it and returns the counts, most frequent first (ties by name).
std::vector<std::pair<std::string, int64_t>> close();

}  // namespace gradus::census
