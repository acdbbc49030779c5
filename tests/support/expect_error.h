// Checks on gradus::Error messages, shared by the test files: a message must name the op, the
// shapes, what was expected and what was found.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "core/error.h"

namespace gradus::testing {

// Runs fn, which must throw gradus::Error; returns the message ("" and a test failure otherwise).
inline std::string error_message(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a gradus::Error";
  return "";
}

// fn must throw a gradus::Error whose message contains every string in `parts`.
inline void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  std::string msg = error_message(fn);
  for (const std::string& p : parts)
    EXPECT_NE(msg.find(p), std::string::npos) << "\"" << p << "\" not in: " << msg;
}

}  // namespace gradus::testing
