// Fuzz target: the word reader of the hardmax text experiments (models/hardmax/text.h) on an
// arbitrary e-mail or text. It accepts any bytes, so nothing may be thrown at all (an escaping
// exception ends the run as a crash). Checked: every
// word is 2 to 24 lower-case ASCII letters or digits, the words are distinct, at most max_words.
#include <set>
#include <string>
#include <string_view>

#include "fuzz/fuzz_support.h"
#include "models/hardmax/text.h"

namespace {

void check_words(const std::vector<std::string>& words, int64_t max_words) {
  if (static_cast<int64_t>(words.size()) > max_words)
    gradus::fuzz::finding("hardmax_text_fuzz", "more words than max_words");
  std::set<std::string> seen;
  for (const std::string& w : words) {
    if (w.size() < 2 || w.size() > 24 || !seen.insert(w).second)
      gradus::fuzz::finding("hardmax_text_fuzz", "bad or repeated word '" + w + "'");
    for (char c : w)
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
        gradus::fuzz::finding("hardmax_text_fuzz",
                              "word '" + w + "' has a character outside a-z0-9");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int64_t max_words = data[0] % 64;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  check_words(gradus::hardmax::email_words(text, max_words), max_words);
  check_words(gradus::hardmax::text_words(text, max_words), max_words);
  return 0;
}
