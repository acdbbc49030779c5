// The evaluator of a hardmax net (models/hardmax/model.h) on many sequences at once: the forward
// pass that the builder uses while it adds blocks and that verification and `gradus classify` run.
//
// Layout: sequences are packed into chunks of about 2,048 tokens, each stored coordinate-major
// (x[c * n + i]), so that every loop over tokens vectorises while each token still sees exactly the
// arithmetic order of model.h (products and sums per token in coordinate order, no fused
// multiply-add). Chunks are independent and run on OpenMP threads; the results do not depend on the
// thread count.
//
// Work saved without changing a bit of the result:
//  - units whose directions agree up to sign share one dot product (dot(-a, x) = -dot(a, x)
//    exactly in round-to-nearest);
//  - a block whose FF directions equal the previous FF's reuses the dot products of tokens that
//    did not change since (the label blocks of a built net all share one direction);
//  - only tokens with an active unit are updated (units with value 0 are skipped by definition),
//    and a token is known inactive from one test per (direction, sign): rounding is monotone, so
//    sign * dot + b <= 0 for the largest b implies it for every b;
//  - after an SA with alpha = 1 a sequence whose tokens are all equal is kept as one token: every
//    later block maps equal tokens to equal tokens, and the mean of copies of a point is the point.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "models/hardmax/dataset.h"
#include "models/hardmax/model.h"

namespace gradus::hardmax {

// dot(a, x) in the model's order: ((0 + a_0 x_0) + a_1 x_1) + ...
template <class T>
inline T dot(const T* a, const T* x, int64_t d) {
  T acc = 0;
  for (int64_t c = 0; c < d; ++c) acc = acc + a[c] * x[c];
  return acc;
}

// A block's parameters in the arithmetic type T, arranged for the evaluator.
template <class T>
struct CompiledFF {
  int64_t width = 0;
  int64_t num_dirs = 0;
  std::vector<T> dirs;                 // (num_dirs, d): the distinct unit directions, up to sign
  std::vector<int32_t> dir_of;         // (width)
  std::vector<T> sign;                 // (width): +1 or -1, a_r = sign * dirs[dir_of[r]]
  std::vector<T> bias;                 // (width)
  std::vector<T> out;                  // (width, d)
  bool same_dirs_as_previous = false;  // dirs equal (bitwise) those of the previous FF
  // Units grouped by (direction, sign) with their largest bias: a token whose
  // sign * dot + max_bias <= 0 in every group has no active unit.
  struct Group {
    int32_t dir;
    T sign, max_bias;
  };
  std::vector<Group> groups;
};
template <class T>
struct CompiledSA {
  Scores scores = Scores::none;
  T alpha = 0, one_minus_alpha = 1;
  std::vector<T> q, k, matrix;
  bool q_is_k = false;
};
template <class T>
struct CompiledBlock {
  CompiledFF<T> ff;
  CompiledSA<T> sa;
};
template <class T>
struct CompiledNet {
  int64_t d = 0;
  std::vector<CompiledBlock<T>> blocks;
  std::vector<T> readout;
};

// Rounds every parameter to T (exact when T is the net's dtype).
template <class T>
CompiledBlock<T> compile_block(const Block& b, int64_t d,
                               const CompiledFF<T>* previous_ff = nullptr);
template <class T>
CompiledNet<T> compile(const Net& net);

// The state of every sequence of a dataset as blocks are applied.
template <class T>
class State {
 public:
  explicit State(const Dataset& data, int64_t chunk_tokens = 2048);

  int64_t d() const { return d_; }
  int64_t num_sequences() const { return num_sequences_; }
  int64_t num_rows() const;                     // tokens held now (fewer after a collapse)
  int64_t length(int64_t n) const;              // tokens held now for sequence n
  T at(int64_t n, int64_t i, int64_t c) const;  // coordinate c of token i of sequence n
  std::vector<T> token(int64_t n, int64_t i) const;
  // Overwrites the token at global row `row` (the builder's FF through its table of values).
  void set_row(int64_t row, const T* x);
  // Global row of token i of sequence n (dataset order while nothing collapsed).
  int64_t row(int64_t n, int64_t i) const;

  // Applies one block to every sequence (chunks in parallel). `ff_dots`, when given, holds
  // dot(dirs_0, token) for every row (the FF's one direction, as compiled): the builder has them
  // from choosing the direction, and they are exactly what the FF would compute.
  void apply(const CompiledBlock<T>& block, const std::vector<T>* ff_dots = nullptr);
  // Runs blocks [0, max_blocks) of `net` (all when max_blocks < 0), chunk by chunk: each chunk
  // stays in cache through every block.
  void run(const CompiledNet<T>& net, int64_t max_blocks = -1);
  // Whether apply() and project() may use OpenMP threads (run() always may). The builder turns it
  // off: its passes are a few milliseconds each, too short for a parallel region to pay, and on a
  // machine whose cores are shared every region waits for the slowest thread.
  void set_parallel(bool on) { parallel_ = on; }
  // dots of every token with each direction of `dirs` ((m, d)): proj[j * num_rows() + row].
  void project(const std::vector<T>& dirs, std::vector<T>& proj) const;
  // The final tokens, (total tokens of the dataset, d) row-major, sequences expanded back to their
  // lengths when they were kept as one token.
  std::vector<double> tokens() const;

 private:
  struct Chunk {
    int64_t seq0 = 0, seq1 = 0;
    std::vector<int64_t> offs;  // (seq1 - seq0 + 1) local token offsets
    int64_t n = 0;
    std::vector<T> x;  // (d, n), coordinate-major
    // FF dot products of the last FF applied, per direction, and which tokens changed since.
    std::vector<T> dots;
    std::vector<uint8_t> stale;
    int64_t dots_dirs = -1;
    // scratch
    std::vector<T> s, cq, mean, amean;
    std::vector<int32_t> active_list;
  };
  void apply_chunk(Chunk& ch, const CompiledBlock<T>& block, const T* ff_dots = nullptr);
  void project_chunk(const Chunk& ch, const std::vector<T>& dirs, std::vector<T>& proj,
                     int64_t stride) const;
  void update_rows();

  int64_t d_ = 0, num_sequences_ = 0;
  bool parallel_ = true;
  std::vector<int64_t> original_lengths_;
  std::vector<Chunk> chunks_;
  std::vector<int64_t> seq_chunk_;   // chunk of each sequence
  std::vector<int64_t> chunk_row0_;  // global row of each chunk's first token
};

// Classification of every sequence of `data` by `net`, run in arithmetic type `dtype` (the net's
// own dtype unless given): label = round(e . x_0) of the final first token.
struct Classification {
  std::vector<int64_t> predicted;  // (N)
  std::vector<double> readout;     // (N): e . x_0 before rounding
  int64_t correct = 0;
  double accuracy = 0.0;
  double readout_margin = 0.0;  // min over correct sequences of 0.5 - |e . x_0 - label|
  double seconds = 0.0;
};
Classification classify(const Net& net, const Dataset& data);
Classification classify(const Net& net, const Dataset& data, DType arithmetic);

// Final tokens of every sequence after blocks [0, max_blocks) (all when negative), in the net's
// dtype, as doubles ((total tokens, d)).
std::vector<double> forward_tokens(const Net& net, const Dataset& data, int64_t max_blocks = -1);

// A plain one-sequence, one-token-at-a-time implementation of the semantics in model.h, without
// any of the evaluator's shortcuts: x is (length, d) row-major in T, updated in place. The tests
// check the evaluator and the tape op against it bit for bit.
template <class T>
void reference_block(const Block& block, int64_t d, std::vector<T>& x);

}  // namespace gradus::hardmax
