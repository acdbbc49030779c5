// Deterministic faults for the tests of what survives a crash or a full disk. Timing a kill -9 to
// land inside a checkpoint write is luck; this hook puts it there on purpose.
//
//   GRADUS_FAULT_INJECT=ACTION:SUBSTRING:N
//
// acts on the N-th (from 1) atomic write (write_file_atomic) in this process of a file whose name
// (the last path component) contains SUBSTRING:
//   kill    the process raises SIGKILL after the temporary file is complete (written, flushed,
//           closed) and before it is renamed over the destination: the state a kill -9 or a power
//           cut leaves at the worst moment;
//   enospc  the write fails as on a full disk: write_file_atomic throws its usual error with
//           "No space left on device".
// The variable is read once, at the first atomic write; without it, each write costs one test of
// a flag. A malformed value is an error at every atomic write (a test must not pass because its
// fault was silently ignored).
#pragma once

#include <cstdint>
#include <string>

namespace gradus {

inline constexpr const char* kFaultInjectEnv = "GRADUS_FAULT_INJECT";

enum class FaultAction { none, kill, enospc };

struct FaultSpec {
  FaultAction action = FaultAction::none;
  std::string name_substring;  // matched against the file name, not the directory
  int64_t nth = 0;             // which matching write, from 1
};

// Parses "kill:SUBSTRING:N" or "enospc:SUBSTRING:N" (SUBSTRING non-empty and without ':', N >= 1).
// An empty text is no fault. Throws gradus::Error naming GRADUS_FAULT_INJECT, what was expected
// and what was found.
FaultSpec parse_fault_spec(const std::string& text);

// Called by write_file_atomic once per write, with the destination's file name: counts the writes
// that match GRADUS_FAULT_INJECT and returns the action for this one (none for every other).
FaultAction fault_for_atomic_write(const std::string& file_name);

}  // namespace gradus
