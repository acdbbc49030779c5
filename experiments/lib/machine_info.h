// The machine a run ran on, as `gradus info` prints it: written to machine.json in every run
// directory at the start of each session, and shown by `gradus report`.
#pragma once

#include <nlohmann/json.hpp>

namespace gradus::experiments {

inline constexpr const char* kMachineFile = "machine.json";

// {"gradus_version", "hostname", "cpu", "blas", "threads", "gpu"}.
nlohmann::json machine_info();

}  // namespace gradus::experiments
