#include "models/data/text_dataset.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "models/data/byte_tokenizer.h"

namespace gradus {

namespace {

// Copies the windows starting at starts[b] (relative to `base`) into a batch.
TokenBatch make_batch(const std::vector<int64_t>& tokens, int64_t base,
                      const std::vector<int64_t>& starts, int64_t context) {
  const int64_t b_count = static_cast<int64_t>(starts.size());
  TokenBatch batch{Tensor::empty({b_count, context}, DType::i64),
                   Tensor::empty({b_count, context}, DType::i64)};
  int64_t* x = batch.inputs.data<int64_t>();
  int64_t* y = batch.targets.data<int64_t>();
  for (int64_t b = 0; b < b_count; ++b) {
    const int64_t* w = tokens.data() + base + starts[b];
    for (int64_t t = 0; t < context; ++t) {
      x[b * context + t] = w[t];
      y[b * context + t] = w[t + 1];
    }
  }
  return batch;
}

std::string read_file_bytes(const std::string& path) {
  constexpr const char* kWhere = "TextDataset";
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    int err = errno;
    GRADUS_FAIL(kWhere, "cannot read '{}': {} (scripts/fetch-data downloads the text data sets)",
                path, std::strerror(err));
  }
  std::string bytes;
  char buf[1 << 16];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof(buf), f)) > 0) bytes.append(buf, got);
  bool failed = std::ferror(f) != 0;
  int err = errno;
  std::fclose(f);
  GRADUS_CHECK(!failed, kWhere, "reading '{}' failed: {}", path, std::strerror(err));
  return bytes;
}

}  // namespace

std::string_view split_name(Split split) { return split == Split::train ? "train" : "validation"; }

// ---------------------------------------------------------------- TextDataset

TextDataset TextDataset::from_file(const std::string& path, double val_fraction) {
  std::string bytes = read_file_bytes(path);
  GRADUS_CHECK(!bytes.empty(), "TextDataset", "'{}' is empty", path);
  ByteTokenizer tok;
  return TextDataset(tok.encode(bytes), val_fraction, tok.vocab_size(), path);
}

TextDataset::TextDataset(std::vector<int64_t> tokens, double val_fraction, int64_t vocab_size,
                         std::string source)
    : val_fraction_(val_fraction), vocab_size_(vocab_size), source_(std::move(source)) {
  constexpr const char* kWhere = "TextDataset";
  GRADUS_CHECK(val_fraction >= 0.0 && val_fraction < 1.0, kWhere,
               "'{}': val_fraction must lie in [0, 1), found {}", source_, val_fraction);
  GRADUS_CHECK(vocab_size > 0, kWhere, "'{}': vocab_size must be positive, found {}", source_,
               vocab_size);
  for (size_t i = 0; i < tokens.size(); ++i)
    GRADUS_CHECK(tokens[i] >= 0 && tokens[i] < vocab_size, kWhere,
                 "'{}': token {} at position {} is outside the vocabulary [0, {})", source_,
                 tokens[i], i, vocab_size);
  const int64_t n = static_cast<int64_t>(tokens.size());
  const auto val = static_cast<int64_t>(std::floor(static_cast<double>(n) * val_fraction));
  train_size_ = n - val;
  tokens_ = std::make_shared<const std::vector<int64_t>>(std::move(tokens));
}

int64_t TextDataset::size(Split split) const {
  return split == Split::train ? train_size_ : num_tokens() - train_size_;
}

std::span<const int64_t> TextDataset::tokens(Split split) const {
  return std::span<const int64_t>(*tokens_).subspan(static_cast<size_t>(begin(split)),
                                                    static_cast<size_t>(size(split)));
}

void TextDataset::check_window(const char* op, Split split, int64_t batch_size,
                               int64_t context) const {
  GRADUS_CHECK(batch_size > 0, op, "batch_size must be positive, found {}", batch_size);
  GRADUS_CHECK(context > 0, op, "context must be positive, found {}", context);
  GRADUS_CHECK(size(split) >= context + 1, op,
               "the {} split of '{}' holds {} tokens, too few for one window of context {} + 1 "
               "(val_fraction {})",
               split_name(split), source_, size(split), context, val_fraction_);
}

std::vector<int64_t> TextDataset::sample_starts(Split split, int64_t batch_size, int64_t context,
                                                const Generator& gen) const {
  check_window("TextDataset::sample", split, batch_size, context);
  const auto num_starts = static_cast<uint64_t>(size(split) - context);  // starts 0 .. size-T-1
  std::vector<int64_t> starts(static_cast<size_t>(batch_size));
  for (int64_t b = 0; b < batch_size; ++b) {
    PhiloxBlock r = philox_block(gen.seed, gen.offset + static_cast<uint64_t>(b));
    uint64_t bits = (static_cast<uint64_t>(r.v[1]) << 32) | r.v[0];
    // Multiply-shift maps 64 uniform bits onto [0, num_starts) without a division.
    starts[b] = static_cast<int64_t>((static_cast<unsigned __int128>(bits) * num_starts) >> 64);
  }
  return starts;
}

TokenBatch TextDataset::sample(Split split, int64_t batch_size, int64_t context,
                               Generator& gen) const {
  std::vector<int64_t> starts = sample_starts(split, batch_size, context, gen);
  gen.reserve(static_cast<uint64_t>(batch_size), 1);
  return make_batch(*tokens_, begin(split), starts, context);
}

SequentialWindows TextDataset::windows(Split split, int64_t batch_size, int64_t context) const {
  check_window("TextDataset::windows", split, batch_size, context);
  return SequentialWindows(tokens_, begin(split), batch_size, context, (size(split) - 1) / context);
}

// ---------------------------------------------------------------- SequentialWindows

SequentialWindows::SequentialWindows(std::shared_ptr<const std::vector<int64_t>> tokens,
                                     int64_t begin, int64_t batch_size, int64_t context,
                                     int64_t num_windows)
    : tokens_(std::move(tokens)),
      begin_(begin),
      batch_size_(batch_size),
      context_(context),
      num_windows_(num_windows) {}

bool SequentialWindows::next(TokenBatch& batch) {
  if (next_window_ >= num_windows_) return false;
  const int64_t count = std::min(batch_size_, num_windows_ - next_window_);
  std::vector<int64_t> starts(static_cast<size_t>(count));
  for (int64_t b = 0; b < count; ++b) starts[b] = (next_window_ + b) * context_;
  next_window_ += count;
  batch = make_batch(*tokens_, begin_, starts, context_);
  return true;
}

}  // namespace gradus
