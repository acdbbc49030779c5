// Reading a JSON document a person wrote: descriptors, sweeps and pipelines share one reader, so
// they accept the same text (// and /* */ comments allowed) and fail the same way.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace gradus::experiments {

// The document at `path`, keys in file order. Throws gradus::Error from `who`, naming the file:
// "cannot read PATH: No such file or directory", "PATH is not valid JSON: parse error at line 3,
// column 5: ..." (also for a number beyond a double: "number overflow parsing '1e999'"), or a
// nesting deeper than models/io/json_depth.h allows.
nlohmann::ordered_json read_json_document(const std::string& path, const std::string& who);

}  // namespace gradus::experiments
