#include "experiments/lib/json_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "models/io/json_depth.h"

namespace gradus::experiments {

nlohmann::ordered_json read_json_document(const std::string& path, const std::string& who) {
  std::ifstream in(path, std::ios::binary);
  GRADUS_CHECK(in.good(), who, "cannot read {}: {}", path, std::strerror(errno));
  std::stringstream buffer;
  buffer << in.rdbuf();
  check_json_depth(buffer.str(), who, path);
  try {
    return nlohmann::ordered_json::parse(buffer.str(), /*cb=*/nullptr, /*allow_exceptions=*/true,
                                         /*ignore_comments=*/true);
  } catch (const nlohmann::ordered_json::exception& e) {
    // e.what() reads "[json.exception.parse_error.101] parse error at line 3, column 5: ..." or,
    // for a number too large for a double, "[json.exception.out_of_range.406] number overflow
    // parsing '1e999'": the bracketed prefix is dropped.
    std::string what = e.what();
    size_t at = what.find("] ");
    GRADUS_FAIL(who, "{} is not valid JSON: {}", path,
                at == std::string::npos ? what : what.substr(at + 2));
  }
}

}  // namespace gradus::experiments
