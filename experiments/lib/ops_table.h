// `gradus ops`: the op registry as a table (or JSON), with forward/backward support per backend and
// dtype, read from the kernel registry (so it reports what this build can actually run).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace gradus::experiments {

nlohmann::json ops_json();         // one object per op, sorted by name
std::string ops_table_text();      // aligned table for a terminal

}  // namespace gradus::experiments
