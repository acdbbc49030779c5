// Which CUDA PNA aggregation kernel runs (kernels/cuda/pna.cu): GRADUS_PNA_KERNEL=reference forces
// the thread-per-row reference kernels (no cuBLAS, plainly the formulas of kernels/pna.h);
// "blocked" (the default, also when unset or empty) runs blocks of query rows through cuBLAS
// batched products. Anything else is an error naming the variable and the accepted values.
//
// The variable is read once, on the first launch, so a run cannot change kernels half-way; a test
// that compares both kernels sets it and calls reload_pna_kernel_choice(). Header-only (no CUDA),
// so tests compile it in every build; the inline function's static is one object program-wide.
#pragma once

#include <atomic>
#include <cstdlib>
#include <string_view>

#include "core/error.h"

namespace gradus::kernels {

enum class PnaKernelChoice { reference, blocked };

// value: the variable's text, nullptr when unset.
inline PnaKernelChoice parse_pna_kernel_choice(const char* value) {
  const std::string_view v = value == nullptr ? std::string_view() : std::string_view(value);
  if (v.empty() || v == "blocked") return PnaKernelChoice::blocked;
  if (v == "reference") return PnaKernelChoice::reference;
  GRADUS_FAIL("GRADUS_PNA_KERNEL", "expected \"blocked\" or \"reference\", found \"{}\"", v);
}

namespace detail {
// -1: not read yet; otherwise a PnaKernelChoice.
inline std::atomic<int>& pna_kernel_slot() {
  static std::atomic<int> slot{-1};
  return slot;
}
}  // namespace detail

// Re-reads GRADUS_PNA_KERNEL (throws on a bad value, leaving the previous choice in force).
inline PnaKernelChoice reload_pna_kernel_choice() {
  const PnaKernelChoice c = parse_pna_kernel_choice(std::getenv("GRADUS_PNA_KERNEL"));
  detail::pna_kernel_slot().store(static_cast<int>(c), std::memory_order_relaxed);
  return c;
}

// The choice in force: the variable as read on first use.
inline PnaKernelChoice pna_kernel_choice() {
  const int c = detail::pna_kernel_slot().load(std::memory_order_relaxed);
  return c < 0 ? reload_pna_kernel_choice() : static_cast<PnaKernelChoice>(c);
}

}  // namespace gradus::kernels
