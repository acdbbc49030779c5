#include "models/data/byte_tokenizer.h"

#include "core/error.h"

namespace gradus {

std::vector<int64_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int64_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(std::span<const int64_t> ids) const {
  std::string text(ids.size(), '\0');
  for (size_t i = 0; i < ids.size(); ++i) {
    GRADUS_CHECK(ids[i] >= 0 && ids[i] < kVocabSize, "ByteTokenizer::decode",
                 "id {} at position {} is outside the byte vocabulary [0, {})", ids[i], i,
                 kVocabSize);
    text[i] = static_cast<char>(static_cast<unsigned char>(ids[i]));
  }
  return text;
}

}  // namespace gradus
