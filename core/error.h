// Errors: every failure is a gradus::Error whose message says which op or file, what was expected
// and what was found. Library code never calls exit() or abort().
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>
#include <string>

namespace gradus {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws Error("<where>: <message>") when cond is false. Arguments are only formatted on failure.
#define GRADUS_CHECK(cond, where, ...)                                                         \
  do {                                                                                         \
    if (!(cond)) [[unlikely]] {                                                                \
      throw ::gradus::Error(fmt::format("{}: {}", where, fmt::format(__VA_ARGS__)));            \
    }                                                                                          \
  } while (0)

#define GRADUS_FAIL(where, ...) \
  throw ::gradus::Error(fmt::format("{}: {}", where, fmt::format(__VA_ARGS__)))

}  // namespace gradus
