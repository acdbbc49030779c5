#include "experiments/lib/graph_protein_data.h"

#include <algorithm>
#include <array>
#include <iostream>
#include <random>
#include <sstream>

#include "core/error.h"
#include "experiments/lib/commands.h"
#include "models/io/atomic_file.h"

namespace gradus::experiments {

namespace {

constexpr char kHydrophobic[] = "AVILMFWY";
constexpr char kPolar[] = "CDEGHKNPQRST";

// A draw in [0, n) from the generator's 64 bits (a multiply-shift: the same on every platform,
// unlike std::uniform_int_distribution).
int64_t draw(std::mt19937_64& rng, int64_t n) {
  return static_cast<int64_t>((static_cast<unsigned __int128>(rng()) * static_cast<uint64_t>(n)) >>
                              64);
}

char residue(std::mt19937_64& rng, bool hydrophobic) {
  return hydrophobic ? kHydrophobic[draw(rng, 8)] : kPolar[draw(rng, 12)];
}

std::string sequence(std::mt19937_64& rng, int64_t length) {
  std::string s;
  while (static_cast<int64_t>(s.size()) < length) {
    const int64_t kind = draw(rng, 3);  // 0 helix, 1 strand, 2 coil
    const int64_t n = kind == 0   ? 8 + draw(rng, 7)
                      : kind == 1 ? 5 + draw(rng, 5)
                                  : 3 + draw(rng, 6);
    for (int64_t k = 0; k < n; ++k) {
      const bool hyd = kind == 0   ? (k % 7 == 0 || k % 7 == 3 || k % 7 == 4)
                       : kind == 1 ? k % 2 == 0
                                   : false;
      s += residue(rng, hyd);
    }
  }
  s.resize(static_cast<size_t>(length));
  return s;
}

}  // namespace

bool is_hydrophobic(char r) { return std::string_view(kHydrophobic).find(r) != std::string::npos; }

std::string structure_of(const std::string& s) {
  const auto n = static_cast<int64_t>(s.size());
  std::string out(s.size(), 'C');
  auto hyd = [&](int64_t i) { return i < n && is_hydrophobic(s[static_cast<size_t>(i)]); };
  for (int64_t i = 0; i + 4 < n; ++i)
    if (hyd(i) && !hyd(i + 1) && !hyd(i + 2) && hyd(i + 3) && hyd(i + 4))
      for (int64_t k = i; k <= i + 4; ++k) out[static_cast<size_t>(k)] = 'H';
  for (int64_t i = 0; i + 4 < n; ++i)
    if (hyd(i) && !hyd(i + 1) && hyd(i + 2) && !hyd(i + 3) && hyd(i + 4))
      for (int64_t k = i; k <= i + 4; ++k)
        if (out[static_cast<size_t>(k)] != 'H') out[static_cast<size_t>(k)] = 'E';
  return out;
}

std::string protein_line(const std::string& s) {
  const std::string st = structure_of(s);
  std::array<std::pair<int64_t, int>, 3> counts = {
      std::pair<int64_t, int>{std::count(st.begin(), st.end(), 'H'), 0},
      {std::count(st.begin(), st.end(), 'E'), 1},
      {std::count(st.begin(), st.end(), 'C'), 2}};
  // Most frequent first; ties in the order H, E, C.
  std::stable_sort(counts.begin(), counts.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  static const char* kNames[] = {"<AH>", "<BS>", "<UNSTRUCTURED>"};
  return "<seq>" + s + "</seq>" + kNames[counts[0].second] + kNames[counts[1].second];
}

std::vector<std::string> protein_lines(const ProteinDataOptions& o) {
  GRADUS_CHECK(o.count >= 1 && o.min_length >= 5 && o.max_length >= o.min_length,
               "graph-protein-data",
               "expected count >= 1 and 5 <= min length <= max length, found {}, {}, {}", o.count,
               o.min_length, o.max_length);
  std::mt19937_64 rng(o.seed);
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(o.count));
  for (int64_t i = 0; i < o.count; ++i)
    out.push_back(
        protein_line(sequence(rng, o.min_length + draw(rng, o.max_length - o.min_length + 1))));
  return out;
}

namespace {

int graph_protein_data(const std::vector<std::string>& args) {
  ProteinDataOptions o;
  std::string out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    GRADUS_CHECK(i + 1 < args.size(), "graph-protein-data",
                 "{} expects a value (options: --out FILE --n N --seed S --min-len L --max-len L)",
                 a);
    const std::string v = args[++i];
    auto integer = [&]() {
      size_t used = 0;
      int64_t x = -1;
      try {
        x = std::stoll(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      GRADUS_CHECK(used == v.size() && x >= 0, "graph-protein-data",
                   "{} expects a non-negative integer, found \"{}\"", a, v);
      return x;
    };
    if (a == "--out")
      out = v;
    else if (a == "--n")
      o.count = integer();
    else if (a == "--seed")
      o.seed = static_cast<uint64_t>(integer());
    else if (a == "--min-len")
      o.min_length = integer();
    else if (a == "--max-len")
      o.max_length = integer();
    else
      GRADUS_FAIL(
          "graph-protein-data",
          "unknown option \"{}\" (options: --out FILE --n N --seed S --min-len L --max-len L)", a);
  }
  GRADUS_CHECK(!out.empty(), "graph-protein-data", "--out FILE is required");
  std::ostringstream text;
  for (const std::string& line : protein_lines(o)) text << line << "\n";
  write_text_atomic(out, text.str());
  std::cout << fmt::format("wrote {} sequences to {}\n", o.count, out);
  return 0;
}

const bool kRegistered = register_command(
    {"graph-protein-data",
     "graph-protein-data --out FILE [--n 10000] [--seed 0] [--min-len 24] [--max-len 64]\n"
     "  Protein-like sequences with relational secondary-structure labels, one per line in the\n"
     "  paper's format <seq>...</seq><class1><class2> (docs/graph_attention.md); train on the "
     "file\n"
     "  with gradus run (data.corpus = FILE).",
     graph_protein_data});

}  // namespace

}  // namespace gradus::experiments
