#include "models/hardmax/dataset.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "models/io/atomic_file.h"
#include "models/io/json_depth.h"

namespace gradus::hardmax {

namespace {

// Hash of a row of doubles by their bits (rows are compared bitwise; -0 is stored as +0).
struct RowKey {
  const double* p;
  int64_t d;
};
struct RowHash {
  size_t operator()(const RowKey& k) const {
    uint64_t h = 1469598103934665603ull;
    for (int64_t c = 0; c < k.d; ++c) {
      uint64_t bits;
      std::memcpy(&bits, k.p + c, 8);
      h ^= bits + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    }
    return static_cast<size_t>(h);
  }
};
struct RowEq {
  bool operator()(const RowKey& a, const RowKey& b) const {
    return std::memcmp(a.p, b.p, static_cast<size_t>(a.d) * 8) == 0;
  }
};

std::string json_type(const nlohmann::json& j) {
  return j.is_array()     ? "an array"
         : j.is_object()  ? "an object"
         : j.is_string()  ? "a string"
         : j.is_boolean() ? "a boolean"
         : j.is_null()    ? "null"
                          : "a number";
}

// |y| <= kMaxLabel, without std::llabs: its result for INT64_MIN is undefined (in practice
// INT64_MIN itself, which would pass).
bool label_in_range(int64_t y) { return y >= -kMaxLabel && y <= kMaxLabel; }

}  // namespace

int64_t Dataset::max_length() const {
  int64_t m = 0;
  for (int64_t n = 0; n < size(); ++n) m = std::max(m, length(n));
  return m;
}

void Dataset::add(std::span<const double> x, int64_t label) {
  GRADUS_CHECK(d > 0 && x.size() % static_cast<size_t>(d) == 0, "hardmax dataset",
               "a sequence needs a multiple of d = {} coordinates, found {}", d, x.size());
  if (offsets.empty()) offsets.push_back(0);
  for (double v : x)
    tokens.push_back(v + 0.0);  // + 0.0 turns -0 into +0: one bit pattern per point
  offsets.push_back(static_cast<int64_t>(tokens.size()) / d);
  labels.push_back(label);
}

void Dataset::validate() const {
  const std::string& where = source.empty() ? std::string("hardmax dataset") : source;
  GRADUS_CHECK(d >= 1, where, "expected d >= 1, found {}", d);
  GRADUS_CHECK(size() >= 1, where, "expected at least one sequence, found none");
  GRADUS_CHECK(static_cast<int64_t>(offsets.size()) == size() + 1 && offsets[0] == 0, where,
               "{} offsets for {} sequences", offsets.size(), size());
  GRADUS_CHECK(static_cast<int64_t>(tokens.size()) == num_tokens() * d, where,
               "{} coordinates for {} tokens of dimension {}", tokens.size(), num_tokens(), d);
  for (int64_t n = 0; n < size(); ++n) {
    GRADUS_CHECK(length(n) >= 1, where, "sequence {} is empty", n);
    GRADUS_CHECK(label_in_range(labels[n]), where,
                 "sequence {}: label {} is out of range (|y| <= {})", n, labels[n], kMaxLabel);
  }
  for (size_t i = 0; i < tokens.size(); ++i)
    GRADUS_CHECK(std::isfinite(tokens[i]), where, "token {} has a non-finite coordinate",
                 static_cast<int64_t>(i) / d);
}

Dataset load_jsonl(const std::string& path) {
  std::ifstream in(path);
  GRADUS_CHECK(in.good(), path, "cannot open the file for reading");
  Dataset data;
  data.source = path;
  std::string line;
  int64_t number = 0;
  std::vector<double> x;
  while (std::getline(in, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string at = fmt::format("{}:{}", path, number);
    check_json_depth(line, at, "the line");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for 1e999
      GRADUS_FAIL(at, "not JSON ({})", e.what());
    }
    GRADUS_CHECK(j.is_object(), at,
                 "expected an object {{\"x\": [[...], ...], \"y\": LABEL}}, found {}",
                 json_type(j));
    for (const auto& [key, value] : j.items())
      GRADUS_CHECK(key == "x" || key == "y", at, "unknown key \"{}\" (expected \"x\" and \"y\")",
                   key);
    GRADUS_CHECK(j.contains("x"), at, "missing \"x\" (the tokens: an array of points)");
    GRADUS_CHECK(j.contains("y"), at, "missing \"y\" (the integer label)");
    const auto& jy = j["y"];
    GRADUS_CHECK(jy.is_number(), at, "\"y\": expected an integer label, found {}", json_type(jy));
    int64_t label = 0;
    if (jy.is_number_unsigned()) {
      // Read as unsigned: get<int64_t> would wrap 2^64 - 1 to -1, a valid label.
      const uint64_t u = jy.get<uint64_t>();
      GRADUS_CHECK(u <= static_cast<uint64_t>(kMaxLabel), at,
                   "\"y\": label {} is out of range (|y| <= {})", u, kMaxLabel);
      label = static_cast<int64_t>(u);
    } else if (jy.is_number_integer()) {
      label = jy.get<int64_t>();
    } else {
      const double v = jy.get<double>();
      GRADUS_CHECK(std::isfinite(v) && v == std::floor(v) && std::fabs(v) <= 9e15, at,
                   "\"y\": expected an integer label, found {}", jy.dump());
      label = static_cast<int64_t>(v);
    }
    GRADUS_CHECK(label_in_range(label), at, "\"y\": label {} is out of range (|y| <= {})", label,
                 kMaxLabel);
    const auto& jx = j["x"];
    GRADUS_CHECK(jx.is_array(), at, "\"x\": expected an array of points, found {}", json_type(jx));
    GRADUS_CHECK(!jx.empty(), at, "\"x\": a sequence needs at least one token, found none");
    x.clear();
    for (size_t t = 0; t < jx.size(); ++t) {
      const auto& p = jx[t];
      GRADUS_CHECK(p.is_array(), at, "\"x\"[{}]: expected a point (an array of numbers), found {}",
                   t, json_type(p));
      if (data.d == 0) {
        GRADUS_CHECK(!p.empty(), at, "\"x\"[{}]: a point needs at least one coordinate", t);
        data.d = static_cast<int64_t>(p.size());
      }
      GRADUS_CHECK(static_cast<int64_t>(p.size()) == data.d, at,
                   "\"x\"[{}]: expected {} coordinates (the dimension of the first point in the "
                   "file), found {}",
                   t, data.d, p.size());
      for (size_t c = 0; c < p.size(); ++c) {
        GRADUS_CHECK(p[c].is_number(), at, "\"x\"[{}][{}]: expected a number, found {}", t, c,
                     json_type(p[c]));
        const double v = p[c].get<double>();
        GRADUS_CHECK(std::isfinite(v), at, "\"x\"[{}][{}]: expected a finite number, found {}", t,
                     c, p[c].dump());
        x.push_back(v);
      }
    }
    data.add(x, label);
  }
  GRADUS_CHECK(data.size() > 0, path, "no sequences (expected one JSON object per line)");
  data.validate();
  return data;
}

void save_jsonl(const Dataset& data, const std::string& path) {
  data.validate();
  write_file_atomic(path, [&](std::ostream& out) {
    for (int64_t n = 0; n < data.size(); ++n) {
      std::string line = "{\"x\":[";
      for (int64_t r = data.offsets[n]; r < data.offsets[n + 1]; ++r) {
        line += r == data.offsets[n] ? "[" : ",[";
        for (int64_t c = 0; c < data.d; ++c)
          line += (c == 0 ? "" : ",") + fmt::format("{}", data.tokens[r * data.d + c]);
        line += "]";
      }
      line += fmt::format("],\"y\":{}}}\n", data.labels[n]);
      out << line;
    }
  });
}

PointIndex index_points(const Dataset& data) {
  PointIndex out;
  out.point_id.resize(static_cast<size_t>(data.num_tokens()));
  std::unordered_map<RowKey, int64_t, RowHash, RowEq> ids;
  ids.reserve(static_cast<size_t>(data.num_tokens()));
  for (int64_t r = 0; r < data.num_tokens(); ++r) {
    auto [it, inserted] =
        ids.emplace(RowKey{data.tokens.data() + r * data.d, data.d}, out.num_points);
    if (inserted) ++out.num_points;
    out.point_id[r] = it->second;
  }
  return out;
}

std::vector<LabelConflict> find_label_conflicts(const Dataset& data, int64_t limit) {
  const PointIndex pi = index_points(data);
  // Canonical token set of each sequence: its sorted distinct point ids.
  std::vector<std::vector<int64_t>> sets(static_cast<size_t>(data.size()));
  for (int64_t n = 0; n < data.size(); ++n) {
    auto& s = sets[n];
    s.assign(pi.point_id.begin() + data.offsets[n], pi.point_id.begin() + data.offsets[n + 1]);
    std::sort(s.begin(), s.end());
    s.erase(std::unique(s.begin(), s.end()), s.end());
  }
  std::vector<int64_t> order(static_cast<size_t>(data.size()));
  for (int64_t n = 0; n < data.size(); ++n) order[n] = n;
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return sets[a] < sets[b]; });
  std::vector<LabelConflict> out;
  // Within a run of equal sets, report each sequence whose label differs from the run's first.
  for (size_t i = 0; i < order.size();) {
    size_t j = i + 1;
    while (j < order.size() && sets[order[j]] == sets[order[i]]) ++j;
    for (size_t k = i + 1; k < j; ++k)
      if (data.labels[order[k]] != data.labels[order[i]] &&
          static_cast<int64_t>(out.size()) < limit)
        out.push_back({std::min(order[i], order[k]), std::max(order[i], order[k])});
    i = j;
  }
  return out;
}

void check_separable(const Dataset& data) {
  const auto conflicts = find_label_conflicts(data, 5);
  if (conflicts.empty()) return;
  std::string pairs;
  for (const auto& c : conflicts)
    pairs += fmt::format("\n  sequences {} (label {}) and {} (label {})", c.first,
                         data.labels[c.first], c.second, data.labels[c.second]);
  GRADUS_FAIL(data.source.empty() ? std::string("hardmax dataset") : data.source,
              "sequences with different labels have the same set of tokens, so no permutation-"
              "equivariant model can tell them apart (sequence n is line n + 1 of a file without "
              "blank lines):{}{}",
              pairs, conflicts.size() == 5 ? "\n  ... (first 5 shown)" : "");
}

}  // namespace gradus::hardmax
