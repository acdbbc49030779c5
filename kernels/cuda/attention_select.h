// Which CUDA attention kernel runs (kernels/cuda/attention.cu): GRADUS_ATTENTION_KERNEL=reference
// forces the one-warp-per-row reference kernels; "tiled" runs the flash-style SIMT tiled kernels
// where they apply (f32 and bf16 with D 64 or 128) and the reference elsewhere; "blocked" runs
// blocks of query rows through cuBLAS batched products (kernels/cuda/attention_blocked.h: tensor
// cores for bf16), any dtype and head size; "flash" (the default, also when unset or empty) runs
// the tensor-core flash kernels (kernels/cuda/attention_flash.h: bf16, D 64 or 128, sm_80 or later)
// where they apply and the blocked kernels everywhere else. Anything else is an error naming the
// variable and the accepted values. Flash is the default by measurement: on an H100 a medium bf16
// step ran 1.19-1.24x as fast as with the blocked kernels for std, lgt and egt, 1.12x for gin
// (docs/cuda.md, "Attention kernels on the H100").
//
// The variable is read once, on the first launch, so a run cannot change kernels half-way; a test
// that compares both kernels sets it and calls reload_attention_kernel_choice(). Header-only (no
// CUDA), so tests compile it in every build; the inline function's static is one object
// program-wide.
#pragma once

#include <atomic>
#include <cstdlib>
#include <string_view>

#include "core/error.h"

namespace gradus::kernels {

enum class AttentionKernelChoice { reference, tiled, blocked, flash };

// value: the variable's text, nullptr when unset.
inline AttentionKernelChoice parse_attention_kernel_choice(const char* value) {
  const std::string_view v = value == nullptr ? std::string_view() : std::string_view(value);
  if (v.empty() || v == "flash") return AttentionKernelChoice::flash;
  if (v == "blocked") return AttentionKernelChoice::blocked;
  if (v == "tiled") return AttentionKernelChoice::tiled;
  if (v == "reference") return AttentionKernelChoice::reference;
  GRADUS_FAIL("GRADUS_ATTENTION_KERNEL",
              "expected \"blocked\", \"flash\", \"tiled\" or \"reference\", found \"{}\"", v);
}

namespace detail {
// -1: not read yet; otherwise an AttentionKernelChoice.
inline std::atomic<int>& attention_kernel_slot() {
  static std::atomic<int> slot{-1};
  return slot;
}
}  // namespace detail

// Re-reads GRADUS_ATTENTION_KERNEL (throws on a bad value, leaving the previous choice in force).
inline AttentionKernelChoice reload_attention_kernel_choice() {
  const AttentionKernelChoice c =
      parse_attention_kernel_choice(std::getenv("GRADUS_ATTENTION_KERNEL"));
  detail::attention_kernel_slot().store(static_cast<int>(c), std::memory_order_relaxed);
  return c;
}

// The choice in force: the variable as read on first use.
inline AttentionKernelChoice attention_kernel_choice() {
  const int c = detail::attention_kernel_slot().load(std::memory_order_relaxed);
  return c < 0 ? reload_attention_kernel_choice() : static_cast<AttentionKernelChoice>(c);
}

}  // namespace gradus::kernels
