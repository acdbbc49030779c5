#include "models/hardmax/text.h"

#include <cctype>
#include <cmath>
#include <unordered_set>

#include "models/hardmax/random.h"

namespace gradus::hardmax {

namespace {

void add_words(std::string_view text, int64_t max_words, std::vector<std::string>& out,
               std::unordered_set<std::string>& seen) {
  std::string w;
  auto flush = [&] {
    if (w.size() >= 2 && w.size() <= 24 && static_cast<int64_t>(out.size()) < max_words &&
        seen.insert(w).second)
      out.push_back(w);
    w.clear();
  };
  for (char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c < 128 && std::isalnum(c)) {
      w.push_back(static_cast<char>(std::tolower(c)));
    } else {
      flush();
    }
    if (static_cast<int64_t>(out.size()) >= max_words) return;
  }
  flush();
}

}  // namespace

std::vector<std::string> text_words(std::string_view text, int64_t max_words) {
  std::vector<std::string> out;
  std::unordered_set<std::string> seen;
  add_words(text, max_words, out, seen);
  return out;
}

std::vector<std::string> email_words(std::string_view message, int64_t max_words) {
  std::vector<std::string> out;
  std::unordered_set<std::string> seen;
  // Headers end at the first empty line (CRLF or LF).
  size_t body = message.find("\n\n");
  size_t crlf = message.find("\r\n\r\n");
  if (crlf != std::string_view::npos && (body == std::string_view::npos || crlf < body))
    body = crlf + 4;
  else if (body != std::string_view::npos)
    body += 2;
  else
    body = message.size();
  // The subject line first.
  for (size_t at = 0; at < body;) {
    size_t end = message.find('\n', at);
    if (end == std::string_view::npos || end > body) end = body;
    std::string_view line = message.substr(at, end - at);
    if (line.size() >= 8 && (line.substr(0, 8) == "Subject:" || line.substr(0, 8) == "subject:"))
      add_words(line.substr(8), max_words, out, seen);
    at = end + 1;
  }
  add_words(message.substr(body), max_words, out, seen);
  return out;
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

std::vector<double> embed_word(std::string_view word, int64_t d, uint64_t seed) {
  Rng rng(fnv1a(word) ^ (seed * 0x9e3779b97f4a7c15ull));
  std::vector<double> v(static_cast<size_t>(d));
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  for (double& x : v) x = scale * rng.normal();
  return v;
}

}  // namespace gradus::hardmax
