// Small text helpers for error messages ("did you mean ...").
#pragma once

#include <cstddef>
#include <string>

namespace gradus {

// Levenshtein distance (insertions, deletions, substitutions each cost 1).
size_t edit_distance(const std::string& a, const std::string& b);

}  // namespace gradus
