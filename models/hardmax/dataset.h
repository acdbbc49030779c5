// Labelled sequences of points in R^d: the input of the hardmax construction (models/hardmax/).
//
// A dataset holds N sequences of arbitrary lengths, packed: the tokens of sequence n are rows
// [offsets[n], offsets[n + 1]) of `tokens` (row-major, `d` doubles a row). Labels are integers.
//
// On disk: JSON Lines, one sequence per line, {"x": [[x_1, ..., x_d], ...], "y": LABEL}. Blank
// lines are skipped; every other line must parse, with the same d on every line, at least one
// token, finite coordinates and an integer label; a bad line is a gradus::Error naming FILE:LINE.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace gradus::hardmax {

// Labels must satisfy |y| <= kMaxLabel: the readout places class y at coordinate y along one axis
// (models/hardmax/model.h), and larger codes would lose the 0.5 rounding margin in f32.
inline constexpr int64_t kMaxLabel = 1000000;

struct Dataset {
  int64_t d = 0;
  std::vector<double> tokens;    // (total tokens, d), row-major
  std::vector<int64_t> offsets;  // (N + 1): sequence n is rows [offsets[n], offsets[n + 1])
  std::vector<int64_t> labels;   // (N)
  std::string source;            // for messages: a file name or a generator description

  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  int64_t num_tokens() const { return offsets.empty() ? 0 : offsets.back(); }
  int64_t length(int64_t n) const { return offsets[n + 1] - offsets[n]; }
  int64_t max_length() const;
  std::span<const double> token(int64_t row) const { return {tokens.data() + row * d, size_t(d)}; }
  // Appends one sequence: `x` holds length * d coordinates.
  void add(std::span<const double> x, int64_t label);
  // Throws naming `source` when the packing is inconsistent, d < 1, a sequence is empty, a
  // coordinate is not finite or a label is out of range.
  void validate() const;
};

// Reads a JSON Lines file (format above).
Dataset load_jsonl(const std::string& path);
// Writes one JSON line per sequence (coordinates in shortest round-trip form), atomically.
void save_jsonl(const Dataset& data, const std::string& path);

// Two sequences that the construction cannot separate: different labels, equal token *sets*.
struct LabelConflict {
  int64_t first = 0, second = 0;  // sequence indices (0-based; line numbers are index + 1 when
                                  // the data came from a file without blank lines)
};
// Every conflicting pair (up to `limit`). The hardmax transformer is permutation equivariant and
// blind to repetitions, so such a pair cannot be classified correctly by any such model.
std::vector<LabelConflict> find_label_conflicts(const Dataset& data, int64_t limit = 10);
// Throws a gradus::Error naming the first conflicting pairs (with their labels) when there is one.
void check_separable(const Dataset& data);

// The distinct points of the dataset: point_id[row] is the index of the row's point among the
// distinct ones (bitwise equality of the coordinates), numbered in order of first appearance.
struct PointIndex {
  std::vector<int64_t> point_id;  // (total tokens)
  int64_t num_points = 0;
};
PointIndex index_points(const Dataset& data);

}  // namespace gradus::hardmax
