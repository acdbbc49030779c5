#include "models/hardmax/synthetic.h"

#include <algorithm>
#include <map>

#include "core/error.h"
#include "models/hardmax/random.h"

namespace gradus::hardmax {

std::vector<std::string> synthetic_kinds() {
  return {"random", "gaussian", "nested", "pairs", "grid", "duplicates"};
}

namespace {

std::vector<double> gaussian_points(Rng& rng, int64_t count, int64_t d) {
  std::vector<double> p(static_cast<size_t>(count * d));
  for (double& x : p) x = rng.normal();
  return p;
}

// Adds a sequence of vocabulary indices; a token set seen before keeps its first label.
struct SetLabels {
  std::map<std::vector<int64_t>, int64_t> first;
  int64_t label_for(std::vector<int64_t> ids, int64_t label) {
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    return first.emplace(std::move(ids), label).first->second;
  }
};

void add_ids(Dataset& out, const std::vector<double>& vocab, const std::vector<int64_t>& ids,
             int64_t label) {
  std::vector<double> x;
  for (int64_t id : ids)
    x.insert(x.end(), vocab.begin() + id * out.d, vocab.begin() + (id + 1) * out.d);
  out.add(x, label);
}

}  // namespace

Dataset make_synthetic(const SyntheticSpec& s) {
  const std::string where = fmt::format("synthetic dataset \"{}\"", s.kind);
  GRADUS_CHECK(
      s.d >= 1 && s.classes >= 1 && s.n >= 1 && s.vocab >= 1, where,
      "expected d, classes, n and vocab >= 1, found d = {}, classes = {}, n = {}, vocab = {}", s.d,
      s.classes, s.n, s.vocab);
  GRADUS_CHECK(s.min_length >= 1 && s.max_length >= s.min_length, where,
               "expected 1 <= min_length <= max_length, found {} and {}", s.min_length,
               s.max_length);
  Rng rng(s.seed * 7919 + 17);
  Dataset out;
  out.d = s.d;
  out.source = fmt::format("{} (n {}, d {}, seed {})", s.kind, s.n, s.d, s.seed);
  SetLabels seen;
  auto length = [&] { return s.min_length + rng.below(s.max_length - s.min_length + 1); };
  auto label = [&] { return rng.below(s.classes); };
  if (s.kind == "random" || s.kind == "duplicates" || s.kind == "grid") {
    std::vector<double> vocab;
    int64_t V = s.vocab;
    if (s.kind == "grid") {
      // Grid points are drawn lazily: vocabulary = all of {0..side-1}^d would be too large.
      V = 0;
    } else {
      vocab = gaussian_points(rng, V, s.d);
    }
    for (int64_t k = 0; k < s.n; ++k) {
      const int64_t L = length();
      std::vector<int64_t> ids;
      std::vector<double> x;
      if (s.kind == "grid") {
        std::vector<std::vector<int64_t>> pts;
        for (int64_t i = 0; i < L; ++i) {
          std::vector<int64_t> p(static_cast<size_t>(s.d));
          for (auto& c : p) c = rng.below(s.vocab);
          pts.push_back(p);
        }
        // Canonical ids for the set check: the grid coordinates as one number.
        for (const auto& p : pts) {
          int64_t id = 0;
          for (int64_t c : p) id = id * s.vocab + c;
          ids.push_back(id);
          for (int64_t c : p) x.push_back(static_cast<double>(c));
        }
        out.add(x, seen.label_for(ids, label()));
        continue;
      }
      for (int64_t i = 0; i < L; ++i) {
        const int64_t id = rng.below(V);
        const int64_t copies = s.kind == "duplicates" ? 1 + rng.below(s.repeat) : 1;
        for (int64_t r = 0; r < copies; ++r) ids.push_back(id);
      }
      add_ids(out, vocab, ids, seen.label_for(ids, label()));
    }
  } else if (s.kind == "gaussian") {
    for (int64_t k = 0; k < s.n; ++k) out.add(gaussian_points(rng, length(), s.d), label());
  } else if (s.kind == "nested") {
    const std::vector<double> vocab = gaussian_points(rng, s.n, s.d);
    std::vector<int64_t> ids;
    for (int64_t k = 0; k < s.n; ++k) {
      ids.push_back(k);
      add_ids(out, vocab, ids, label());
    }
  } else if (s.kind == "pairs") {
    const std::vector<double> vocab = gaussian_points(rng, s.vocab, s.d);
    for (int64_t a = 0; a < s.vocab; ++a)
      for (int64_t b = a + 1; b < s.vocab; ++b) add_ids(out, vocab, {a, b}, label());
  } else {
    GRADUS_FAIL(where, "unknown kind (expected one of: {})", fmt::join(synthetic_kinds(), ", "));
  }
  out.validate();
  return out;
}

}  // namespace gradus::hardmax
