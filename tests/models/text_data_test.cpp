// Text data: the byte tokenizer (round trips, UTF-8 bytes, range errors) and TextDataset on the
// committed Moby Dick excerpt and on synthetic token streams whose values are their positions (so
// a window's contents reveal where it came from): split sizes, batch shapes and the one-token
// shift, determinism for a given generator state, different offsets giving different batches,
// windows that never cross the end of their split, and the in-order evaluation windows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "models/data/byte_tokenizer.h"
#include "models/data/text_dataset.h"

namespace gradus {
namespace {

namespace fs = std::filesystem;

template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

#define EXPECT_HAS(msg, text) EXPECT_NE((msg).find(text), std::string::npos) << (msg)

// The committed excerpt, found relative to this source file.
std::string excerpt_path() {
  return (fs::path(__FILE__).parent_path().parent_path().parent_path() / "data-excerpts" /
          "moby_dick_excerpt.txt")
      .string();
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<int64_t> row(const Tensor& t, int64_t b) {
  std::vector<int64_t> out(static_cast<size_t>(t.size(1)));
  const int64_t* p = t.data<int64_t>() + b * t.size(1);
  std::copy(p, p + t.size(1), out.begin());
  return out;
}

// Tokens 0, 1, ..., n-1: a window's values are its positions.
TextDataset counting_dataset(int64_t n, double val_fraction) {
  std::vector<int64_t> tokens(static_cast<size_t>(n));
  std::iota(tokens.begin(), tokens.end(), 0);
  return TextDataset(std::move(tokens), val_fraction, n, "counting");
}

// ------------------------------------------------------------------ tokenizer

TEST(ByteTokenizer, RoundTripsTheExcerptAndEveryByte) {
  ByteTokenizer tok;
  EXPECT_EQ(tok.vocab_size(), 256);
  std::string text = read_all(excerpt_path());
  ASSERT_GT(text.size(), 10000u);
  std::vector<int64_t> ids = tok.encode(text);
  ASSERT_EQ(ids.size(), text.size());
  for (int64_t id : ids) ASSERT_TRUE(id >= 0 && id < 256);
  EXPECT_EQ(tok.decode(ids), text);

  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::vector<int64_t> all_ids = tok.encode(all);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(all_ids[b], b);
  EXPECT_EQ(tok.decode(all_ids), all);
  EXPECT_TRUE(tok.encode("").empty());
}

TEST(ByteTokenizer, MultiByteCharactersAreTheirUtf8Bytes) {
  ByteTokenizer tok;
  // U+2014 EM DASH is E2 80 94 in UTF-8; 'A' is 0x41.
  EXPECT_EQ(tok.encode("A\u2014"), (std::vector<int64_t>{0x41, 0xE2, 0x80, 0x94}));
}

TEST(ByteTokenizer, DecodeRejectsIdsOutsideTheVocabulary) {
  ByteTokenizer tok;
  std::vector<int64_t> bad{65, 256};
  std::string msg = error_of([&] { tok.decode(bad); });
  EXPECT_HAS(msg, "id 256 at position 1");
  EXPECT_HAS(msg, "[0, 256)");
  std::vector<int64_t> negative{-1};
  EXPECT_HAS(error_of([&] { tok.decode(negative); }), "id -1 at position 0");
}

// ------------------------------------------------------------------ dataset

TEST(TextDataset, SplitSizesOnTheExcerpt) {
  std::string text = read_all(excerpt_path());
  const auto n = static_cast<int64_t>(text.size());
  for (double frac : {0.0, 0.1, 0.25, 0.5}) {
    TextDataset ds = TextDataset::from_file(excerpt_path(), frac);
    EXPECT_EQ(ds.num_tokens(), n);
    EXPECT_EQ(ds.vocab_size(), 256);
    const auto val = static_cast<int64_t>(std::floor(n * frac));
    EXPECT_EQ(ds.size(Split::validation), val) << frac;
    EXPECT_EQ(ds.size(Split::train), n - val) << frac;
    // Training is the beginning of the text, validation its end.
    ByteTokenizer tok;
    EXPECT_EQ(tok.decode(ds.tokens(Split::train)), text.substr(0, static_cast<size_t>(n - val)));
    EXPECT_EQ(tok.decode(ds.tokens(Split::validation)), text.substr(static_cast<size_t>(n - val)));
  }
}

TEST(TextDataset, BatchShapesAndShiftOnTheExcerpt) {
  TextDataset ds = TextDataset::from_file(excerpt_path(), 0.1);
  const int64_t B = 6, T = 48;
  for (Split split : {Split::train, Split::validation}) {
    Generator gen(1234, 17);
    std::vector<int64_t> starts = ds.sample_starts(split, B, T, gen);
    TokenBatch batch = ds.sample(split, B, T, gen);
    EXPECT_EQ(gen.offset, 17u + B);  // one Philox block per window
    EXPECT_EQ(batch.inputs.shape(), (Shape{B, T}));
    EXPECT_EQ(batch.targets.shape(), (Shape{B, T}));
    EXPECT_EQ(batch.inputs.dtype(), DType::i64);
    EXPECT_EQ(batch.targets.dtype(), DType::i64);
    auto tokens = ds.tokens(split);
    for (int64_t b = 0; b < B; ++b) {
      std::vector<int64_t> x = row(batch.inputs, b), y = row(batch.targets, b);
      const int64_t s = starts[b];
      ASSERT_GE(s, 0);
      ASSERT_LE(s + T, ds.size(split) - 1);
      for (int64_t t = 0; t < T; ++t) {
        EXPECT_EQ(x[t], tokens[s + t]);
        EXPECT_EQ(y[t], tokens[s + t + 1]);  // the next token
        if (t + 1 < T) {
          EXPECT_EQ(y[t], x[t + 1]);
        }
      }
    }
  }
}

TEST(TextDataset, SameGeneratorStateGivesTheSameBatch) {
  TextDataset ds = TextDataset::from_file(excerpt_path(), 0.1);
  Generator a(99, 5), b(99, 5);
  TokenBatch first = ds.sample(Split::train, 8, 32, a);
  TokenBatch second = ds.sample(Split::train, 8, 32, b);
  EXPECT_EQ(first.inputs.to_vector(), second.inputs.to_vector());
  EXPECT_EQ(first.targets.to_vector(), second.targets.to_vector());
  // Continuing from the advanced state gives new windows, the same for both.
  TokenBatch third = ds.sample(Split::train, 8, 32, a);
  EXPECT_NE(third.inputs.to_vector(), first.inputs.to_vector());
  EXPECT_EQ(ds.sample(Split::train, 8, 32, b).inputs.to_vector(), third.inputs.to_vector());
}

TEST(TextDataset, DifferentOffsetsAndSeedsDiffer) {
  TextDataset ds = TextDataset::from_file(excerpt_path(), 0.1);
  std::vector<int64_t> base = ds.sample_starts(Split::train, 16, 64, Generator(3, 0));
  std::vector<int64_t> other_offset = ds.sample_starts(Split::train, 16, 64, Generator(3, 16));
  std::vector<int64_t> other_seed = ds.sample_starts(Split::train, 16, 64, Generator(4, 0));
  EXPECT_NE(base, other_offset);
  EXPECT_NE(base, other_seed);
  // Offsets index Philox blocks: the batch at offset 1 is the batch at offset 0 moved by a window.
  std::vector<int64_t> shifted = ds.sample_starts(Split::train, 16, 64, Generator(3, 1));
  EXPECT_TRUE(std::equal(base.begin() + 1, base.end(), shifted.begin()));
  EXPECT_EQ(std::set<int64_t>(base.begin(), base.end()).size(), base.size());  // 16 of ~17k starts
}

TEST(TextDataset, WindowsNeverCrossTheEndOfTheirSplit) {
  // 40 tokens: train 0..29, validation 30..39. With T = 6 the train starts are 0..23 and the
  // validation starts 30..33.
  TextDataset ds = counting_dataset(40, 0.25);
  ASSERT_EQ(ds.size(Split::train), 30);
  ASSERT_EQ(ds.size(Split::validation), 10);
  const int64_t T = 6;
  struct Expect {
    Split split;
    int64_t first, last;  // token values a window may hold
  };
  for (Expect e : {Expect{Split::train, 0, 29}, Expect{Split::validation, 30, 39}}) {
    const int64_t num_starts = ds.size(e.split) - T;
    std::vector<int64_t> hits(static_cast<size_t>(num_starts), 0);
    Generator gen(42);
    const int64_t draws = 400;
    for (int64_t i = 0; i < draws; ++i) {
      TokenBatch batch = ds.sample(e.split, 20, T, gen);
      std::vector<double> x = batch.inputs.to_vector(), y = batch.targets.to_vector();
      for (size_t k = 0; k < x.size(); ++k) {
        ASSERT_GE(x[k], e.first);
        ASSERT_LE(y[k], e.last);  // the last target is at most the split's last token
        ASSERT_EQ(y[k], x[k] + 1);
      }
      for (int64_t b = 0; b < 20; ++b) ++hits[static_cast<size_t>(x[b * T] - e.first)];
    }
    // Every start is drawn, the first and the last included, about equally often.
    const double expected = static_cast<double>(draws * 20) / static_cast<double>(num_starts);
    for (int64_t s = 0; s < num_starts; ++s) {
      EXPECT_GT(hits[s], 0.75 * expected) << split_name(e.split) << " start " << s;
      EXPECT_LT(hits[s], 1.25 * expected) << split_name(e.split) << " start " << s;
    }
  }
  // A split of exactly T + 1 tokens has one window.
  TextDataset tight = counting_dataset(7, 0.0);
  Generator gen(8);
  TokenBatch only = tight.sample(Split::train, 3, 6, gen);
  EXPECT_EQ(only.inputs.to_vector(),
            (std::vector<double>{0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5}));
}

TEST(TextDataset, SequentialWindowsCoverTheSplitInOrder) {
  // 103 tokens, validation 20%: train 0..82 (83 tokens), validation 83..102 (20 tokens).
  TextDataset ds = counting_dataset(103, 0.2);
  ASSERT_EQ(ds.size(Split::train), 83);
  const int64_t B = 3, T = 8;
  SequentialWindows w = ds.windows(Split::train, B, T);
  EXPECT_EQ(w.num_windows(), (83 - 1) / T);  // 10 windows; tokens 81, 82 are left out
  EXPECT_EQ(w.num_batches(), 4);
  std::vector<double> inputs, targets;
  std::vector<int64_t> batch_sizes;
  TokenBatch batch;
  while (w.next(batch)) {
    EXPECT_EQ(batch.inputs.size(1), T);
    batch_sizes.push_back(batch.inputs.size(0));
    for (double v : batch.inputs.to_vector()) inputs.push_back(v);
    for (double v : batch.targets.to_vector()) targets.push_back(v);
  }
  EXPECT_EQ(batch_sizes, (std::vector<int64_t>{3, 3, 3, 1}));
  ASSERT_EQ(inputs.size(), 80u);
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_EQ(inputs[i], static_cast<double>(i));  // non-overlapping, in order, nothing skipped
    EXPECT_EQ(targets[i], static_cast<double>(i + 1));
  }
  EXPECT_FALSE(w.next(batch));
  w.reset();
  ASSERT_TRUE(w.next(batch));
  EXPECT_EQ(batch.inputs.at({0, 0}), 0);

  SequentialWindows v = ds.windows(Split::validation, 16, 4);
  EXPECT_EQ(v.num_windows(), (20 - 1) / 4);
  ASSERT_TRUE(v.next(batch));
  EXPECT_EQ(batch.inputs.shape(), (Shape{4, 4}));
  EXPECT_EQ(batch.inputs.at({0, 0}), 83);        // starts at the validation split
  EXPECT_EQ(batch.targets.at({3, 3}), 83 + 16);  // the last target inside the split
  EXPECT_FALSE(v.next(batch));
}

TEST(TextDataset, ErrorsNameTheProblem) {
  std::string missing = "no-such-dir/moby_dick.txt";
  std::string msg = error_of([&] { TextDataset::from_file(missing); });
  EXPECT_HAS(msg, missing);
  EXPECT_HAS(msg, "scripts/fetch-data");
  EXPECT_HAS(msg, std::strerror(ENOENT));

  EXPECT_HAS(error_of([&] { counting_dataset(10, 1.0); }), "val_fraction must lie in [0, 1)");
  EXPECT_HAS(error_of([&] { counting_dataset(10, -0.1); }), "val_fraction");
  EXPECT_HAS(error_of([] {
               TextDataset({1, 300}, 0.1, 256, "ids");
             }),
             "token 300 at position 1 is outside the vocabulary [0, 256)");

  TextDataset ds = counting_dataset(20, 0.0);
  Generator gen(0);
  msg = error_of([&] { ds.sample(Split::validation, 2, 4, gen); });
  EXPECT_HAS(msg, "the validation split of 'counting' holds 0 tokens");
  msg = error_of([&] { ds.sample(Split::train, 2, 20, gen); });
  EXPECT_HAS(msg, "holds 20 tokens, too few for one window of context 20 + 1");
  EXPECT_HAS(error_of([&] { ds.sample(Split::train, 0, 4, gen); }), "batch_size must be positive");
  EXPECT_HAS(error_of([&] { ds.windows(Split::train, 2, 0); }), "context must be positive");
  EXPECT_EQ(gen.offset, 0u);  // failed draws consume nothing
}

}  // namespace
}  // namespace gradus
