// The constructive builder: labelled sequences in, a hardmax transformer that classifies every one
// of them exactly out (the construction of docs/hardmax.md, after Alcalde, Fantuzzi and Zuazua,
// "Exact Sequence Classification with Hardmax Transformers", arXiv 2502.02270).
//
//  1. shift: a random unit v; an FF translates every token so that v . x >= R > 0; then SA along v
//     (q = k = v) with alpha_s = 1 / (1 + 2 log2 N) pulls each sequence partway towards its
//     v-maximal token.
//  2. split: sequences are grouped by their v-maximal token (the leader). In rounds: every group
//     that holds two labels is split once. A token t that occurs in some but not all of its
//     sequences (the best split by Gini impurity, then the most balanced) is lifted above the
//     group's leader by a 4-unit "hat" FF along a direction a that isolates t from every other
//     token of the whole dataset (from the centroid towards t, perturbed if that fails; the gap
//     min |a . (p - t)| sets the hat's width). One block per split; the round's last block adds SA
//     along v with alpha_s, which pulls every group towards its own leader, so the images of a
//     token shared by two new subgroups part before either is split again.
//  3. collapse: SA along v with alpha = 1: every token becomes its sequence's leader.
//  4. labels: the K leaders, in ascending order along one direction a, each moved onto the code
//     point B a + y e of its label by one hat (exactly zero above its support, so codes already
//     placed and leaders still to come are untouched).
//  5. verify: the evaluator (models/hardmax/forward.h) runs every training sequence in the build
//     precision; anything but 100% (or a tie, or a gap too small for the precision) starts again
//     with fresh random directions, up to `retries` times, then fails with the reasons.
// The builder runs the blocks it adds on the evaluator's state in the build precision, so every
// decision is taken on the exact values the model will compute.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/hardmax/dataset.h"
#include "models/hardmax/model.h"

namespace gradus::hardmax {

struct BuildOptions {
  DType dtype = DType::f64;  // f64 or f32: the precision of the parameters and the arithmetic
  uint64_t seed = 0;
  int64_t retries = 3;     // attempts after the first, each with fresh random directions
  int64_t candidates = 1;  // directions tried for each hat (more only when one fails)
  double alpha = 0.0;      // alpha_s of the shift and split SA; 0: 1 / (1 + 2 log2 N)
  bool verify = true;      // run step 5 (a build that skips it reports accuracy -1)
};

struct BuildReport {
  int64_t sequences = 0, d = 0, tokens = 0, max_length = 0, points = 0, classes = 0;
  int64_t groups_initial = 0;  // K0: distinct leaders after block 1
  int64_t groups_final = 0;    // K: label-pure groups after the splits
  int64_t split_blocks = 0, label_blocks = 0, blocks = 0, parameters = 0;
  int64_t rounds = 0;           // split rounds (each ends with the one SA that pulls groups apart)
  int64_t block_formula = 0;    // 2 + 2K - K0
  int64_t block_bound = 0;      // 2N + 1
  int64_t parameter_bound = 0;  // (10d + 5)(N - 1) + (8d + 4)N + 6d + 3
  int64_t paper_blocks = 0;     // 4N + 1
  double alpha_split = 0.0;
  double scale = 0.0;              // R = Delta: the spread of v . x, the unit of the margins
  double min_isolation_gap = 0.0;  // smallest hat gap min |a . (p - t)| over the splits
  double label_gap = 0.0;          // the label hats' gap between consecutive leaders along a
  double min_leader_gap = 0.0;     // smallest v-score lead of a leader over its sequence's others
  double readout_margin = 0.0;     // 0.5 - max |e . x_0 - y| (the rounding margin of the readout)
  double train_accuracy = -1.0;
  int64_t attempts = 0;
  std::vector<std::string> failed_attempts;  // why each earlier attempt was rejected
  double build_seconds = 0.0, verify_seconds = 0.0;
  std::string dtype;

  nlohmann::json to_json() const;
};

struct BuildResult {
  Net net;
  BuildReport report;
};

// Throws gradus::Error for: invalid data, d < 2, sequences with different labels and equal token
// sets (naming the pairs), or every attempt failing (listing why).
BuildResult build(const Dataset& data, const BuildOptions& options = {});

}  // namespace gradus::hardmax
