// The JSON nesting limit (models/io/json_depth.h) that keeps deeply nested files from overflowing
// the stack.
#include "models/io/json_depth.h"

#include <gtest/gtest.h>

#include <string>

#include "support/expect_error.h"

namespace gradus {
namespace {

TEST(JsonDepth, CountsArraysAndObjects) {
  EXPECT_EQ(json_nesting_depth("3"), 0);
  EXPECT_EQ(json_nesting_depth("[]"), 1);
  EXPECT_EQ(json_nesting_depth(R"({"a": [1, {"b": [2]}], "c": {}})"), 4);
  EXPECT_EQ(json_nesting_depth(std::string(1000, '[') + std::string(1000, ']')), 1000);
}

TEST(JsonDepth, IgnoresBracketsInStringsAndComments) {
  EXPECT_EQ(json_nesting_depth(R"({"[[[": "]]]{{{", "k": "a\"[[["})"), 1);
  EXPECT_EQ(json_nesting_depth("// [[[[\n{\"a\": 1} /* {{{{ */"), 1);
  // Unterminated strings and comments, and unbalanced closers, are counted without overrunning.
  EXPECT_EQ(json_nesting_depth("[\"abc"), 1);
  EXPECT_EQ(json_nesting_depth("[/* [[["), 1);
  EXPECT_EQ(json_nesting_depth("]]][["), 2);
  EXPECT_EQ(json_nesting_depth("[\"\\"), 1);
}

TEST(JsonDepth, CheckNamesWhereAndDepth) {
  check_json_depth(std::string(128, '['), "reader", "the file");  // at the limit: accepted
  testing::expect_error([] { check_json_depth(std::string(129, '{'), "reader", "'x.json'"); },
                        {"reader: 'x.json' nests arrays and objects 129 deep", "limit of 128"});
}

}  // namespace
}  // namespace gradus
