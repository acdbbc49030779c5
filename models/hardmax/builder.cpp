#include "models/hardmax/builder.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "core/error.h"
#include "models/hardmax/forward.h"
#include "models/hardmax/random.h"

namespace gradus::hardmax {

nlohmann::json BuildReport::to_json() const {
  nlohmann::json j;
  j["N"] = sequences;
  j["d"] = d;
  j["tokens"] = tokens;
  j["max_length"] = max_length;
  j["distinct_points"] = points;
  j["classes"] = classes;
  j["dtype"] = dtype;
  j["groups_initial"] = groups_initial;
  j["groups_final"] = groups_final;
  j["split_blocks"] = split_blocks;
  j["split_rounds"] = rounds;
  j["label_blocks"] = label_blocks;
  j["blocks"] = blocks;
  j["blocks_formula_2_plus_2K_minus_K0"] = block_formula;
  j["blocks_bound_2N_plus_1"] = block_bound;
  j["blocks_paper_4N_plus_1"] = paper_blocks;
  j["parameters"] = parameters;
  j["parameters_bound"] = parameter_bound;
  j["alpha_split"] = alpha_split;
  j["margins"] = {{"scale", scale},
                  {"min_isolation_gap", min_isolation_gap},
                  {"label_gap", label_gap},
                  {"min_leader_gap", min_leader_gap},
                  {"readout_margin", readout_margin}};
  j["train_accuracy"] = train_accuracy;
  j["attempts"] = attempts;
  j["failed_attempts"] = failed_attempts;
  j["build_seconds"] = build_seconds;
  j["verify_seconds"] = verify_seconds;
  j["seconds"] = build_seconds + verify_seconds;
  return j;
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A rejected attempt: the reason goes to the report and the next attempt starts.
struct AttemptFailed {
  std::string why;
};

template <class T>
double round_t(double v) {
  return static_cast<double>(static_cast<T>(v));
}
template <class T>
std::vector<double> round_t(std::vector<double> v) {
  for (double& x : v) x = round_t<T>(x);
  return v;
}
template <class T>
std::vector<T> as_t(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// The 4-unit hat along direction `a` (already rounded to T) around projection pt, of half-width
// eps, exactly zero where sigma * (a . x - pt) <= -eps, equal to `lift` where
// |a . x - pt| <= eps / 2:  units relu(sigma s + c) for c = eps, eps/2, -eps/2, -eps with weights
// +, -, -, + (lift / (eps / 2)).
template <class T>
FeedForward hat(const std::vector<double>& a, double pt, double eps, double sigma,
                const std::vector<double>& lift) {
  const int64_t d = static_cast<int64_t>(a.size());
  FeedForward ff;
  ff.width = 4;
  const double offsets[4] = {eps, eps / 2, -eps / 2, -eps};
  const double signs[4] = {1, -1, -1, 1};
  for (int r = 0; r < 4; ++r) {
    for (int64_t c = 0; c < d; ++c) ff.in_weight.push_back(sigma * a[c]);
    ff.in_bias.push_back(round_t<T>(-sigma * pt + offsets[r]));
    for (int64_t c = 0; c < d; ++c)
      ff.out_weight.push_back(round_t<T>(signs[r] * lift[c] / (eps / 2)));
  }
  return ff;
}

template <class T>
SelfAttention along(const std::vector<double>& v, double alpha) {
  SelfAttention sa;
  sa.scores = Scores::rank1;
  sa.q = v;
  sa.k = v;
  sa.alpha = round_t<T>(alpha);
  return sa;
}

template <class T>
class Builder {
 public:
  Builder(const Dataset& data, const PointIndex& points, const BuildOptions& opt, uint64_t seed,
          BuildReport& rep)
      : data_(data), pi_(points), opt_(opt), rng_(seed), rep_(rep), d_(data.d), N_(data.size()) {}

  Net run() {
    setup_labels();
    // One SA per round and about 2 log2 N rounds: alpha_s = 1 / (1 + 2 log2 N) parts shared
    // tokens as much as possible while the leaders' leads shrink by a bounded factor
    // ((1 - alpha_s)^rounds, about 1/e).
    alpha_s_ = round_t<T>(opt_.alpha > 0 ? opt_.alpha
                                         : 1.0 / (1.0 + 2.0 * std::log2(std::max<double>(N_, 2))));
    rep_.alpha_split = alpha_s_;
    net_.d = d_;
    net_.dtype = dtype_of<T>();
    // ---- 1. shift ----
    v_ = round_t<T>(random_unit(rng_, d_));
    vt_ = as_t<T>(v_);
    double smin = std::numeric_limits<double>::infinity(), smax = -smin, amax = 0;
    for (int64_t r = 0; r < data_.num_tokens(); ++r) {
      double s = 0;
      for (int64_t c = 0; c < d_; ++c) {
        s += v_[c] * data_.tokens[r * d_ + c];
        amax = std::max(amax, std::fabs(data_.tokens[r * d_ + c]));
      }
      smin = std::min(smin, s);
      smax = std::max(smax, s);
    }
    scale_ = smax - smin > 0 ? smax - smin : amax > 0 ? amax : 1.0;
    rep_.scale = scale_;
    Block first;
    first.role = BlockRole::shift;
    first.ff.width = 1;
    first.ff.in_weight.assign(static_cast<size_t>(d_), 0.0);
    first.ff.in_bias = {1.0};
    for (int64_t c = 0; c < d_; ++c)
      first.ff.out_weight.push_back(round_t<T>((scale_ - smin) * v_[c]));
    first.sa = along<T>(v_, alpha_s_);
    state_.emplace(data_);
    state_->set_parallel(false);
    add_block(std::move(first));
    rebuild_values();
    // Leaders and the initial groups.
    leader_id_.assign(static_cast<size_t>(N_), -1);
    std::map<int64_t, int64_t> group_of_leader;
    for (int64_t n = 0; n < N_; ++n) {
      const int64_t id = find_leader(n);
      auto [it, inserted] = group_of_leader.emplace(id, static_cast<int64_t>(groups_.size()));
      if (inserted) groups_.push_back({});
      groups_[it->second].push_back(n);
    }
    rep_.groups_initial = static_cast<int64_t>(groups_.size());
    // ---- 2. splits, in rounds: every impure group once, SA only after the round's last ----
    rep_.min_isolation_gap = std::numeric_limits<double>::infinity();
    counts_.assign(static_cast<size_t>(pi_.num_points), 0);
    stamp_.assign(static_cast<size_t>(pi_.num_points), -1);
    for (;;) {
      std::vector<int64_t> round;
      for (int64_t g = 0; g < static_cast<int64_t>(groups_.size()); ++g)
        if (impure(groups_[g])) round.push_back(g);
      if (round.empty()) break;
      ++rep_.rounds;
      centroid();
      for (size_t i = 0; i < round.size(); ++i) {
        auto [inside, outside] = split(groups_[round[i]], i + 1 == round.size());
        groups_[round[i]] = std::move(outside);
        groups_.push_back(std::move(inside));
      }
    }
    rep_.groups_final = static_cast<int64_t>(groups_.size());
    if (rep_.split_blocks == 0) rep_.min_isolation_gap = 0;
    leader_margins();
    // ---- 3. collapse ----
    Block collapse;
    collapse.role = BlockRole::collapse;
    collapse.sa = along<T>(v_, 1.0);
    add_block(std::move(collapse));
    // ---- 4. labels ----
    labels();
    net_.validate();
    return std::move(net_);
  }

 private:
  void setup_labels() {
    std::vector<int64_t> ls(data_.labels.begin(), data_.labels.end());
    std::sort(ls.begin(), ls.end());
    ls.erase(std::unique(ls.begin(), ls.end()), ls.end());
    label_index_.resize(static_cast<size_t>(N_));
    for (int64_t n = 0; n < N_; ++n)
      label_index_[n] = std::lower_bound(ls.begin(), ls.end(), data_.labels[n]) - ls.begin();
    rep_.classes = static_cast<int64_t>(ls.size());
  }

  bool impure(const std::vector<int64_t>& g) const {
    for (int64_t n : g)
      if (data_.labels[n] != data_.labels[g[0]]) return true;
    return false;
  }

  void add_block(Block b, const std::vector<T>* ff_dots = nullptr) {
    const CompiledBlock<T> cb = compile_block<T>(b, d_, nullptr);
    net_.blocks.push_back(std::move(b));
    state_->apply(cb, ff_dots);
  }

  // v . x of token i of sequence n, exactly as the SA computes it.
  T vscore(int64_t n, int64_t i) const {
    T acc = 0;
    for (int64_t c = 0; c < d_; ++c) acc = acc + vt_[c] * state_->at(n, i, c);
    return acc;
  }

  // The point id of sequence n's v-maximal token; a tie between two distinct points rejects the
  // attempt.
  int64_t find_leader(int64_t n) {
    const int64_t L = state_->length(n), base = data_.offsets[n];
    std::vector<T> s(static_cast<size_t>(L));
    int64_t best = 0;
    for (int64_t i = 0; i < L; ++i) {
      s[i] = vscore(n, i);
      if (s[i] > s[best]) best = i;
    }
    const int64_t id = pi_.point_id[base + best];
    for (int64_t i = 0; i < L; ++i)
      if (s[i] == s[best] && pi_.point_id[base + i] != id)
        throw AttemptFailed{
            fmt::format("sequence {}: two distinct tokens tie for the v-maximum (score {})", n,
                        static_cast<double>(s[best]))};
    leader_id_[n] = id;
    return id;
  }

  int64_t index_of(int64_t n, int64_t id) const {
    for (int64_t r = data_.offsets[n]; r < data_.offsets[n + 1]; ++r)
      if (pi_.point_id[r] == id) return r - data_.offsets[n];
    return -1;
  }

  void centroid() {
    centroid_.assign(static_cast<size_t>(d_), 0.0);
    for (int64_t n = 0; n < N_; ++n)
      for (int64_t i = 0; i < state_->length(n); ++i)
        for (int64_t c = 0; c < d_; ++c) centroid_[c] += static_cast<double>(state_->at(n, i, c));
    for (double& x : centroid_) x /= static_cast<double>(state_->num_rows());
  }

  // Token t of the group's sequences: the best split by Gini impurity, then the most balanced.
  int64_t choose_token(const std::vector<int64_t>& G) {
    std::vector<int64_t> touched;
    label_counts_.clear();
    std::map<int64_t, int64_t> g_labels;  // label index -> sequences
    for (int64_t n : G) {
      ++g_labels[label_index_[n]];
      for (int64_t r = data_.offsets[n]; r < data_.offsets[n + 1]; ++r) {
        const int64_t id = pi_.point_id[r];
        if (stamp_[id] == n) continue;
        stamp_[id] = n;
        if (counts_[id]++ == 0) touched.push_back(id);
        ++label_counts_[id * rep_.classes + label_index_[n]];
      }
    }
    const double size = static_cast<double>(G.size());
    int64_t best = -1;
    double best_score = -1, best_balance = 0;
    for (int64_t id : touched) {
      const int64_t a = counts_[id];
      if (a == 0 || a == static_cast<int64_t>(G.size())) continue;
      double in = 0, out = 0;
      for (const auto& [l, total] : g_labels) {
        auto it = label_counts_.find(id * rep_.classes + l);
        const double al = it == label_counts_.end() ? 0.0 : it->second;
        in += al * al;
        out += (total - al) * (total - al);
      }
      const double score = in / a + out / (size - a);  // larger: lower Gini impurity
      const double balance = -std::fabs(2.0 * a - size);
      if (score > best_score * (1 + 1e-12) ||
          (score >= best_score * (1 - 1e-12) && balance > best_balance)) {
        best = id;
        best_score = score;
        best_balance = balance;
      }
    }
    for (int64_t id : touched) {
      counts_[id] = 0;
      stamp_[id] = -1;
    }
    if (best < 0) throw AttemptFailed{"a group with two labels has no token that splits it"};
    return best;
  }

  struct Isolation {
    std::vector<double> a;  // rounded to T
    std::vector<T> dots;    // a . x for every distinct value
    double pt = 0, gap = 0;
    int64_t above = 0, below = 0;
  };

  // The distinct token values (bitwise) with their rows, rebuilt after every SA. The split passes
  // depend on a token's value only and the FF is token-wise, so they run over the values.
  void rebuild_values() {
    const int64_t rows = state_->num_rows();
    const size_t bytes = static_cast<size_t>(d_) * sizeof(T);
    std::vector<T> all(static_cast<size_t>(rows * d_));
    for (int64_t n = 0; n < N_; ++n)
      for (int64_t i = 0; i < state_->length(n); ++i) {
        const int64_t r = state_->row(n, i);
        for (int64_t c = 0; c < d_; ++c) all[r * d_ + c] = state_->at(n, i, c);
      }
    std::unordered_map<std::string_view, int64_t> index;
    index.reserve(static_cast<size_t>(rows));
    row_entry_.resize(static_cast<size_t>(rows));
    std::vector<int64_t> first;
    for (int64_t r = 0; r < rows; ++r) {
      const std::string_view key(reinterpret_cast<const char*>(all.data() + r * d_), bytes);
      auto [it, inserted] = index.emplace(key, static_cast<int64_t>(first.size()));
      if (inserted) first.push_back(r);
      row_entry_[r] = it->second;
    }
    const int64_t u = static_cast<int64_t>(first.size());
    uval_.resize(static_cast<size_t>(u * d_));
    for (int64_t e = 0; e < u; ++e)
      std::memcpy(uval_.data() + e * d_, all.data() + first[e] * d_, bytes);
    entry_start_.assign(static_cast<size_t>(u + 1), 0);
    for (int64_t r = 0; r < rows; ++r) ++entry_start_[row_entry_[r] + 1];
    for (int64_t e = 0; e < u; ++e) entry_start_[e + 1] += entry_start_[e];
    entry_rows_.resize(static_cast<size_t>(rows));
    std::vector<int64_t> fill(entry_start_.begin(), entry_start_.end() - 1);
    for (int64_t r = 0; r < rows; ++r) entry_rows_[fill[row_entry_[r]]++] = r;
  }

  // How well direction a isolates the point t_img: the smallest |a . (p - t)| over every token p
  // of the dataset that is not a copy of t (over the distinct values, counts weighted by rows).
  Isolation isolation(std::vector<double> a, const std::vector<T>& t_img) {
    Isolation iso;
    iso.a = round_t<T>(std::move(a));
    const std::vector<T> at = as_t<T>(iso.a);
    const int64_t u = static_cast<int64_t>(entry_start_.size()) - 1;
    iso.dots.resize(static_cast<size_t>(u));
    // Four values at a time: four independent chains, each in model.h's order.
    int64_t e0 = 0;
    for (; e0 + 4 <= u; e0 += 4) {
      const T* x = uval_.data() + e0 * d_;
      T a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (int64_t c = 0; c < d_; ++c) {
        a0 = a0 + at[c] * x[c];
        a1 = a1 + at[c] * x[d_ + c];
        a2 = a2 + at[c] * x[2 * d_ + c];
        a3 = a3 + at[c] * x[3 * d_ + c];
      }
      iso.dots[e0] = a0;
      iso.dots[e0 + 1] = a1;
      iso.dots[e0 + 2] = a2;
      iso.dots[e0 + 3] = a3;
    }
    for (; e0 < u; ++e0) iso.dots[e0] = dot(at.data(), uval_.data() + e0 * d_, d_);
    const T pt = dot(at.data(), t_img.data(), d_);
    iso.pt = static_cast<double>(pt);
    double g = std::numeric_limits<double>::infinity();
    int64_t above = 0, below = 0;
    bool collision = false;
    for (int64_t e = 0; e < u; ++e) {
      const T p = iso.dots[e];
      if (p == pt) {
        if (std::memcmp(uval_.data() + e * d_, t_img.data(), sizeof(T) * d_) != 0) collision = true;
        continue;
      }
      const double diff = static_cast<double>(p) - iso.pt;
      g = std::min(g, std::fabs(diff));
      (diff > 0 ? above : below) += entry_start_[e + 1] - entry_start_[e];
    }
    iso.gap = collision ? 0.0 : std::isfinite(g) ? g : scale_;
    iso.above = above;
    iso.below = below;
    return iso;
  }

  // A split block: its FF over the distinct values (exactly the evaluator's arithmetic for each
  // token, written back to every row of the value), then its SA, if any, over the tokens.
  // `adots` (when given): dot(a, value) for every value, a the hat's direction before the sign
  // sigma; the compiled direction is sigma * a, and dot(-a, x) = -dot(a, x) exactly.
  void add_split_block(Block b, const std::vector<T>* adots = nullptr, T sigma = 1) {
    const CompiledBlock<T> cb = compile_block<T>(b, d_, nullptr);
    const CompiledFF<T>& ff = cb.ff;
    const int64_t u = static_cast<int64_t>(entry_start_.size()) - 1, G = ff.num_dirs;
    GRADUS_CHECK(adots == nullptr || G == 1, "build-hardmax", "a hat has one direction");
    std::vector<T> dots(static_cast<size_t>(G)), h(static_cast<size_t>(ff.width));
    for (int64_t e = 0; e < u; ++e) {
      T* x = uval_.data() + e * d_;
      if (adots != nullptr)
        dots[0] = sigma < 0 ? -(*adots)[e] : (*adots)[e];
      else
        for (int64_t g = 0; g < G; ++g) dots[g] = dot(ff.dirs.data() + g * d_, x, d_);
      bool on = false;
      for (const auto& [g, sg, bmax] : ff.groups) on |= sg * dots[g] + bmax > 0;
      if (!on) continue;
      for (int64_t r = 0; r < ff.width; ++r) {
        const T z = ff.sign[r] * dots[ff.dir_of[r]] + ff.bias[r];
        h[r] = z > 0 ? z : T(0);
      }
      for (int64_t r = 0; r < ff.width; ++r)
        if (h[r] > 0)
          for (int64_t c = 0; c < d_; ++c) x[c] = x[c] + ff.out[r * d_ + c] * h[r];
      for (int64_t k = entry_start_[e]; k < entry_start_[e + 1]; ++k)
        state_->set_row(entry_rows_[k], x);
    }
    const bool has_sa = b.sa.scores != Scores::none && b.sa.alpha != 0;
    Block sa_only;
    sa_only.sa = b.sa;
    net_.blocks.push_back(std::move(b));
    if (has_sa) {
      state_->apply(compile_block<T>(sa_only, d_, nullptr));
      rebuild_values();
    }
  }

  std::pair<std::vector<int64_t>, std::vector<int64_t>> split(const std::vector<int64_t>& G,
                                                              bool with_sa) {
    const int64_t t_id = choose_token(G);
    const int64_t m_id = leader_id_[G[0]];
    std::vector<int64_t> inside, outside;
    for (int64_t n : G) (index_of(n, t_id) >= 0 ? inside : outside).push_back(n);
    const int64_t t_i = index_of(inside[0], t_id);
    const std::vector<T> t_img = state_->token(inside[0], t_i);
    const int64_t m_i = index_of(G[0], m_id);
    // Direction: from the centroid towards t, so that t projects near the top and few tokens lie
    // on the side where the hat's units cancel; perturbed when that does not isolate t.
    std::vector<double> a0(static_cast<size_t>(d_));
    double norm = 0;
    for (int64_t c = 0; c < d_; ++c) {
      a0[c] = static_cast<double>(t_img[c]) - centroid_[c];
      norm += a0[c] * a0[c];
    }
    if (norm == 0)
      a0 = random_unit(rng_, d_);
    else
      for (double& x : a0) x /= std::sqrt(norm);
    // The hat's pre-activation at t is exact up to a few ulps of |a . t|: a gap of 32 ulps leaves
    // the flat top (half-width eps / 2 = gap / 4) 8 ulps of room.
    const double floor_rel = 32 * std::numeric_limits<T>::epsilon();
    Isolation best;
    best.gap = -1;
    const int64_t tries = std::max<int64_t>(opt_.candidates, 1) + 8;
    for (int64_t j = 0; j < tries; ++j) {
      std::vector<double> a = a0;
      if (j > 0) {
        const std::vector<double> r = random_unit(rng_, d_);
        double n2 = 0;
        for (int64_t c = 0; c < d_; ++c) {
          a[c] += 0.5 * r[c];
          n2 += a[c] * a[c];
        }
        for (double& x : a) x /= std::sqrt(n2);
      }
      Isolation iso = isolation(std::move(a), t_img);
      if (iso.gap > best.gap) best = std::move(iso);
      const double floor = floor_rel * (std::fabs(best.pt) + scale_);
      if (j + 1 >= opt_.candidates && best.gap > floor) break;
    }
    const double floor = floor_rel * (std::fabs(best.pt) + scale_);
    if (best.gap <= floor)
      throw AttemptFailed{fmt::format(
          "split {}: no direction isolates the token (best gap {:.3g}, needs > {:.3g} in {})",
          rep_.split_blocks + 1, best.gap, floor, dtype_name(dtype_of<T>()))};
    rep_.min_isolation_gap = std::min(rep_.min_isolation_gap, best.gap);
    const double eps = best.gap / 2;
    const double sigma = best.above <= best.below ? 1.0 : -1.0;  // fewer tokens where units cancel
    const double lift_size = static_cast<double>(vscore(G[0], m_i)) -
                             static_cast<double>(vscore(inside[0], t_i)) + scale_;
    std::vector<double> lift(static_cast<size_t>(d_));
    for (int64_t c = 0; c < d_; ++c) lift[c] = lift_size * v_[c];
    Block b;
    b.role = BlockRole::split;
    b.ff = hat<T>(best.a, best.pt, eps, sigma, lift);
    if (with_sa) b.sa = along<T>(v_, alpha_s_);
    add_split_block(std::move(b), &best.dots, static_cast<T>(sigma));
    ++rep_.split_blocks;
    // The lift must have made t the leader of G_t and left the others' leader alone.
    for (int64_t n : inside)
      if (find_leader(n) != t_id)
        throw AttemptFailed{
            fmt::format("split {}: the lifted token did not become the leader of sequence {}",
                        rep_.split_blocks, n)};
    for (int64_t n : outside)
      if (find_leader(n) != m_id)
        throw AttemptFailed{
            fmt::format("split {}: sequence {} lost its leader", rep_.split_blocks, n)};
    return {std::move(inside), std::move(outside)};
  }

  // The smallest lead of a leader's v-score over the other points of its sequence.
  void leader_margins() {
    std::vector<T> s;
    state_->project(vt_, s);
    double m = std::numeric_limits<double>::infinity();
    for (int64_t n = 0; n < N_; ++n) {
      const int64_t r0 = state_->row(n, 0), L = state_->length(n), base = data_.offsets[n];
      const int64_t lead = index_of(n, leader_id_[n]);
      for (int64_t i = 0; i < L; ++i)
        if (pi_.point_id[base + i] != leader_id_[n])
          m = std::min(m, static_cast<double>(s[r0 + lead]) - static_cast<double>(s[r0 + i]));
    }
    rep_.min_leader_gap = std::isfinite(m) ? m : 0.0;
  }

  void labels() {
    // Distinct collapsed points and their labels.
    std::map<std::vector<T>, int64_t> leader_label;
    for (int64_t n = 0; n < N_; ++n) {
      if (state_->length(n) != 1)
        throw AttemptFailed{fmt::format("sequence {} did not collapse onto its leader", n)};
      auto [it, inserted] = leader_label.emplace(state_->token(n, 0), data_.labels[n]);
      if (!inserted && it->second != data_.labels[n])
        throw AttemptFailed{fmt::format(
            "sequence {} (label {}) collapsed onto the point of a sequence with label {}", n,
            data_.labels[n], it->second)};
    }
    const int64_t K = static_cast<int64_t>(leader_label.size());
    std::vector<std::vector<T>> L;
    std::vector<int64_t> y;
    for (const auto& [p, l] : leader_label) {
      L.push_back(p);
      y.push_back(l);
    }
    // The direction that spreads the leaders best.
    std::vector<double> a;
    std::vector<T> P, bestP;
    double gap = -1;
    // Cheap (K points each): many random directions, the widest smallest spacing wins.
    for (int64_t j = 0; j < std::max<int64_t>(opt_.candidates, 64); ++j) {
      const std::vector<double> cand = round_t<T>(random_unit(rng_, d_));
      const std::vector<T> ct = as_t<T>(cand);
      P.resize(static_cast<size_t>(K));
      for (int64_t k = 0; k < K; ++k) P[k] = dot(ct.data(), L[k].data(), d_);
      std::vector<T> sorted = P;
      std::sort(sorted.begin(), sorted.end());
      double g = K > 1 ? std::numeric_limits<double>::infinity() : scale_;
      for (int64_t k = 1; k < K; ++k)
        g = std::min(g, static_cast<double>(sorted[k]) - static_cast<double>(sorted[k - 1]));
      if (g > gap) {
        gap = g;
        a = cand;
        bestP = P;
      }
    }
    const double pmax = static_cast<double>(*std::max_element(bestP.begin(), bestP.end()));
    const double pmin = static_cast<double>(*std::min_element(bestP.begin(), bestP.end()));
    const double floor =
        32 * std::numeric_limits<T>::epsilon() * (std::fabs(pmax) + std::fabs(pmin) + scale_);
    if (gap <= floor)
      throw AttemptFailed{
          fmt::format("labels: no direction separates the {} leaders (best gap "
                      "{:.3g}, needs > {:.3g})",
                      K, gap, floor)};
    rep_.label_gap = gap;
    const double eps = gap / 2;
    // e: a unit vector orthogonal to a.
    std::vector<double> e = random_unit(rng_, d_);
    double ea = 0, aa = 0;
    for (int64_t c = 0; c < d_; ++c) {
      ea += e[c] * a[c];
      aa += a[c] * a[c];
    }
    double norm = 0;
    for (int64_t c = 0; c < d_; ++c) {
      e[c] -= ea / aa * a[c];
      norm += e[c] * e[c];
    }
    for (double& x : e) x /= std::sqrt(norm);
    e = round_t<T>(e);
    net_.readout = e;
    const double B = pmax + std::max(pmax - pmin, scale_);
    std::vector<int64_t> order(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; ++k) order[k] = k;
    std::sort(order.begin(), order.end(),
              [&](int64_t i, int64_t j) { return bestP[i] < bestP[j]; });
    for (int64_t k : order) {
      std::vector<double> lift(static_cast<size_t>(d_));
      for (int64_t c = 0; c < d_; ++c)
        lift[c] = B * a[c] + static_cast<double>(y[k]) * e[c] - static_cast<double>(L[k][c]);
      Block b;
      b.role = BlockRole::label;
      b.ff = hat<T>(a, static_cast<double>(bestP[k]), eps, -1.0, lift);
      net_.blocks.push_back(std::move(b));
    }
    rep_.label_blocks = K;
  }

  const Dataset& data_;
  const PointIndex& pi_;
  const BuildOptions& opt_;
  Rng rng_;
  BuildReport& rep_;
  const int64_t d_, N_;
  Net net_;
  std::optional<State<T>> state_;
  std::vector<double> v_, centroid_;
  std::vector<T> vt_;
  double scale_ = 1, alpha_s_ = 0;
  std::vector<int64_t> leader_id_;
  std::vector<std::vector<int64_t>> groups_;
  std::vector<int64_t> label_index_;
  std::vector<int64_t> counts_, stamp_;
  std::vector<T> uval_;                                        // (distinct values, d)
  std::vector<int64_t> row_entry_, entry_start_, entry_rows_;  // row -> value, value -> rows
  std::unordered_map<int64_t, int32_t> label_counts_;
};

template <class T>
BuildResult build_as(const Dataset& data, const BuildOptions& opt) {
  BuildResult out;
  BuildReport& rep = out.report;
  rep.sequences = data.size();
  rep.d = data.d;
  rep.tokens = data.num_tokens();
  rep.max_length = data.max_length();
  rep.dtype = std::string(dtype_name(opt.dtype));
  const PointIndex pi = index_points(data);
  rep.points = pi.num_points;
  const int64_t N = data.size(), d = data.d;
  rep.block_bound = 2 * N + 1;
  rep.paper_blocks = 4 * N + 1;
  rep.parameter_bound = (10 * d + 5) * (N - 1) + (8 * d + 4) * N + 6 * d + 3;
  const auto t0 = Clock::now();
  for (int64_t attempt = 0; attempt <= opt.retries; ++attempt) {
    rep.attempts = attempt + 1;
    BuildReport trial = rep;
    try {
      Builder<T> b(data, pi, opt, opt.seed * 1000003 + static_cast<uint64_t>(attempt), trial);
      Net net = b.run();
      trial.blocks = net.num_blocks();
      trial.parameters = net.num_parameters();
      trial.block_formula = 2 + 2 * trial.groups_final - trial.groups_initial;
      trial.build_seconds = seconds_since(t0);
      if (opt.verify) {
        const Classification c = classify(net, data);
        trial.verify_seconds = c.seconds;
        trial.train_accuracy = c.accuracy;
        trial.readout_margin = c.readout_margin;
        if (c.correct != N)
          throw AttemptFailed{
              fmt::format("verification: {} of {} sequences misclassified", N - c.correct, N)};
      }
      rep = trial;
      net.info["build"] = rep.to_json().dump();
      out.net = std::move(net);
      return out;
    } catch (const AttemptFailed& f) {
      rep.failed_attempts.push_back(fmt::format("attempt {}: {}", attempt + 1, f.why));
    }
  }
  GRADUS_FAIL("build-hardmax", "every attempt failed ({} with seed {}, {}):\n  {}", data.source,
              opt.seed, dtype_name(opt.dtype), fmt::join(rep.failed_attempts, "\n  "));
}

}  // namespace

BuildResult build(const Dataset& data, const BuildOptions& options) {
  data.validate();
  GRADUS_CHECK(data.d >= 2, "build-hardmax",
               "the construction needs d >= 2 (the readout direction must be orthogonal to the "
               "label direction), found d = {} in {}",
               data.d, data.source);
  GRADUS_CHECK(options.candidates >= 1, "build-hardmax", "candidates must be >= 1, found {}",
               options.candidates);
  GRADUS_CHECK(options.retries >= 0, "build-hardmax", "retries must be >= 0, found {}",
               options.retries);
  GRADUS_CHECK(options.alpha >= 0 && options.alpha < 1, "build-hardmax",
               "alpha must lie in [0, 1) (0: 1/N), found {}", options.alpha);
  check_separable(data);
  if (options.dtype == DType::f32) return build_as<float>(data, options);
  GRADUS_CHECK(options.dtype == DType::f64, "build-hardmax", "--dtype must be f64 or f32, found {}",
               dtype_name(options.dtype));
  return build_as<double>(data, options);
}

}  // namespace gradus::hardmax
