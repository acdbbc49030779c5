// What every test that writes files needs: a fresh directory of its own under the system's
// temporary directory (named after the test and the process, so parallel ctest processes never
// share one), removed at the end, and small readers for what the code under test wrote.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace gradus::testing {

// <tmp>/gradus_<prefix>_<test name>_<pid>, empty. A parameterised test's name ("Name/0") has its
// '/' replaced, so that the directory is one level, removed whole.
inline std::filesystem::path fresh_test_dir(const std::string& prefix) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? info->name() : "test";
  std::replace(name.begin(), name.end(), '/', '_');
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() /
      ("gradus_" + prefix + "_" + name + "_" + std::to_string(static_cast<long>(::getpid())));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline nlohmann::json read_json(const std::filesystem::path& p) {
  return nlohmann::json::parse(read_text(p));
}

// A fixture whose dir_ is a fresh directory for each test (fresh_test_dir(prefix)).
class TempDirTest : public ::testing::Test {
 protected:
  explicit TempDirTest(std::string prefix) : prefix_(std::move(prefix)) {}
  void SetUp() override { dir_ = fresh_test_dir(prefix_); }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;

 private:
  std::string prefix_;
};

}  // namespace gradus::testing
