// The CPU/GPU parity harness of tests/cuda: an op runs on CPU inputs and on copies of them on the
// GPU (to_device), forward and backward with one random upstream gradient, and every output and
// input gradient is compared element by element. Seeds are fresh each run and printed with every
// failure (GRADUS_PARITY_SEED=<seed> replays one); new tensors are poisoned with NaN while a test
// runs, so an element a kernel forgets to write cannot match.
//
// GRADUS_PARITY_ON_CPU=1 lets the CPU stand in for the GPU (the "device" copies are CPU clones):
// a check of the tests themselves on a machine without a GPU, where every comparison must be exact.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "autodiff/ops/view.h"
#include "autodiff/tape.h"
#include "core/random.h"
#include "support/cuda.h"
#include "support/expect_error.h"

namespace gradus::testing {

// ---------------------------------------------------------------- tolerances
// |actual - expected| <= atol + rtol |expected|, element by element.
struct Tolerance {
  double rtol = 0.0;
  double atol = 0.0;
};

// Elementwise math in f32: each backend is within a few ulps of the exact result (CUDA's expf,
// logf, tanhf, erff: <= 2 ulp; the CPU's vectorised exp: <= 1 ulp; FMA contraction on the GPU:
// <= 1 ulp per operation), so 1e-5 (about 80 ulps) leaves a wide margin while any wrong formula,
// index or missing element is far outside it. The floor covers results near 0 reached through
// cancellation, where either side's relative error is large but the absolute one small: inputs and
// upstream gradients are O(1) (normals reach about 5 in 2^18 draws), and a derivative can amplify
// one ulp of an intermediate near 1 (1 - tanh^2 with tanh within 2 ulp of -1, 1 + erf in gelu's
// tail) by a factor up to about 10: 10 * 5 * 1.2e-7 = 6e-6.
inline constexpr Tolerance kF32Tolerance{1e-5, 1e-5};
// The same reasoning in f64 (eps 2.2e-16): a few ulps against 1e-12.
inline constexpr Tolerance kF64Tolerance{1e-12, 1e-13};
// Results that involve no rounding at all (copies, selections, sums of exactly representable terms).
inline constexpr Tolerance kExact{0.0, 0.0};

inline Tolerance default_tolerance(DType dtype) {
  return dtype == DType::f64 ? kF64Tolerance : kF32Tolerance;
}

inline double machine_epsilon(DType dtype) {
  return dtype == DType::f64 ? std::numeric_limits<double>::epsilon()
                             : std::numeric_limits<float>::epsilon();
}

// A sum of n terms of magnitude about `scale` (a reduction, a dot product inside matmul, a scatter-add
// of repeated ids): the two backends add in different orders. The CPU's f32 sum runs 8 sequential
// accumulators, whose rounding errors random-walk to about u * scale * n / 2.5 in the worst
// accumulator (u = eps / 2, partial sums of size scale * sqrt(k)); the GPU's tree order is more
// accurate. 2 eps * scale * n is 10x or more above that typical difference yet far below a changed
// or missing term (of size `scale`) for the n used here. Relative to a result of size
// scale * sqrt(n) (random signs) this is 2 eps sqrt(n).
inline Tolerance sum_tolerance(DType dtype, int64_t n, double scale = 1.0) {
  Tolerance t = default_tolerance(dtype);
  t.atol = std::max(t.atol, 2.0 * machine_epsilon(dtype) * scale * static_cast<double>(n));
  return t;
}

// Inputs of large magnitude M (logits of hundreds): exp(x - lse), x - lse and the like inherit
// the rounding of lse itself, an absolute error of about u M (u = eps / 2), i.e. a relative error
// of u M in exp(x - lse); and 1 ulp of difference in lse between the backends is enough to show
// it. The relative tolerance becomes 4 eps M (8x that), at least the dtype's default.
inline Tolerance magnitude_tolerance(DType dtype, double magnitude) {
  Tolerance t = default_tolerance(dtype);
  t.rtol = std::max(t.rtol, 4.0 * machine_epsilon(dtype) * magnitude);
  return t;
}
inline double max_abs(const Tensor& t) {
  double m = 0.0;
  for (double v : t.to_vector())
    if (std::isfinite(v)) m = std::max(m, std::abs(v));
  return m;
}

// Compares two tensors' values (any device, strides and dtype) with `tol`. A NaN matches a NaN and
// an infinity the same infinity. On failure names how many elements are off and the worst one: its
// index, both values, the difference and what was allowed.
inline ::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected,
                                            Tolerance tol) {
  if (!actual.defined() || !expected.defined())
    return ::testing::AssertionFailure() << (actual.defined() ? "the reference" : "the result")
                                         << " is an undefined tensor";
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << "result shape " << shape_str(actual.shape())
                                         << " but the reference has " << shape_str(expected.shape());
  const std::vector<double> a = actual.to_vector(), e = expected.to_vector();
  int64_t bad = 0, worst = -1;
  double worst_excess = 0.0, max_abs = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    double excess = 0.0;  // |diff| / allowed; infinite for a NaN or infinity mismatch
    if (std::isnan(a[i]) || std::isnan(e[i])) {
      excess = std::isnan(a[i]) && std::isnan(e[i]) ? 0.0 : HUGE_VAL;
    } else if (std::isinf(a[i]) || std::isinf(e[i])) {
      excess = a[i] == e[i] ? 0.0 : HUGE_VAL;
    } else {
      const double diff = std::abs(a[i] - e[i]), allowed = tol.atol + tol.rtol * std::abs(e[i]);
      max_abs = std::max(max_abs, diff);
      if (diff > allowed) excess = allowed > 0 ? diff / allowed : HUGE_VAL;
      else excess = 0.0;
    }
    if (excess > 0) {
      ++bad;
      if (worst < 0 || excess > worst_excess) {
        worst = static_cast<int64_t>(i);
        worst_excess = excess;
      }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  // The multi-index of the worst element, row-major.
  const Shape& shape = expected.shape();
  Shape index(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1, rest = worst; d >= 0; --d) {
    index[d] = rest % shape[d];
    rest /= shape[d];
  }
  const size_t w = static_cast<size_t>(worst);
  return ::testing::AssertionFailure() << fmt::format(
             "{} of {} elements outside |diff| <= {:g} + {:g} |expected| (largest finite |diff| "
             "{:.3g}); worst at index {} (flat {}): got {:.9g}, expected {:.9g}, |diff| {:.3g}, "
             "allowed {:.3g}",
             bad, a.size(), tol.atol, tol.rtol, max_abs, shape_str(index), worst, a[w], e[w],
             std::abs(a[w] - e[w]), tol.atol + tol.rtol * std::abs(e[w]));
}

// ---------------------------------------------------------------- the device under test
inline bool parity_on_cpu() {
  const char* v = std::getenv("GRADUS_PARITY_ON_CPU");
  return v != nullptr && std::string(v) == "1";
}
inline Device parity_device() { return parity_on_cpu() ? kCPU : kCUDA; }

// A copy of x on the device under test: to_device (differentiable; a leaf when x takes no
// gradient), or a CPU clone when the CPU stands in.
inline Tensor to_parity_device(const Tensor& x) {
  return parity_on_cpu() ? raw_clone(x) : to_device(x, kCUDA);
}

// Fills new tensors with NaN while alive (Tensor::empty), restoring the previous setting after.
class PoisonGuard {
 public:
  explicit PoisonGuard(bool on = true) : previous_(poison_uninitialized()) {
    set_poison_uninitialized(on);
  }
  ~PoisonGuard() { set_poison_uninitialized(previous_); }
  PoisonGuard(const PoisonGuard&) = delete;
  PoisonGuard& operator=(const PoisonGuard&) = delete;

 private:
  bool previous_;
};

// GRADUS_PARITY_SEED when set (to replay a failure), otherwise a fresh random seed.
inline uint64_t parity_seed() {
  if (const char* v = std::getenv("GRADUS_PARITY_SEED")) return std::strtoull(v, nullptr, 10);
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

// Error messages must agree between the backends, up to the device named in a tensor's description.
inline std::string with_device_as_cpu(std::string msg) {
  for (size_t p; (p = msg.find("cuda:0")) != std::string::npos;) msg.replace(p, 6, "cpu");
  return msg;
}

// fn must throw the same gradus::Error on the CPU inputs and on their device copies (an index
// check reports the same first bad position on both backends).
inline void expect_same_error(const std::string& what, const std::function<void(const std::vector<Tensor>&)>& fn,
                              const std::vector<Tensor>& inputs) {
  SCOPED_TRACE(what);
  std::vector<Tensor> dev;
  for (const Tensor& x : inputs) dev.push_back(to_parity_device(raw_clone(x)));
  const std::string on_cpu = error_message([&] { fn(inputs); });
  const std::string on_device = error_message([&] { fn(dev); });
  EXPECT_FALSE(on_cpu.empty());
  EXPECT_EQ(with_device_as_cpu(on_device), on_cpu);
}

// ---------------------------------------------------------------- one parity test
struct ParityOptions {
  DType dtype = DType::f32;              // floating inputs are converted to it on both sides
  std::optional<Tolerance> forward;      // default_tolerance(dtype) when unset
  std::optional<Tolerance> backward;     // the forward's when unset
  bool differentiate = true;             // false: forward only
  std::optional<Device> output_device;   // where the device run's outputs live (default: the device)
};

using ParityFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;
using ParityFn1 = std::function<Tensor(const std::vector<Tensor>&)>;

class ParityRun {
 public:
  ParityRun() : seed_(parity_seed()), gen_(seed_) {}

  uint64_t seed() const { return seed_; }
  Device device() const { return parity_device(); }
  std::string trace() const {
    return fmt::format("seed {} (replay: GRADUS_PARITY_SEED={}){}", seed_, seed_,
                       parity_on_cpu() ? "; the CPU stands in for the GPU" : "");
  }
  Generator& generator() { return gen_; }

  // ---- random CPU inputs (f32), all drawn from this run's seed ----
  // Leaves that take gradients.
  Tensor normal(const Shape& shape, double mean = 0.0, double std = 1.0) {
    return leaf(rand_normal(shape, gen_, DType::f32, mean, std));
  }
  Tensor uniform(const Shape& shape, double lo, double hi) {
    return leaf(rand_uniform(shape, gen_, DType::f32, lo, hi));
  }
  // |x| uniform in [lo, hi) with a random sign (for reciprocal, div, ...).
  Tensor away_from_zero(const Shape& shape, double lo, double hi) {
    std::vector<double> m = rand_uniform(shape, gen_, DType::f64, lo, hi).to_vector();
    std::vector<double> s = rand_uniform(shape, gen_, DType::f64, 0, 1).to_vector();
    for (size_t i = 0; i < m.size(); ++i) m[i] = s[i] < 0.5 ? -m[i] : m[i];
    return leaf(Tensor::from_vector(m, shape, DType::f32));
  }
  // Multiples of `step` in [lo, hi] (exact in every dtype for dyadic steps): ties for max / min,
  // exact sums.
  Tensor grid(const Shape& shape, double lo, double hi, double step) {
    std::vector<double> v = rand_uniform(shape, gen_, DType::f64, lo, hi).to_vector();
    for (double& x : v) x = std::min(hi, std::round(x / step) * step);
    return leaf(Tensor::from_vector(v, shape, DType::f32));
  }
  // Constants (no gradient): i64 ids in [0, n), and 0 / 1 masks with P(1) = p_one.
  Tensor ids(const Shape& shape, int64_t n) {
    std::vector<double> v = rand_uniform(shape, gen_, DType::f64, 0, static_cast<double>(n)).to_vector();
    for (double& x : v) x = std::min(std::floor(x), static_cast<double>(n - 1));
    return Tensor::from_vector(v, shape, DType::i64);
  }
  Tensor mask(const Shape& shape, double p_one, DType dtype = DType::f32) {
    std::vector<double> v = rand_uniform(shape, gen_, DType::f64, 0, 1).to_vector();
    for (double& x : v) x = x < p_one ? 1.0 : 0.0;
    return Tensor::from_vector(v, shape, dtype);
  }
  // A copy of t with entries `positions` (flat, row-major) set to `value` (a leaf if t was one).
  static Tensor with_values(const Tensor& t, const std::vector<int64_t>& positions, double value) {
    std::vector<double> v = t.to_vector();
    for (int64_t p : positions) v.at(static_cast<size_t>(p)) = value;
    Tensor out = Tensor::from_vector(v, t.shape(), t.dtype());
    if (t.requires_grad()) out.set_requires_grad(true);
    return out;
  }

  // Runs fn on the CPU inputs and on their copies on the device; compares every output, then
  // backpropagates one random upstream gradient per differentiable output through both and compares
  // the gradient of every input that requires one. Non-contiguous operands are made inside fn (a
  // transpose, slice or expand of an input), so the device run sees the same views.
  void check(const std::string& what, const ParityFn1& fn, const std::vector<Tensor>& inputs,
             const ParityOptions& options = {}) {
    check_multi(what, [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{fn(in)}; },
                inputs, options);
  }

  void check_multi(const std::string& what, const ParityFn& fn, const std::vector<Tensor>& inputs,
                   const ParityOptions& options = {}) {
    SCOPED_TRACE(fmt::format("{} [{}]", what, dtype_name(options.dtype)));
    PoisonGuard poison;
    const Tolerance ftol = options.forward.value_or(default_tolerance(options.dtype));
    const Tolerance btol = options.backward.value_or(ftol);
    const Device out_device = options.output_device.value_or(device());

    std::vector<Tensor> host, dev;
    for (const Tensor& x : inputs) {
      Tensor h = raw_clone(is_floating(x.dtype()) ? raw_to_dtype(x, options.dtype) : x);
      Tensor d = to_parity_device(h);
      if (x.requires_grad()) {
        h.set_requires_grad(true);
        d.set_requires_grad(true);
      }
      host.push_back(h);
      dev.push_back(d);
    }

    const std::vector<Tensor> ref = fn(host);
    const std::vector<Tensor> out = fn(dev);
    ASSERT_EQ(out.size(), ref.size());
    for (size_t k = 0; k < ref.size(); ++k) {
      SCOPED_TRACE(fmt::format("output {} of {}: {}", k, ref.size(), ref[k].describe()));
      ASSERT_EQ(out[k].dtype(), ref[k].dtype());
      EXPECT_EQ(out[k].device(), out_device) << out[k].describe();
      EXPECT_EQ(out[k].requires_grad(), ref[k].requires_grad());
      EXPECT_TRUE(all_close(out[k], ref[k], ftol)) << "forward";
    }
    if (!options.differentiate) return;

    size_t last = ref.size();  // the last output to backpropagate from frees the graph
    for (size_t k = 0; k < ref.size(); ++k)
      if (ref[k].requires_grad()) last = k;
    if (last == ref.size()) return;  // nothing differentiable
    for (size_t k = 0; k <= last; ++k) {
      if (!ref[k].requires_grad()) continue;
      const DType dt = ref[k].dtype();
      Tensor v = raw_to_dtype(rand_normal(ref[k].shape(), gen_, dt == DType::f64 ? dt : DType::f32), dt);
      backward(ref[k], v, k < last);
      backward(out[k], raw_to_device(raw_clone(v), out[k].device()), k < last);
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (!inputs[i].requires_grad()) continue;
      SCOPED_TRACE(fmt::format("gradient of input {}: {}", i, host[i].describe()));
      const Tensor gh = host[i].grad(), gd = dev[i].grad();
      ASSERT_EQ(gd.defined(), gh.defined());
      if (!gh.defined()) continue;
      EXPECT_EQ(gd.device(), dev[i].device()) << gd.describe();
      EXPECT_EQ(gd.dtype(), gh.dtype());
      EXPECT_TRUE(all_close(gd, gh, btol)) << "backward";
    }
  }

  // bf16 forward: floating inputs are rounded to bf16 first. The reference is the CPU's f32 result
  // on those rounded values; the device computes on the bf16 tensors. Compared per tensor:
  // max |device - reference| <= factor * 2^-7 * max |reference|. A bf16 has an 8-bit significand,
  // so rounding one exact f32 result to it errs by at most 2^-8 of that element, <= 2^-8 max|ref|;
  // the inputs being identical, that rounding (and f32-level differences, far smaller) is all a
  // kernel that computes in f32 and rounds once may add. 2^-7 leaves a factor 2 for the ops that
  // round an intermediate (factor > 1 where an op rounds several, justified at the call).
  void check_bf16_forward(const std::string& what, const ParityFn1& fn,
                          const std::vector<Tensor>& inputs, double factor = 1.0) {
    SCOPED_TRACE(fmt::format("{} [bf16 forward]", what));
    PoisonGuard poison;
    NoGradGuard no_grad;
    std::vector<Tensor> host, dev;
    for (const Tensor& x : inputs) {
      if (!is_floating(x.dtype())) {
        host.push_back(x);
        dev.push_back(to_parity_device(x));
        continue;
      }
      const Tensor rounded = raw_to_dtype(raw_to_dtype(x, DType::f32), DType::bf16);
      host.push_back(raw_to_dtype(rounded, DType::f32));
      dev.push_back(to_parity_device(rounded));
    }
    const Tensor ref = fn(host);
    ASSERT_EQ(ref.dtype(), DType::f32);
    if (parity_on_cpu()) return;  // the CPU computes no bf16: only the reference side runs
    const Tensor out = fn(dev);
    ASSERT_EQ(out.dtype(), DType::bf16) << out.describe();
    EXPECT_EQ(out.device(), device()) << out.describe();
    double max_ref = 0.0;
    for (double r : ref.to_vector())
      if (std::isfinite(r)) max_ref = std::max(max_ref, std::abs(r));
    EXPECT_TRUE(all_close(out, ref, Tolerance{0.0, factor * std::ldexp(max_ref, -7)}))
        << "bf16 forward, max |reference| " << max_ref;
  }

 private:
  static Tensor leaf(Tensor t) {
    t.set_requires_grad(true);
    return t;
  }

  PoisonGuard poison_;  // for the whole test, inputs included
  uint64_t seed_;
  Generator gen_;
};

}  // namespace gradus::testing

// At the top of every parity test: skips without a GPU (unless GRADUS_PARITY_ON_CPU=1), then draws
// this test's seed, printed with every failure.
#define GRADUS_REQUIRE_PARITY_DEVICE()                         \
  do {                                                         \
    if (!::gradus::testing::parity_on_cpu()) GRADUS_REQUIRE_CUDA(); \
  } while (0)

#define GRADUS_PARITY_SETUP(run)     \
  GRADUS_REQUIRE_PARITY_DEVICE();    \
  ::gradus::testing::ParityRun run;  \
  SCOPED_TRACE(run.trace())
