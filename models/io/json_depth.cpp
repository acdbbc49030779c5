#include "models/io/json_depth.h"

#include <algorithm>

#include "core/error.h"

namespace gradus {

int64_t json_nesting_depth(std::string_view text) {
  int64_t depth = 0, deepest = 0;
  const size_t n = text.size();
  for (size_t i = 0; i < n; ++i) {
    const char c = text[i];
    if (c == '"') {  // a string: skip to its closing quote, over escapes
      for (++i; i < n && text[i] != '"'; ++i)
        if (text[i] == '\\') ++i;
    } else if (c == '/' && i + 1 < n && text[i + 1] == '/') {
      while (i < n && text[i] != '\n') ++i;
    } else if (c == '/' && i + 1 < n && text[i + 1] == '*') {
      const size_t end = text.find("*/", i + 2);
      i = end == std::string_view::npos ? n : end + 1;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      depth = std::max<int64_t>(depth - 1, 0);  // unbalanced text is the parser's to report
    }
  }
  return deepest;
}

void check_json_depth(std::string_view text, std::string_view where, std::string_view what,
                      int64_t limit) {
  const int64_t depth = json_nesting_depth(text);
  GRADUS_CHECK(depth <= limit, where,
               "{} nests arrays and objects {} deep, more than the limit of {} (real documents "
               "nest a few levels: is this the right file?)",
               what, depth, limit);
}

}  // namespace gradus
