// Shared by the libFuzzer targets in tests/fuzz/ (built with -DGRADUS_FUZZ=ON, run by
// scripts/fuzz).
//
// The contract every loader promises (core/error.h): bad input is a gradus::Error that names the
// file and the problem. So a target treats gradus::Error as the expected outcome of hostile input,
// and anything else as a finding: a crash, a sanitizer report, or any other exception escaping.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <typeinfo>

#include "core/error.h"

namespace gradus::fuzz {

// A file in the temporary directory, unique to this process (libFuzzer's -jobs and -fork run
// several processes), holding exactly `data`. Loaders read paths, so the input goes through one.
inline std::string write_input(const uint8_t* data, size_t size, const std::string& suffix) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("gradus_fuzz_" + std::to_string(::getpid()) + suffix))
                               .string();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {  // the harness itself failed, not the code under test: stop loudly
    std::fprintf(stderr, "fuzz harness: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

// Stops the run (libFuzzer saves the input as a crash) when a property of a successful load fails.
[[noreturn]] inline void finding(const char* target, const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", target, what.c_str());
  std::abort();
}

// Runs `body`; a gradus::Error is the expected rejection of bad input, any other exception a
// finding (its type and message are printed before aborting).
template <class Body>
void expect_only_gradus_errors(const char* target, Body&& body) {
  try {
    body();
  } catch (const gradus::Error&) {
    // bad input, reported as promised
  } catch (const std::exception& e) {
    finding(target, std::string("an exception other than gradus::Error escaped (") +
                        typeid(e).name() + "): " + e.what());
  } catch (...) {
    finding(target, "a non-std exception escaped");
  }
}

}  // namespace gradus::fuzz
