// The CPU streaming PNA aggregation kernels (kernels/pna.h), called directly: forward moments,
// arg indices and log-sum-exp, and the backward, against a naive f64 reference written from the
// formulas of kernels/pna.h, over both adjacencies, every threshold, the optional moments, one to
// three query blocks and the (B, T, H, D) storage of heads split from a projection; the backward
// also against central differences of sum(grad * moments) through the forward kernel (which checks
// the formulas themselves); f32 against the f64 reference; bit-identical results on 1 and 2
// threads; empty shapes; and the errors for bad options.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "kernels/pna.h"
#include "kernels/registry.h"

namespace gradus::kernels {
namespace {

// A shape and the layout of q, k, v and their gradients: (B, H, T, D) contiguous, or (B, T, H, D)
// storage read as (B, H, T, D) through strides.
struct Case {
  PnaShape s;
  bool strided = false;

  int64_t elements() const { return s.batch * s.heads * s.t * s.head_dim; }
  int64_t stride_b() const { return s.heads * s.t * s.head_dim; }
  int64_t stride_h() const { return strided ? s.head_dim : s.t * s.head_dim; }
  int64_t stride_t() const { return strided ? s.heads * s.head_dim : s.head_dim; }
  // Offset of row t of head (b, h) in an operand's storage.
  int64_t at(int64_t b, int64_t h, int64_t t) const {
    return b * stride_b() + h * stride_h() + t * stride_t();
  }
  std::string str() const {
    return "B=" + std::to_string(s.batch) + " H=" + std::to_string(s.heads) +
           " T=" + std::to_string(s.t) + " D=" + std::to_string(s.head_dim) +
           " adjacency=" + std::to_string(static_cast<int>(s.adjacency)) +
           " threshold=" + std::to_string(static_cast<int>(s.threshold)) +
           " sq/max/min=" + std::to_string(s.with_square) + std::to_string(s.with_max) +
           std::to_string(s.with_min) + (strided ? " strided" : "");
  }
};

Case make_case(int64_t t, int64_t d, PnaAdjacency adjacency, PnaThreshold threshold, bool square,
               bool with_max, bool with_min, bool strided) {
  Case c;
  c.s.batch = 2, c.s.heads = 2, c.s.t = t, c.s.head_dim = d;
  c.s.adjacency = adjacency, c.s.threshold = threshold;
  // Softmax weights are about 1 / (i + 1): a lower tau keeps some of them above it.
  c.s.scale = (adjacency == PnaAdjacency::softmax ? 2.0 : 1.0) / std::sqrt(static_cast<double>(d));
  c.s.tau = adjacency == PnaAdjacency::softmax ? 0.05 : 0.2;
  c.s.beta = 10.0;
  c.s.with_square = square, c.s.with_max = with_max, c.s.with_min = with_min;
  c.strided = strided;
  return c;
}

std::vector<double> randn(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> dist;
  std::vector<double> x(static_cast<size_t>(n));
  for (double& e : x) e = dist(gen);
  return x;
}

struct Inputs {
  std::vector<double> q, k, v, grad;  // q, k, v in the case's layout; grad (B, H, T, W)
};

Inputs make_inputs(const Case& c, uint32_t seed) {
  return {randn(c.elements(), seed), randn(c.elements(), seed + 1), randn(c.elements(), seed + 2),
          randn(c.s.batch * c.s.heads * c.s.t * c.s.width(), seed + 3)};
}

// ---- the naive f64 reference, from the formulas of kernels/pna.h ----

double threshold_ref(const PnaShape& s, double a) {
  const double x = a - s.tau;
  switch (s.threshold) {
    case PnaThreshold::none: return a;
    case PnaThreshold::relu: return std::max(x, 0.0);
    case PnaThreshold::sharp_softplus:
      return s.beta * x > 20 ? x : std::log1p(std::exp(s.beta * x)) / s.beta;
    case PnaThreshold::sigmoid: return 1 / (1 + std::exp(-s.beta * x));
    case PnaThreshold::binary: return a > s.tau ? 1 : 0;
  }
  return 0;
}

double threshold_grad_ref(const PnaShape& s, double a) {
  const double x = a - s.tau;
  switch (s.threshold) {
    case PnaThreshold::none: return 1;
    case PnaThreshold::relu: return a > s.tau ? 1 : 0;
    case PnaThreshold::sharp_softplus: return s.beta * x > 20 ? 1 : 1 / (1 + std::exp(-s.beta * x));
    case PnaThreshold::sigmoid: {
      const double y = 1 / (1 + std::exp(-s.beta * x));
      return s.beta * y * (1 - y);
    }
    case PnaThreshold::binary: return 0;
  }
  return 0;
}

// Forward and backward results, every tensor (B, H, T, *) contiguous.
template <class T>
struct Results {
  std::vector<T> moments, lse, grad_q, grad_k, grad_v;
  std::vector<int32_t> arg_max, arg_min;
};

Results<double> reference(const Case& c, const Inputs& in) {
  const PnaShape& s = c.s;
  const int64_t L = s.t, D = s.head_dim, W = s.width(), heads = s.batch * s.heads;
  Results<double> r;
  r.moments.assign(static_cast<size_t>(heads * L * W), 0.0);
  r.lse.assign(static_cast<size_t>(heads * L), 0.0);
  r.arg_max.assign(static_cast<size_t>(heads * L * D), -1);
  r.arg_min = r.arg_max;
  r.grad_q.assign(static_cast<size_t>(heads * L * D), 0.0);
  r.grad_k = r.grad_q, r.grad_v = r.grad_q;
  for (int64_t bh = 0; bh < heads; ++bh) {
    const int64_t b = bh / s.heads, h = bh % s.heads;
    auto q = [&](int64_t t, int64_t d) { return in.q[c.at(b, h, t) + d]; };
    auto k = [&](int64_t t, int64_t d) { return in.k[c.at(b, h, t) + d]; };
    auto v = [&](int64_t t, int64_t d) { return in.v[c.at(b, h, t) + d]; };
    std::vector<double> S(L * L), A(L * L, 0.0), Ap(L * L, 0.0);
    for (int64_t i = 0; i < L; ++i) {
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j <= i; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += q(i, d) * k(j, d);
        S[i * L + j] = s.scale * dot;
        m = std::max(m, S[i * L + j]);
      }
      double z = 0;
      for (int64_t j = 0; j <= i; ++j) z += std::exp(S[i * L + j] - m);
      r.lse[bh * L + i] = m + std::log(z);
      for (int64_t j = 0; j <= i; ++j) {
        A[i * L + j] = s.adjacency == PnaAdjacency::softmax
                           ? std::exp(S[i * L + j] - r.lse[bh * L + i])
                           : std::max(S[i * L + j], 0.0);
        Ap[i * L + j] = threshold_ref(s, A[i * L + j]);
      }
    }
    // moments
    for (int64_t i = 0; i < L; ++i) {
      double* row = &r.moments[(bh * L + i) * W];
      for (int64_t j = 0; j <= i; ++j) {
        const double a = Ap[i * L + j];
        row[s.degree_offset()] += a;
        for (int64_t d = 0; d < D; ++d) {
          row[d] += a * v(j, d);
          if (s.with_square) row[s.square_offset() + d] += a * v(j, d) * v(j, d);
          if (a > 0) {
            int32_t& amax = r.arg_max[(bh * L + i) * D + d];
            int32_t& amin = r.arg_min[(bh * L + i) * D + d];
            if (amax < 0 || v(j, d) > v(amax, d)) amax = static_cast<int32_t>(j);
            if (amin < 0 || v(j, d) < v(amin, d)) amin = static_cast<int32_t>(j);
          }
        }
      }
      for (int64_t d = 0; d < D; ++d) {
        const int32_t amax = r.arg_max[(bh * L + i) * D + d];
        const int32_t amin = r.arg_min[(bh * L + i) * D + d];
        if (s.with_max) row[s.max_offset() + d] = amax < 0 ? 0.0 : v(amax, d);
        if (s.with_min) row[s.min_offset() + d] = amin < 0 ? 0.0 : v(amin, d);
      }
    }
    // backward
    const double* g = &in.grad[bh * L * W];
    std::vector<double> gS(L * L, 0.0);
    for (int64_t i = 0; i < L; ++i) {
      std::vector<double> gA(i + 1);
      double dot = 0;
      for (int64_t j = 0; j <= i; ++j) {
        double gap = g[i * W + s.degree_offset()];
        for (int64_t d = 0; d < D; ++d) {
          gap += g[i * W + d] * v(j, d);
          if (s.with_square) gap += g[i * W + s.square_offset() + d] * v(j, d) * v(j, d);
        }
        gA[j] = gap * threshold_grad_ref(s, A[i * L + j]);
        dot += A[i * L + j] * gA[j];
      }
      for (int64_t j = 0; j <= i; ++j)
        gS[i * L + j] = s.adjacency == PnaAdjacency::softmax ? A[i * L + j] * (gA[j] - dot)
                                                             : (S[i * L + j] > 0 ? gA[j] : 0.0);
    }
    for (int64_t i = 0; i < L; ++i)
      for (int64_t j = 0; j <= i; ++j)
        for (int64_t d = 0; d < D; ++d) {
          r.grad_q[(bh * L + i) * D + d] += s.scale * gS[i * L + j] * k(j, d);
          r.grad_k[(bh * L + j) * D + d] += s.scale * gS[i * L + j] * q(i, d);
          double gv = Ap[i * L + j] * g[i * W + d];
          if (s.with_square) gv += Ap[i * L + j] * 2 * g[i * W + s.square_offset() + d] * v(j, d);
          r.grad_v[(bh * L + j) * D + d] += gv;
        }
    for (int64_t i = 0; i < L; ++i)
      for (int64_t d = 0; d < D; ++d) {
        const int32_t amax = r.arg_max[(bh * L + i) * D + d];
        const int32_t amin = r.arg_min[(bh * L + i) * D + d];
        if (s.with_max && amax >= 0)
          r.grad_v[(bh * L + amax) * D + d] += g[i * W + s.max_offset() + d];
        if (s.with_min && amin >= 0)
          r.grad_v[(bh * L + amin) * D + d] += g[i * W + s.min_offset() + d];
      }
  }
  if (!s.with_max) r.arg_max.clear();
  if (!s.with_min) r.arg_min.clear();
  return r;
}

// ---- the kernels ----

template <class T>
constexpr DType dtype_of() {
  return std::is_same_v<T, double> ? DType::f64 : DType::f32;
}

template <class T>
std::vector<T> cast(const std::vector<double>& x) {
  return std::vector<T>(x.begin(), x.end());
}

template <class T>
AttentionOperand operand(const Case& c, const std::vector<T>& x) {
  return {x.data(), c.stride_b(), c.stride_h(), c.stride_t()};
}
template <class T>
AttentionOutput output(const Case& c, std::vector<T>& x) {
  return {x.data(), c.stride_b(), c.stride_h(), c.stride_t()};
}

// (B, H, T, D) contiguous copy of an operand stored in the case's layout.
template <class T>
std::vector<T> unstride(const Case& c, const std::vector<T>& x) {
  std::vector<T> out;
  out.reserve(x.size());
  for (int64_t b = 0; b < c.s.batch; ++b)
    for (int64_t h = 0; h < c.s.heads; ++h)
      for (int64_t t = 0; t < c.s.t; ++t)
        for (int64_t d = 0; d < c.s.head_dim; ++d) out.push_back(x[c.at(b, h, t) + d]);
  return out;
}

template <class T>
void forward(const Case& c, const std::vector<T>& q, const std::vector<T>& k,
             const std::vector<T>& v, Results<T>& r) {
  const int64_t rows = c.s.batch * c.s.heads * c.s.t;
  // Outputs start as NaN / garbage: the kernel must write every element.
  r.moments.assign(static_cast<size_t>(rows * c.s.width()), std::numeric_limits<T>::quiet_NaN());
  r.lse.assign(static_cast<size_t>(rows), std::numeric_limits<T>::quiet_NaN());
  r.arg_max.assign(c.s.with_max ? static_cast<size_t>(rows * c.s.head_dim) : 0, 12345);
  r.arg_min.assign(c.s.with_min ? static_cast<size_t>(rows * c.s.head_dim) : 0, 12345);
  static const KernelRef<PnaForwardFn> kernel(kPnaForward);
  kernel(kCPU, dtype_of<T>())(c.s, operand(c, q), operand(c, k), operand(c, v), r.moments.data(),
                              c.s.with_max ? r.arg_max.data() : nullptr,
                              c.s.with_min ? r.arg_min.data() : nullptr, r.lse.data());
}

// Forward then backward in dtype T; the gradients come back (B, H, T, D) contiguous.
template <class T>
Results<T> run(const Case& c, const Inputs& in) {
  const std::vector<T> q = cast<T>(in.q), k = cast<T>(in.k), v = cast<T>(in.v);
  const std::vector<T> grad = cast<T>(in.grad);
  Results<T> r;
  forward(c, q, k, v, r);
  std::vector<T> gq(q.size(), std::numeric_limits<T>::quiet_NaN()), gk = gq, gv = gq;
  static const KernelRef<PnaBackwardFn> kernel(kPnaBackward);
  kernel(kCPU, dtype_of<T>())(c.s, operand(c, q), operand(c, k), operand(c, v), r.lse.data(),
                              c.s.with_max ? r.arg_max.data() : nullptr,
                              c.s.with_min ? r.arg_min.data() : nullptr, grad.data(), output(c, gq),
                              output(c, gk), output(c, gv));
  r.grad_q = unstride(c, gq), r.grad_k = unstride(c, gk), r.grad_v = unstride(c, gv);
  return r;
}

// max |got - want| / max(1, max |want|): an error relative to the tensor's scale (NaN fails).
template <class T>
double relative_error(const std::vector<T>& got, const std::vector<double>& want) {
  EXPECT_EQ(got.size(), want.size());
  double err = 0, scale = 1;
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    const double e = std::abs(static_cast<double>(got[i]) - want[i]);
    err = std::isnan(e) ? std::numeric_limits<double>::infinity() : std::max(err, e);
    scale = std::max(scale, std::abs(want[i]));
  }
  return err / scale;
}

template <class T>
void expect_matches(const Case& c, const Results<T>& got, const Results<double>& want, double tol) {
  EXPECT_LE(relative_error(got.moments, want.moments), tol) << "moments, " << c.str();
  if (c.s.adjacency == PnaAdjacency::softmax) {
    EXPECT_LE(relative_error(got.lse, want.lse), tol) << "lse, " << c.str();
  }
  EXPECT_EQ(got.arg_max, want.arg_max) << c.str();
  EXPECT_EQ(got.arg_min, want.arg_min) << c.str();
  EXPECT_LE(relative_error(got.grad_q, want.grad_q), tol) << "grad_q, " << c.str();
  EXPECT_LE(relative_error(got.grad_k, want.grad_k), tol) << "grad_k, " << c.str();
  EXPECT_LE(relative_error(got.grad_v, want.grad_v), tol) << "grad_v, " << c.str();
}

constexpr PnaAdjacency kAdjacencies[] = {PnaAdjacency::relu, PnaAdjacency::softmax};
constexpr PnaThreshold kThresholds[] = {PnaThreshold::none, PnaThreshold::relu,
                                        PnaThreshold::sharp_softplus, PnaThreshold::sigmoid,
                                        PnaThreshold::binary};

TEST(PnaKernel, MatchesTheReferenceInF64AndF32) {
  int index = 0;
  for (PnaAdjacency adjacency : kAdjacencies)
    for (PnaThreshold threshold : kThresholds)
      for (int64_t t : {1, 5, 70, 130}) {
        // Every combination of the optional moments, both head sizes and both layouts come round.
        const Case c = make_case(t, index % 3 == 0 ? 3 : 16, adjacency, threshold, index % 2,
                                 (index / 2) % 2, (index / 4) % 2 == 0, (index / 3) % 2);
        const Inputs in = make_inputs(c, 100 + index);
        const Results<double> want = reference(c, in);
        expect_matches(c, run<double>(c, in), want, 1e-10);
        expect_matches(c, run<float>(c, in), want, 2e-4);
        ++index;
      }
}

// sum(grad * moments) through the forward kernel in f64.
double loss(const Case& c, const Inputs& in) {
  Results<double> r;
  forward(c, in.q, in.k, in.v, r);
  double l = 0;
  for (size_t i = 0; i < r.moments.size(); ++i) l += in.grad[i] * r.moments[i];
  return l;
}

TEST(PnaKernel, BackwardMatchesCentralDifferences) {
  const double h = 1e-6;
  uint32_t seed = 7;
  for (PnaAdjacency adjacency : kAdjacencies)
    for (PnaThreshold threshold : kThresholds) {
      // Every element of a small case (one block)...
      {
        const Case c = make_case(5, 3, adjacency, threshold, true, true, true, true);
        const Inputs in = make_inputs(c, seed++);
        const Results<double> r = run<double>(c, in);
        const std::vector<const std::vector<double>*> grads = {&r.grad_q, &r.grad_k, &r.grad_v};
        for (int which = 0; which < 3; ++which)
          for (int64_t b = 0; b < c.s.batch; ++b)
            for (int64_t hd = 0; hd < c.s.heads; ++hd)
              for (int64_t t = 0; t < c.s.t; ++t)
                for (int64_t d = 0; d < c.s.head_dim; ++d) {
                  Inputs x = in;
                  std::vector<double>& xs = which == 0 ? x.q : which == 1 ? x.k : x.v;
                  const int64_t at = c.at(b, hd, t) + d;
                  xs[at] += h;
                  const double up = loss(c, x);
                  xs[at] -= 2 * h;
                  const double numeric = (up - loss(c, x)) / (2 * h);
                  const double analytic =
                      (*grads[which])[((b * c.s.heads + hd) * c.s.t + t) * c.s.head_dim + d];
                  EXPECT_NEAR(analytic, numeric, 1e-6 * (1 + std::abs(numeric)))
                      << "operand " << which << " (" << b << ", " << hd << ", " << t << ", " << d
                      << "), " << c.str();
                }
      }
      // ...and directional derivatives of one with three query blocks.
      const Case c = make_case(130, 16, adjacency, threshold, true, true, true, false);
      const Inputs in = make_inputs(c, seed++);
      const Results<double> r = run<double>(c, in);
      for (int dir = 0; dir < 2; ++dir) {
        const Inputs u = make_inputs(c, 1000 + seed++);
        Inputs plus = in, minus = in;
        double analytic = 0;
        for (size_t i = 0; i < in.q.size(); ++i) {
          plus.q[i] += h * u.q[i], minus.q[i] -= h * u.q[i];
          plus.k[i] += h * u.k[i], minus.k[i] -= h * u.k[i];
          plus.v[i] += h * u.v[i], minus.v[i] -= h * u.v[i];
        }
        const std::vector<double> uq = unstride(c, u.q), uk = unstride(c, u.k),
                                  uv = unstride(c, u.v);
        for (size_t i = 0; i < uq.size(); ++i)
          analytic += r.grad_q[i] * uq[i] + r.grad_k[i] * uk[i] + r.grad_v[i] * uv[i];
        const double numeric = (loss(c, plus) - loss(c, minus)) / (2 * h);
        EXPECT_NEAR(analytic, numeric, 1e-5 * (1 + std::abs(numeric))) << c.str();
      }
    }
}

TEST(PnaKernel, ResultsDoNotDependOnTheThreadCount) {
  const int threads = omp_get_max_threads();
  for (PnaAdjacency adjacency : kAdjacencies) {
    const Case c =
        make_case(130, 16, adjacency, PnaThreshold::sharp_softplus, true, true, true, true);
    const Inputs in = make_inputs(c, 42);
    omp_set_num_threads(1);
    const Results<float> one = run<float>(c, in);
    omp_set_num_threads(2);
    const Results<float> two = run<float>(c, in);
    omp_set_num_threads(threads);
    auto same_bits = [](const std::vector<float>& a, const std::vector<float>& b) {
      return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
    };
    EXPECT_TRUE(same_bits(one.moments, two.moments)) << c.str();
    EXPECT_TRUE(same_bits(one.lse, two.lse)) << c.str();
    EXPECT_EQ(one.arg_max, two.arg_max);
    EXPECT_EQ(one.arg_min, two.arg_min);
    EXPECT_TRUE(same_bits(one.grad_q, two.grad_q)) << c.str();
    EXPECT_TRUE(same_bits(one.grad_k, two.grad_k)) << c.str();
    EXPECT_TRUE(same_bits(one.grad_v, two.grad_v)) << c.str();
  }
}

TEST(PnaKernel, EmptyShapesDoNothing) {
  static const KernelRef<PnaForwardFn> fwd(kPnaForward);
  static const KernelRef<PnaBackwardFn> bwd(kPnaBackward);
  for (const auto& [b, h, t] : {std::tuple{2, 2, 0}, std::tuple{0, 2, 5}, std::tuple{2, 0, 5}}) {
    PnaShape s;
    s.batch = b, s.heads = h, s.t = t, s.head_dim = 4;
    s.adjacency = PnaAdjacency::softmax, s.with_max = s.with_min = true;
    EXPECT_NO_THROW(fwd(kCPU, DType::f32)(s, {}, {}, {}, nullptr, nullptr, nullptr, nullptr));
    EXPECT_NO_THROW(
        bwd(kCPU, DType::f64)(s, {}, {}, {}, nullptr, nullptr, nullptr, nullptr, {}, {}, {}));
  }
}

TEST(PnaKernel, BadOptionsThrow) {
  const Case good =
      make_case(5, 3, PnaAdjacency::softmax, PnaThreshold::sigmoid, false, true, false, false);
  const Inputs in = make_inputs(good, 3);
  EXPECT_NO_THROW(run<double>(good, in));
  auto expect_error = [&](Case c, const std::string& needle) {
    try {
      run<double>(c, in);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  Case c = good;
  c.s.beta = 0;
  expect_error(c, "beta");
  c = good, c.s.beta = -1;
  expect_error(c, "beta");
  c = good, c.s.threshold = static_cast<PnaThreshold>(5);
  expect_error(c, "unknown");
  c = good, c.s.adjacency = static_cast<PnaAdjacency>(-1);
  expect_error(c, "unknown");
  c = good, c.s.head_dim = 0;
  expect_error(c, "sizes");

  // A missing output the options ask for.
  static const KernelRef<PnaForwardFn> fwd(kPnaForward);
  const std::vector<double> q = in.q;
  std::vector<double> moments(good.s.batch * good.s.heads * good.s.t * good.s.width());
  std::vector<int32_t> args(good.elements());
  std::vector<double> lse(good.s.batch * good.s.heads * good.s.t);
  const AttentionOperand x = operand(good, q);
  EXPECT_THROW(fwd(kCPU, DType::f64)(good.s, x, x, x, moments.data(), nullptr, nullptr, lse.data()),
               Error);
  EXPECT_THROW(
      fwd(kCPU, DType::f64)(good.s, x, x, x, moments.data(), args.data(), nullptr, nullptr), Error);
  EXPECT_THROW(fwd(kCPU, DType::f64)(good.s, x, x, x, nullptr, args.data(), nullptr, lse.data()),
               Error);
  EXPECT_THROW(
      fwd(kCPU, DType::f64)(good.s, x, {}, x, moments.data(), args.data(), nullptr, lse.data()),
      Error);
  static const KernelRef<PnaBackwardFn> bwd(kPnaBackward);
  std::vector<double> g(moments.size()), gx(q.size());
  const AttentionOutput out = {gx.data(), x.stride_b, x.stride_h, x.stride_t};
  EXPECT_THROW(bwd(kCPU, DType::f64)(good.s, x, x, x, lse.data(), args.data(), nullptr, nullptr,
                                     out, out, out),
               Error);
}

}  // namespace
}  // namespace gradus::kernels
