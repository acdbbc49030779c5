#include "models/hardmax/forward.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace gradus::hardmax {

// ---------------------------------------------------------------------------------------------
// Compilation

namespace {

template <class T>
std::vector<T> to_t(const std::vector<double>& v) {
  std::vector<T> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = static_cast<T>(v[i]);
  return out;
}

template <class T>
bool rows_equal(const T* a, const T* b, int64_t d, bool negate) {
  for (int64_t c = 0; c < d; ++c)
    if (negate ? !(a[c] == -b[c]) : !(a[c] == b[c])) return false;
  return true;
}

}  // namespace

template <class T>
CompiledBlock<T> compile_block(const Block& b, int64_t d, const CompiledFF<T>* previous_ff) {
  CompiledBlock<T> out;
  CompiledFF<T>& ff = out.ff;
  ff.width = b.ff.width;
  const std::vector<T> a = to_t<T>(b.ff.in_weight);
  for (int64_t r = 0; r < ff.width; ++r) {
    const T* row = a.data() + r * d;
    int32_t found = -1;
    T sign = 1;
    for (int64_t g = 0; g < ff.num_dirs && found < 0; ++g) {
      if (rows_equal(row, ff.dirs.data() + g * d, d, false)) {
        found = static_cast<int32_t>(g);
      } else if (rows_equal(row, ff.dirs.data() + g * d, d, true)) {
        found = static_cast<int32_t>(g);
        sign = -1;
      }
    }
    if (found < 0) {
      found = static_cast<int32_t>(ff.num_dirs++);
      ff.dirs.insert(ff.dirs.end(), row, row + d);
    }
    ff.dir_of.push_back(found);
    ff.sign.push_back(sign);
  }
  ff.bias = to_t<T>(b.ff.in_bias);
  ff.out = to_t<T>(b.ff.out_weight);
  for (int64_t r = 0; r < ff.width; ++r) {
    bool found = false;
    for (auto& grp : ff.groups)
      if (grp.dir == ff.dir_of[r] && grp.sign == ff.sign[r]) {
        grp.max_bias = std::max(grp.max_bias, ff.bias[r]);
        found = true;
      }
    if (!found) ff.groups.push_back({ff.dir_of[r], ff.sign[r], ff.bias[r]});
  }
  ff.same_dirs_as_previous =
      previous_ff != nullptr && ff.num_dirs > 0 && previous_ff->num_dirs == ff.num_dirs &&
      std::memcmp(previous_ff->dirs.data(), ff.dirs.data(), ff.dirs.size() * sizeof(T)) == 0;
  CompiledSA<T>& sa = out.sa;
  sa.scores = b.sa.scores;
  sa.alpha = static_cast<T>(b.sa.alpha);
  sa.one_minus_alpha = T(1) - sa.alpha;
  sa.q = to_t<T>(b.sa.q);
  sa.k = to_t<T>(b.sa.k);
  sa.matrix = to_t<T>(b.sa.matrix);
  sa.q_is_k = sa.scores == Scores::rank1 &&
              std::memcmp(sa.q.data(), sa.k.data(), sa.q.size() * sizeof(T)) == 0;
  return out;
}

template <class T>
CompiledNet<T> compile(const Net& net) {
  CompiledNet<T> out;
  out.d = net.d;
  out.blocks.reserve(net.blocks.size());
  const CompiledFF<T>* prev = nullptr;
  for (const Block& b : net.blocks) {
    out.blocks.push_back(compile_block<T>(b, net.d, prev));
    if (out.blocks.back().ff.width > 0) prev = &out.blocks.back().ff;
  }
  out.readout = to_t<T>(net.readout);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The reference: one sequence, one token at a time.

namespace {

// mean over `set` (ascending indices) of the rows of x: x_{j0} + sum (x_j - x_{j0}) / |set|.
template <class T>
void mean_of(const std::vector<T>& x, int64_t d, const std::vector<int64_t>& set, T* out) {
  const int64_t j0 = set[0];
  for (int64_t c = 0; c < d; ++c) {
    T acc = 0;
    for (int64_t j : set) acc = acc + (x[j * d + c] - x[j0 * d + c]);
    out[c] = x[j0 * d + c] + acc / static_cast<T>(set.size());
  }
}

}  // namespace

template <class T>
void reference_block(const Block& block, int64_t d, std::vector<T>& x) {
  const int64_t L = static_cast<int64_t>(x.size()) / d;
  const std::vector<T> a = to_t<T>(block.ff.in_weight), b = to_t<T>(block.ff.in_bias),
                       w = to_t<T>(block.ff.out_weight);
  for (int64_t i = 0; i < L; ++i) {
    T* xi = x.data() + i * d;
    std::vector<T> h(static_cast<size_t>(block.ff.width));
    for (int64_t r = 0; r < block.ff.width; ++r) {
      const T z = dot(a.data() + r * d, xi, d) + b[r];
      h[r] = z > 0 ? z : T(0);
    }
    for (int64_t r = 0; r < block.ff.width; ++r)
      if (h[r] > 0)
        for (int64_t c = 0; c < d; ++c) xi[c] = xi[c] + w[r * d + c] * h[r];
  }
  const T alpha = static_cast<T>(block.sa.alpha);
  if (block.sa.scores == Scores::none || alpha == T(0)) return;
  const T oma = T(1) - alpha;
  std::vector<T> y(x.size());
  const std::vector<T> q = to_t<T>(block.sa.q), k = to_t<T>(block.sa.k),
                       A = to_t<T>(block.sa.matrix);
  std::vector<T> z(x.size());
  if (block.sa.scores == Scores::general)
    for (int64_t j = 0; j < L; ++j)
      for (int64_t r = 0; r < d; ++r) z[j * d + r] = dot(A.data() + r * d, x.data() + j * d, d);
  for (int64_t i = 0; i < L; ++i) {
    std::vector<T> score(static_cast<size_t>(L));
    if (block.sa.scores == Scores::rank1) {
      const T ci = dot(q.data(), x.data() + i * d, d);
      for (int64_t j = 0; j < L; ++j) {
        const T sj = dot(k.data(), x.data() + j * d, d);
        // The sign of ci picks the k-maximal (ci > 0), k-minimal (ci < 0) or all tokens: the
        // argmax of ci * sj without rounding the product.
        score[j] = ci > 0 ? sj : ci < 0 ? -sj : T(0);
      }
    } else {
      for (int64_t j = 0; j < L; ++j) score[j] = dot(x.data() + i * d, z.data() + j * d, d);
    }
    T best = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < L; ++j)
      if (score[j] > best) best = score[j];
    std::vector<int64_t> set;
    for (int64_t j = 0; j < L; ++j)
      if (score[j] == best) set.push_back(j);
    if (set.empty())  // every score NaN: attend to all
      for (int64_t j = 0; j < L; ++j) set.push_back(j);
    std::vector<T> m(static_cast<size_t>(d));
    mean_of(x, d, set, m.data());
    for (int64_t c = 0; c < d; ++c) y[i * d + c] = oma * x[i * d + c] + alpha * m[c];
  }
  x = y;
}

// ---------------------------------------------------------------------------------------------
// The evaluator

// Below this many coordinates (times blocks) one thread does the work: a parallel region costs
// more than it saves, and far more when other processes hold the cores.
constexpr int64_t kParallelWork = int64_t{1} << 17;

template <class T>
State<T>::State(const Dataset& data, int64_t chunk_tokens) {
  data.validate();
  d_ = data.d;
  num_sequences_ = data.size();
  original_lengths_.resize(static_cast<size_t>(num_sequences_));
  seq_chunk_.resize(static_cast<size_t>(num_sequences_));
  for (int64_t s0 = 0; s0 < num_sequences_;) {
    int64_t s1 = s0, tokens = 0;
    while (s1 < num_sequences_ && (s1 == s0 || tokens + data.length(s1) <= chunk_tokens)) {
      tokens += data.length(s1);
      ++s1;
    }
    Chunk ch;
    ch.seq0 = s0;
    ch.seq1 = s1;
    ch.n = tokens;
    ch.offs.push_back(0);
    for (int64_t s = s0; s < s1; ++s) {
      ch.offs.push_back(ch.offs.back() + data.length(s));
      original_lengths_[s] = data.length(s);
      seq_chunk_[s] = static_cast<int64_t>(chunks_.size());
    }
    ch.x.resize(static_cast<size_t>(d_ * tokens));
    const int64_t row0 = data.offsets[s0];
    for (int64_t i = 0; i < tokens; ++i)
      for (int64_t c = 0; c < d_; ++c)
        ch.x[c * tokens + i] = static_cast<T>(data.tokens[(row0 + i) * d_ + c]);
    chunks_.push_back(std::move(ch));
    s0 = s1;
  }
  update_rows();
}

template <class T>
void State<T>::update_rows() {
  chunk_row0_.resize(chunks_.size() + 1);
  chunk_row0_[0] = 0;
  for (size_t k = 0; k < chunks_.size(); ++k) chunk_row0_[k + 1] = chunk_row0_[k] + chunks_[k].n;
}

template <class T>
int64_t State<T>::num_rows() const {
  return chunk_row0_.back();
}

template <class T>
int64_t State<T>::length(int64_t n) const {
  const Chunk& ch = chunks_[seq_chunk_[n]];
  return ch.offs[n - ch.seq0 + 1] - ch.offs[n - ch.seq0];
}

template <class T>
int64_t State<T>::row(int64_t n, int64_t i) const {
  const int64_t k = seq_chunk_[n];
  return chunk_row0_[k] + chunks_[k].offs[n - chunks_[k].seq0] + i;
}

template <class T>
T State<T>::at(int64_t n, int64_t i, int64_t c) const {
  const Chunk& ch = chunks_[seq_chunk_[n]];
  return ch.x[c * ch.n + ch.offs[n - ch.seq0] + i];
}

template <class T>
void State<T>::set_row(int64_t row, const T* x) {
  const int64_t k =
      std::upper_bound(chunk_row0_.begin(), chunk_row0_.end(), row) - chunk_row0_.begin() - 1;
  Chunk& ch = chunks_[k];
  const int64_t i = row - chunk_row0_[k];
  for (int64_t c = 0; c < d_; ++c) ch.x[c * ch.n + i] = x[c];
  ch.dots_dirs = -1;
}

template <class T>
std::vector<T> State<T>::token(int64_t n, int64_t i) const {
  std::vector<T> out(static_cast<size_t>(d_));
  for (int64_t c = 0; c < d_; ++c) out[c] = at(n, i, c);
  return out;
}

// out[i] = dot(a, token i) for coordinate-major x ((d, n), x[c * n + i]), in model.h's order for
// every token: acc = 0, then acc + a_c x_c for c = 0, 1, ... (each product rounded, no FMA). Tiles
// of kTile tokens keep their accumulators in registers across the d coordinates, so each
// coordinate is loaded once per tile instead of the accumulator row being loaded and stored for
// every coordinate; the arithmetic per token is unchanged.
namespace {
template <class T>
void project_cm(const T* a, const T* x, int64_t n, int64_t d, T* out) {
  constexpr int64_t kTile = 16;
  int64_t i0 = 0;
  for (; i0 + kTile <= n; i0 += kTile) {
    T acc[kTile];
    for (int64_t j = 0; j < kTile; ++j) acc[j] = 0;
    for (int64_t c = 0; c < d; ++c) {
      const T ac = a[c];
      const T* xc = x + c * n + i0;
      for (int64_t j = 0; j < kTile; ++j) acc[j] = acc[j] + ac * xc[j];
    }
    for (int64_t j = 0; j < kTile; ++j) out[i0 + j] = acc[j];
  }
  for (int64_t i = i0; i < n; ++i) {
    T acc = 0;
    for (int64_t c = 0; c < d; ++c) acc = acc + a[c] * x[c * n + i];
    out[i] = acc;
  }
}
}  // namespace

template <class T>
void State<T>::apply_chunk(Chunk& ch, const CompiledBlock<T>& block, const T* ff_dots) {
  const int64_t d = d_;
  int64_t n = ch.n;
  // ---- FF ----
  const CompiledFF<T>& ff = block.ff;
  if (ff.width > 0) {
    const int64_t G = ff.num_dirs;
    const T* dots = nullptr;  // (G, n)
    if (ff_dots != nullptr && G == 1) {
      dots = ff_dots;
      ch.dots_dirs = -1;  // the chunk's own cache no longer matches its tokens
    } else {
      if (ff.same_dirs_as_previous && ch.dots_dirs == G) {
        for (int64_t i = 0; i < n; ++i) {
          if (!ch.stale[i]) continue;
          for (int64_t g = 0; g < G; ++g) {
            T acc = 0;
            for (int64_t c = 0; c < d; ++c) acc = acc + ff.dirs[g * d + c] * ch.x[c * n + i];
            ch.dots[g * n + i] = acc;
          }
          ch.stale[i] = 0;
        }
      } else {
        ch.dots.resize(static_cast<size_t>(G * n));
        for (int64_t g = 0; g < G; ++g)
          project_cm(ff.dirs.data() + g * d, ch.x.data(), n, d, ch.dots.data() + g * n);
        ch.stale.assign(static_cast<size_t>(n), 0);
        ch.dots_dirs = G;
      }
      dots = ch.dots.data();
    }
    // Which tokens have an active unit: per (direction, sign) only the largest bias needs testing,
    // since sign * p + b is non-decreasing in b after rounding too.
    // A hat is active on few tokens: blocks of 64 are first tested with a branch-free count (it
    // vectorises), and only blocks with a hit are scanned token by token (the same test).
    ch.active_list.clear();
    for (int64_t i0 = 0; i0 < n; i0 += 64) {
      const int64_t e = std::min<int64_t>(n, i0 + 64);
      int64_t hits = 0;
      for (const auto& [g, sg, bmax] : ff.groups) {
        const T* p = dots + g * n;
        for (int64_t i = i0; i < e; ++i) hits += sg * p[i] + bmax > 0 ? 1 : 0;
      }
      if (hits == 0) continue;
      for (int64_t i = i0; i < e; ++i) {
        bool on = false;
        for (const auto& [g, sg, bmax] : ff.groups) on |= sg * dots[g * n + i] + bmax > 0;
        if (on) ch.active_list.push_back(static_cast<int32_t>(i));
      }
    }
    std::vector<T> h(static_cast<size_t>(ff.width));
    for (int32_t i : ch.active_list) {
      for (int64_t r = 0; r < ff.width; ++r) {
        const T z = ff.sign[r] * dots[ff.dir_of[r] * n + i] + ff.bias[r];
        h[r] = z > 0 ? z : T(0);
      }
      for (int64_t r = 0; r < ff.width; ++r)
        if (h[r] > 0)
          for (int64_t c = 0; c < d; ++c) ch.x[c * n + i] = ch.x[c * n + i] + ff.out[r * d + c] * h[r];
      if (ch.dots_dirs >= 0) ch.stale[i] = 1;
    }
  }
  // ---- SA ----
  const CompiledSA<T>& sa = block.sa;
  if (sa.scores == Scores::none || sa.alpha == T(0)) return;
  ch.dots_dirs = -1;  // every token moves
  const T alpha = sa.alpha, oma = sa.one_minus_alpha;
  const int64_t S = ch.seq1 - ch.seq0;
  ch.mean.resize(static_cast<size_t>(3 * d));
  ch.amean.resize(static_cast<size_t>(3 * d));
  if (sa.scores == Scores::rank1) {
    ch.s.resize(static_cast<size_t>(n));
    project_cm(sa.k.data(), ch.x.data(), n, d, ch.s.data());
    const T* cq = ch.s.data();
    if (!sa.q_is_k) {
      ch.cq.resize(static_cast<size_t>(n));
      project_cm(sa.q.data(), ch.x.data(), n, d, ch.cq.data());
      cq = ch.cq.data();
    }
    for (int64_t j = 0; j < S; ++j) {
      const int64_t a = ch.offs[j], e = ch.offs[j + 1];
      bool need[3] = {false, false, false};  // max, min, all
      for (int64_t i = a; i < e; ++i) need[cq[i] > 0 ? 0 : cq[i] < 0 ? 1 : 2] = true;
      T smax = -std::numeric_limits<T>::infinity(), smin = std::numeric_limits<T>::infinity();
      for (int64_t i = a; i < e; ++i) {
        if (ch.s[i] > smax) smax = ch.s[i];
        if (ch.s[i] < smin) smin = ch.s[i];
      }
      for (int kind = 0; kind < 3; ++kind) {
        if (!need[kind]) continue;
        auto in_set = [&](int64_t i) {
          return kind == 2 || (kind == 0 ? ch.s[i] == smax : ch.s[i] == smin) ||
                 (kind == 0 ? !(smax > -std::numeric_limits<T>::infinity())
                            : !(smin < std::numeric_limits<T>::infinity()));
        };
        int64_t j0 = -1, count = 0;
        for (int64_t i = a; i < e; ++i)
          if (in_set(i)) {
            if (j0 < 0) j0 = i;
            ++count;
          }
        T* m = ch.mean.data() + kind * d;
        for (int64_t c = 0; c < d; ++c) {
          const T* xc = ch.x.data() + c * n;
          T acc = 0;
          for (int64_t i = a; i < e; ++i)
            if (in_set(i)) acc = acc + (xc[i] - xc[j0]);
          m[c] = xc[j0] + acc / static_cast<T>(count);
          ch.amean[kind * d + c] = alpha * m[c];
        }
      }
      if (need[0] && !need[1] && !need[2]) {
        for (int64_t c = 0; c < d; ++c) {
          const T am = ch.amean[c];
          T* xc = ch.x.data() + c * n;
          for (int64_t i = a; i < e; ++i) xc[i] = oma * xc[i] + am;
        }
      } else {
        for (int64_t i = a; i < e; ++i) {
          const int kind = cq[i] > 0 ? 0 : cq[i] < 0 ? 1 : 2;
          for (int64_t c = 0; c < d; ++c)
            ch.x[c * n + i] = oma * ch.x[c * n + i] + ch.amean[kind * d + c];
        }
      }
    }
  } else {  // general scores: x_i . (A x_j), per sequence
    std::vector<T> xs, z, y, score;
    for (int64_t j = 0; j < S; ++j) {
      const int64_t a = ch.offs[j], e = ch.offs[j + 1], L = e - a;
      xs.resize(static_cast<size_t>(L * d));
      for (int64_t i = 0; i < L; ++i)
        for (int64_t c = 0; c < d; ++c) xs[i * d + c] = ch.x[c * n + a + i];
      z.resize(xs.size());
      for (int64_t i = 0; i < L; ++i)
        for (int64_t r = 0; r < d; ++r) z[i * d + r] = dot(sa.matrix.data() + r * d, &xs[i * d], d);
      y.resize(xs.size());
      score.resize(static_cast<size_t>(L));
      std::vector<int64_t> set;
      std::vector<T> m(static_cast<size_t>(d));
      for (int64_t i = 0; i < L; ++i) {
        T best = -std::numeric_limits<T>::infinity();
        for (int64_t k = 0; k < L; ++k) {
          score[k] = dot(&xs[i * d], &z[k * d], d);
          if (score[k] > best) best = score[k];
        }
        set.clear();
        for (int64_t k = 0; k < L; ++k)
          if (score[k] == best) set.push_back(k);
        if (set.empty())
          for (int64_t k = 0; k < L; ++k) set.push_back(k);
        mean_of(xs, d, set, m.data());
        for (int64_t c = 0; c < d; ++c) y[i * d + c] = oma * xs[i * d + c] + alpha * m[c];
      }
      for (int64_t i = 0; i < L; ++i)
        for (int64_t c = 0; c < d; ++c) ch.x[c * n + a + i] = y[i * d + c];
    }
  }
  // ---- keep one token of a sequence whose tokens all coincide (after alpha = 1) ----
  if (alpha != T(1) || ch.offs.back() == S) return;
  std::vector<int64_t> keep;  // old token index kept, per new token
  std::vector<int64_t> offs{0};
  for (int64_t j = 0; j < S; ++j) {
    const int64_t a = ch.offs[j], e = ch.offs[j + 1];
    bool same = true;
    for (int64_t c = 0; c < d && same; ++c)
      for (int64_t i = a + 1; i < e && same; ++i)
        same = std::memcmp(&ch.x[c * n + i], &ch.x[c * n + a], sizeof(T)) == 0;
    if (same) {
      keep.push_back(a);
    } else {
      for (int64_t i = a; i < e; ++i) keep.push_back(i);
    }
    offs.push_back(static_cast<int64_t>(keep.size()));
  }
  const int64_t m = static_cast<int64_t>(keep.size());
  if (m == n) return;
  std::vector<T> x2(static_cast<size_t>(d * m));
  for (int64_t c = 0; c < d; ++c)
    for (int64_t i = 0; i < m; ++i) x2[c * m + i] = ch.x[c * n + keep[i]];
  ch.x = std::move(x2);
  ch.offs = std::move(offs);
  ch.n = n = m;
}

template <class T>
void State<T>::project_chunk(const Chunk& ch, const std::vector<T>& dirs, std::vector<T>& proj,
                             int64_t stride) const {
  const int64_t d = d_, n = ch.n, m = static_cast<int64_t>(dirs.size()) / d;
  const int64_t row0 = chunk_row0_[&ch - chunks_.data()];
  for (int64_t g = 0; g < m; ++g)
    project_cm(dirs.data() + g * d, ch.x.data(), n, d, proj.data() + g * stride + row0);
}

template <class T>
void State<T>::apply(const CompiledBlock<T>& block, const std::vector<T>* ff_dots) {
  GRADUS_CHECK(ff_dots == nullptr ||
                   (block.ff.num_dirs == 1 && static_cast<int64_t>(ff_dots->size()) == num_rows()),
               "hardmax State::apply", "ff_dots needs one FF direction and {} rows", num_rows());
  const int64_t K = static_cast<int64_t>(chunks_.size());
#pragma omp parallel for schedule(dynamic, \
                                  1) if (parallel_ && K > 1 && num_rows() * d_ >= kParallelWork)
  for (int64_t k = 0; k < K; ++k)
    apply_chunk(chunks_[k], block, ff_dots ? ff_dots->data() + chunk_row0_[k] : nullptr);
  update_rows();
}

template <class T>
void State<T>::run(const CompiledNet<T>& net, int64_t max_blocks) {
  GRADUS_CHECK(net.d == d_, "hardmax forward", "the net has d = {} but the data d = {}", net.d, d_);
  const int64_t L = max_blocks < 0 ? static_cast<int64_t>(net.blocks.size())
                                   : std::min<int64_t>(max_blocks, net.blocks.size());
  const int64_t K = static_cast<int64_t>(chunks_.size());
#pragma omp parallel for schedule(dynamic, 1) if (K > 1 && num_rows() * d_ * L >= kParallelWork)
  for (int64_t k = 0; k < K; ++k)
    for (int64_t b = 0; b < L; ++b) apply_chunk(chunks_[k], net.blocks[b]);
  update_rows();
}

template <class T>
void State<T>::project(const std::vector<T>& dirs, std::vector<T>& proj) const {
  proj.resize(dirs.size() / d_ * num_rows());
  const int64_t K = static_cast<int64_t>(chunks_.size());
#pragma omp parallel for schedule(dynamic, \
                                  1) if (parallel_ && K > 1 && num_rows() * d_ >= kParallelWork)
  for (int64_t k = 0; k < K; ++k) project_chunk(chunks_[k], dirs, proj, num_rows());
}

template <class T>
std::vector<double> State<T>::tokens() const {
  int64_t total = 0;
  for (int64_t L : original_lengths_) total += L;
  std::vector<double> out(static_cast<size_t>(total * d_));
  int64_t r = 0;
  for (int64_t n = 0; n < num_sequences_; ++n) {
    const int64_t now = length(n);
    for (int64_t i = 0; i < original_lengths_[n]; ++i, ++r)
      for (int64_t c = 0; c < d_; ++c)
        out[r * d_ + c] = static_cast<double>(at(n, now == 1 ? 0 : i, c));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

namespace {

template <class T>
Classification classify_as(const Net& net, const Dataset& data) {
  GRADUS_CHECK(net.d == data.d, "hardmax classify",
               "the model has d = {} but the data ({}) has d = {}", net.d, data.source, data.d);
  const auto t0 = std::chrono::steady_clock::now();
  const CompiledNet<T> cn = compile<T>(net);
  State<T> st(data);
  st.run(cn);
  Classification out;
  const int64_t N = data.size();
  out.predicted.resize(static_cast<size_t>(N));
  out.readout.resize(static_cast<size_t>(N));
  out.readout_margin = 0.5;
  std::vector<T> x(static_cast<size_t>(net.d));
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < net.d; ++c) x[c] = st.at(n, 0, c);
    const T r = dot(cn.readout.data(), x.data(), net.d);
    const double rd = static_cast<double>(r);
    out.readout[n] = rd;
    const bool finite = std::isfinite(rd) && std::fabs(rd) < 9e15;
    out.predicted[n] =
        finite ? static_cast<int64_t>(std::llround(rd)) : std::numeric_limits<int64_t>::min();
    if (out.predicted[n] == data.labels[n]) {
      ++out.correct;
      out.readout_margin =
          std::min(out.readout_margin, 0.5 - std::fabs(rd - static_cast<double>(data.labels[n])));
    }
  }
  out.accuracy = N > 0 ? static_cast<double>(out.correct) / static_cast<double>(N) : 0.0;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace

Classification classify(const Net& net, const Dataset& data) {
  return classify(net, data, net.dtype);
}

Classification classify(const Net& net, const Dataset& data, DType arithmetic) {
  if (arithmetic == DType::f32) return classify_as<float>(net, data);
  GRADUS_CHECK(arithmetic == DType::f64, "hardmax classify", "expected f64 or f32, found {}",
               dtype_name(arithmetic));
  return classify_as<double>(net, data);
}

std::vector<double> forward_tokens(const Net& net, const Dataset& data, int64_t max_blocks) {
  GRADUS_CHECK(net.d == data.d, "hardmax forward", "the model has d = {} but the data has d = {}",
               net.d, data.d);
  if (net.dtype == DType::f32) {
    State<float> st(data);
    st.run(compile<float>(net), max_blocks);
    return st.tokens();
  }
  State<double> st(data);
  st.run(compile<double>(net), max_blocks);
  return st.tokens();
}

#define GRADUS_HARDMAX_INSTANTIATE(T)                                                      \
  template CompiledBlock<T> compile_block<T>(const Block&, int64_t, const CompiledFF<T>*); \
  template CompiledNet<T> compile<T>(const Net&);                                          \
  template void reference_block<T>(const Block&, int64_t, std::vector<T>&);                \
  template class State<T>;
GRADUS_HARDMAX_INSTANTIATE(float)
GRADUS_HARDMAX_INSTANTIATE(double)

}  // namespace gradus::hardmax
