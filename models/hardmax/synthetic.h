// Synthetic labelled-sequence datasets for the hardmax construction's checks (spec section 3).
// Every generator is deterministic in its seed and returns separable data: sequences with equal
// token sets get the same label.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/hardmax/dataset.h"

namespace gradus::hardmax {

struct SyntheticSpec {
  std::string kind = "random";  // random | gaussian | nested | pairs | grid | duplicates
  int64_t n = 100;              // sequences (pairs: ignored, all V(V-1)/2 pairs)
  int64_t d = 4;
  int64_t vocab = 32;  // random, duplicates: vocabulary size; pairs: V; grid: side
  int64_t min_length = 2, max_length = 16;  // random, gaussian, grid, duplicates (before repeats)
  int64_t classes = 2;
  int64_t repeat = 4;  // duplicates: each token appears 1..repeat times
  uint64_t seed = 0;
};

// random:     tokens drawn with replacement from a vocabulary of `vocab` Gaussian points (shared
//             tokens), lengths uniform in [min_length, max_length], labels uniform
// gaussian:   every token a fresh Gaussian point (nothing shared)
// nested:     X^k = {p_1, ..., p_k} for k = 1..n (lengths 1..n), labels uniform
// pairs:      every pair {p_a, p_b} of `vocab` Gaussian points, labels uniform (the hard case
//             {a,b}, {a,c}, {b,c} with three different labels occurs)
// grid:       tokens drawn from the integer grid {0, ..., vocab - 1}^d
// duplicates: like random, each token then repeated 1..repeat times in place
Dataset make_synthetic(const SyntheticSpec& spec);
std::vector<std::string> synthetic_kinds();

}  // namespace gradus::hardmax
