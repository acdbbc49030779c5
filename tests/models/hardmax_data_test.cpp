// JSON Lines datasets for the hardmax builder: round trip, and errors that name FILE:LINE.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "models/hardmax/dataset.h"
#include "models/hardmax/synthetic.h"
#include "support/expect_error.h"

namespace gradus::hardmax {
namespace {

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = (std::filesystem::temp_directory_path() / name).string();
  std::ofstream(path) << text;
  return path;
}

TEST(HardmaxData, ReadsJsonLines) {
  const std::string path = write_temp("hardmax_ok.jsonl",
                                      "{\"x\": [[1, 2], [3, 4.5]], \"y\": 1}\n\n"
                                      "{\"y\": -2, \"x\": [[0, -0.0]]}\n");
  const Dataset d = load_jsonl(path);
  std::remove(path.c_str());
  EXPECT_EQ(d.size(), 2);
  EXPECT_EQ(d.d, 2);
  EXPECT_EQ(d.labels, (std::vector<int64_t>{1, -2}));
  EXPECT_EQ(d.offsets, (std::vector<int64_t>{0, 2, 3}));
  EXPECT_EQ(d.tokens, (std::vector<double>{1, 2, 3, 4.5, 0, 0}));
  EXPECT_FALSE(std::signbit(d.tokens[5]));  // -0 is stored as +0: one bit pattern per point
}

TEST(HardmaxData, RoundTrips) {
  SyntheticSpec s;
  s.n = 20;
  const Dataset a = make_synthetic(s);
  const std::string path = (std::filesystem::temp_directory_path() / "hardmax_rt.jsonl").string();
  save_jsonl(a, path);
  const Dataset b = load_jsonl(path);
  std::remove(path.c_str());
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.offsets, b.offsets);
  EXPECT_EQ(a.labels, b.labels);
}

TEST(HardmaxData, BadLinesNameFileAndLine) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"{\"x\": [[1, 2]], \"y\": 0}\nnot json\n", {":2:", "not JSON"}},
      {"{\"x\": [[1, 2]]}\n", {":1:", "missing \"y\""}},
      {"{\"x\": [[1, 2]], \"y\": 0.5}\n", {":1:", "integer label", "0.5"}},
      {"{\"x\": [[1, 2]], \"y\": 0}\n{\"x\": [[1, 2, 3]], \"y\": 1}\n",
       {":2:", "expected 2 coordinates", "found 3"}},
      {"{\"x\": [], \"y\": 0}\n", {":1:", "at least one token"}},
      {"{\"x\": [[1, \"a\"]], \"y\": 0}\n", {":1:", "\"x\"[0][1]", "expected a number"}},
      {"{\"x\": [[1, 2]], \"y\": 0, \"z\": 1}\n", {":1:", "unknown key \"z\""}},
      {"[1, 2]\n", {":1:", "expected an object"}},
      {"{\"x\": [[1, 2]], \"y\": 5000000}\n", {":1:", "out of range"}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string path = write_temp(fmt::format("hardmax_bad_{}.jsonl", i), cases[i].first);
    auto parts = cases[i].second;
    parts.push_back(path);
    testing::expect_error([&] { load_jsonl(path); }, parts);
    std::remove(path.c_str());
  }
  testing::expect_error([] { load_jsonl("/nonexistent/hardmax.jsonl"); },
                        {"/nonexistent/hardmax.jsonl", "cannot open"});
}

TEST(HardmaxData, FindsConflictingPairs) {
  Dataset d;
  d.d = 1;
  d.add(std::vector<double>{1, 2}, 0);
  d.add(std::vector<double>{2, 1, 1}, 0);
  d.add(std::vector<double>{2, 2, 1}, 1);
  d.add(std::vector<double>{3}, 1);
  const auto c = find_label_conflicts(d);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].first, 0);
  EXPECT_EQ(c[0].second, 2);
}

}  // namespace
}  // namespace gradus::hardmax
