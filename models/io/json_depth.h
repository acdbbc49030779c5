// A nesting limit for JSON read from files. nlohmann::json parses any depth, but serialising or
// comparing a value recurses once per level, so text such as 300,000 '[' (a few hundred kB) would
// overflow the stack the first time an error message quotes the value. Readers of untrusted JSON
// (descriptors, safetensors headers, JSON Lines data) check the depth of the text before parsing.
#pragma once

#include <cstdint>
#include <string_view>

namespace gradus {

// serde_json's recursion limit, which the reference safetensors reader inherits: a file Hugging
// Face's tools read is never rejected here. Real documents nest a handful of levels.
inline constexpr int64_t kMaxJsonDepth = 128;

// The deepest nesting of arrays and objects in `text` (0 for a scalar). Brackets inside strings
// and inside // and /* */ comments do not count; the text need not be valid JSON.
int64_t json_nesting_depth(std::string_view text);

// Throws gradus::Error "<where>: <what> nests arrays and objects more than 128 deep (...)" when
// `text` nests deeper than `limit`.
void check_json_depth(std::string_view text, std::string_view where, std::string_view what,
                      int64_t limit = kMaxJsonDepth);

}  // namespace gradus
