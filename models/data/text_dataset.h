// A token stream for next-token prediction, split into training and validation parts, with random
// training windows drawn from Philox and in-order evaluation windows.
//
// Split: the first (1 - val_fraction) of the tokens are the training split and the last
// floor(n * val_fraction) tokens the validation split (the end of the text, so the two never share
// a window and validation text is unseen). With the byte tokenizer a token is a byte, so the split
// is by bytes.
//
// Windows: a window starting at s holds the T + 1 tokens [s, s + T]; its inputs are tokens
// [s, s + T) and its targets tokens [s + 1, s + T] (each target is the token after its input).
// A window lies inside one split: it never crosses the end of its split.
//
// Data: scripts/fetch-data writes the whole of Moby Dick to data/moby_dick.txt; a small excerpt
// (the opening chapters) is committed as data-excerpts/moby_dick_excerpt.txt for the tests.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/philox.h"
#include "core/tensor.h"

namespace gradus {

enum class Split : uint8_t { train, validation };
std::string_view split_name(Split split);  // "train", "validation"

struct TokenBatch {
  Tensor inputs;   // (B, T) i64: tokens [s_b, s_b + T) of window b
  Tensor targets;  // (B, T) i64: tokens [s_b + 1, s_b + T], the inputs shifted by one
};

class TextDataset;

// Evaluation windows in order: window k starts at token k * T, so the inputs of consecutive
// windows do not overlap and every token after the first is a target exactly once, up to the last
// whole window (the last < T tokens of the split that do not fill one are left out). Batches hold B
// windows; the last batch holds the remainder. Keeps the tokens alive on its own.
class SequentialWindows {
 public:
  int64_t num_windows() const { return num_windows_; }
  int64_t num_batches() const { return (num_windows_ + batch_size_ - 1) / batch_size_; }
  // Fills `batch` with the next (up to B) windows; false, leaving `batch` alone, when none is left.
  bool next(TokenBatch& batch);
  void reset() { next_window_ = 0; }

 private:
  friend class TextDataset;
  SequentialWindows(std::shared_ptr<const std::vector<int64_t>> tokens, int64_t begin,
                    int64_t batch_size, int64_t context, int64_t num_windows);

  std::shared_ptr<const std::vector<int64_t>> tokens_;
  int64_t begin_ = 0;  // first token of the split
  int64_t batch_size_ = 1;
  int64_t context_ = 1;
  int64_t num_windows_ = 0;
  int64_t next_window_ = 0;
};

class TextDataset {
 public:
  // Reads the file at `path` as bytes and tokenises it with the byte tokenizer (vocabulary 256).
  // Throws gradus::Error naming the path when it cannot be read (suggesting scripts/fetch-data) or
  // is empty.
  static TextDataset from_file(const std::string& path, double val_fraction = 0.1);

  // From token ids already in memory, in [0, vocab_size). `source` names the data in messages.
  // val_fraction must lie in [0, 1).
  TextDataset(std::vector<int64_t> tokens, double val_fraction, int64_t vocab_size,
              std::string source = "tokens");

  const std::string& source() const { return source_; }
  int64_t vocab_size() const { return vocab_size_; }
  double val_fraction() const { return val_fraction_; }
  int64_t num_tokens() const { return static_cast<int64_t>(tokens_->size()); }
  int64_t size(Split split) const;                     // tokens in the split
  std::span<const int64_t> tokens(Split split) const;  // the split's tokens, in order

  // B windows of T + 1 tokens from `split` at independent uniform starts in [0, size - T - 1]
  // (within the split). Window b's start comes from the Philox block (gen.seed, gen.offset + b) by
  // a multiply-shift of 64 random bits (bias at most size / 2^64); gen advances by B blocks. The
  // same generator state always gives the same batch.
  // Throws naming the split when it holds fewer than T + 1 tokens.
  TokenBatch sample(Split split, int64_t batch_size, int64_t context, Generator& gen) const;

  // The window starts sample() would draw, without building the batch (for tests and logging).
  std::vector<int64_t> sample_starts(Split split, int64_t batch_size, int64_t context,
                                     const Generator& gen) const;

  // Non-overlapping evaluation windows of `split` (see SequentialWindows).
  SequentialWindows windows(Split split, int64_t batch_size, int64_t context) const;

 private:
  int64_t begin(Split split) const { return split == Split::train ? 0 : train_size_; }
  void check_window(const char* op, Split split, int64_t batch_size, int64_t context) const;

  std::shared_ptr<const std::vector<int64_t>> tokens_;
  double val_fraction_ = 0.0;
  int64_t vocab_size_ = 0;
  int64_t train_size_ = 0;
  std::string source_;
};

}  // namespace gradus
