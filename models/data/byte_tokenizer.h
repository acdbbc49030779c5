// Byte-level tokenizer: every byte of the UTF-8 text is one token, so the vocabulary is the 256
// byte values, nothing is ever out of vocabulary, and decode(encode(s)) == s for any string.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gradus {

class ByteTokenizer {
 public:
  static constexpr int64_t kVocabSize = 256;
  int64_t vocab_size() const { return kVocabSize; }

  // One id in [0, 256) per byte of `text`.
  std::vector<int64_t> encode(std::string_view text) const;
  // The bytes with those values. Throws gradus::Error naming the position of an id outside
  // [0, 256). The result may be invalid UTF-8 when `ids` cuts a multi-byte character.
  std::string decode(std::span<const int64_t> ids) const;
};

}  // namespace gradus
