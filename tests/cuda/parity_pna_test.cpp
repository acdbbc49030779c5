// CPU/GPU parity of the streaming PNA aggregation kernels (kernels/pna.h), called through the
// kernel registry on CPU tensors and on device tensors: both CUDA kernel families (the cuBLAS
// blocked kernels and the thread-per-row reference, chosen with GRADUS_PNA_KERNEL), f32, f64 and
// bf16, both adjacencies, every threshold, the optional square / max / min blocks, sequence lengths
// that are no multiple of anything (1, 5, 37, 70), and q, k, v and the gradients read and written
// in the (B, T, H, D + 3) storage of projections split into heads, whose padding no kernel may
// touch. Outputs are NaN-poisoned before each kernel, so an element left unwritten fails.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "autodiff/ops/pna.h"
#include "autodiff/ops/view.h"
#include "kernels/cuda/pna_select.h"
#include "kernels/pna.h"
#include "kernels/registry.h"
#include "support/cuda_parity.h"
#include "support/expect_error.h"

namespace gradus {
namespace {

using kernels::PnaAdjacency;
using kernels::PnaShape;
using kernels::PnaThreshold;
using testing::all_close;
using testing::ParityRun;
using testing::Tolerance;

struct PnaCase {
  std::string name;
  int64_t batch, heads, t, head_dim;
  bool strided;  // (B, T, H, D + 3) storage viewed as (B, H, T, D); otherwise contiguous
};

const std::vector<PnaCase>& pna_cases() {
  static const std::vector<PnaCase> cases = {
      {"T 37, D 24, strided", 2, 2, 37, 24, true},
      {"T 70, D 8", 1, 2, 70, 8, false},
      {"T 1, D 8", 2, 1, 1, 8, false},
      {"T 5, D 24, strided", 1, 1, 5, 24, true},
  };
  return cases;
}

// The moments' blocks each (adjacency, threshold) pair runs with: every combination over the
// cases, the extrema alone and with the square.
struct Blocks {
  bool square, max, min;
};
constexpr Blocks kBlocks[] = {{true, true, true},    {true, false, false}, {false, true, true},
                              {false, false, false}, {false, true, false}, {true, false, true}};

Shape storage_shape(const PnaCase& c) {
  if (!c.strided) return {c.batch, c.heads, c.t, c.head_dim};
  return {c.batch, c.t, c.heads, c.head_dim + 3};
}
Tensor as_heads(const PnaCase& c, const Tensor& storage) {
  if (!c.strided) return storage;
  const int64_t B = c.batch, t = c.t, H = c.heads, row = c.head_dim + 3;
  return raw_view(storage, {B, H, t, c.head_dim}, {t * H * row, row, H * row, 1}, 0);
}
Tensor empty_operand(const PnaCase& c, DType dtype, Device device) {
  return as_heads(c, Tensor::empty(storage_shape(c), dtype, device));
}
// x (f32, CPU, (B, H, T, D)) as an operand of `dtype` on `device`, keeping the case's layout.
Tensor place(const PnaCase& c, const Tensor& x, DType dtype, Device device) {
  const Tensor storage = Tensor::empty(storage_shape(c), DType::f32, kCPU);
  raw_copy_(as_heads(c, storage), x);
  return as_heads(c, raw_to_device(raw_to_dtype(storage, dtype), device));
}
kernels::AttentionOperand operand(const Tensor& t) {
  return {t.raw_data(), t.stride(0), t.stride(1), t.stride(2)};
}
kernels::AttentionOutput output(const Tensor& t) {
  return {t.raw_data(), t.stride(0), t.stride(1), t.stride(2)};
}

// The moments, their gradient and lse: f64 for f64, f32 otherwise.
DType stats_dtype(DType dtype) { return dtype == DType::f64 ? DType::f64 : DType::f32; }

// int32 arg indices (B, H, T, D): a buffer of n int32 in n / 2 rounded up i64 elements.
Tensor arg_buffer(const PnaShape& s, Device device) {
  const int64_t n = s.batch * s.heads * s.t * s.head_dim;
  return Tensor::empty({(n + 1) / 2}, DType::i64, device);
}
std::vector<int32_t> args_of(const Tensor& buffer, int64_t n) {
  const Tensor host = raw_to_device(buffer, kCPU);
  std::vector<int32_t> v(static_cast<size_t>(n));
  if (n > 0) std::memcpy(v.data(), host.raw_data(), static_cast<size_t>(n) * sizeof(int32_t));
  return v;
}
int32_t* args_ptr(const Tensor& buffer, bool used) {
  return used ? static_cast<int32_t*>(buffer.raw_data()) : nullptr;
}

struct Forward {
  Tensor moments, lse, arg_max, arg_min;
};
Forward run_forward(const PnaCase& c, const PnaShape& s, const Tensor& q, const Tensor& k,
                    const Tensor& v) {
  static const kernels::KernelRef<kernels::PnaForwardFn> forward(kernels::kPnaForward);
  const Device device = q.device();
  const DType stats = stats_dtype(q.dtype());
  Forward f{Tensor::empty({c.batch, c.heads, c.t, s.width()}, stats, device),
            Tensor::empty({c.batch, c.heads, c.t}, stats, device), arg_buffer(s, device),
            arg_buffer(s, device)};
  forward(device, q.dtype())(s, operand(q), operand(k), operand(v), f.moments.raw_data(),
                             args_ptr(f.arg_max, s.with_max), args_ptr(f.arg_min, s.with_min),
                             f.lse.raw_data());
  return f;
}

struct Backward {
  Tensor grad_q, grad_k, grad_v;
};
// The saved forward (lse and the arg indices, on `device`) and grad -> the input gradients.
Backward run_backward(const PnaCase& c, const PnaShape& s, const Tensor& q, const Tensor& k,
                      const Tensor& v, const Forward& saved, const Tensor& grad) {
  static const kernels::KernelRef<kernels::PnaBackwardFn> backward(kernels::kPnaBackward);
  const Device device = q.device();
  const DType dtype = q.dtype();
  Backward g{empty_operand(c, dtype, device), empty_operand(c, dtype, device),
             empty_operand(c, dtype, device)};
  backward(device, dtype)(s, operand(q), operand(k), operand(v), saved.lse.raw_data(),
                          args_ptr(saved.arg_max, s.with_max), args_ptr(saved.arg_min, s.with_min),
                          grad.raw_data(), output(g.grad_q), output(g.grad_k), output(g.grad_v));
  return g;
}

// Sets GRADUS_PNA_KERNEL (nullopt: unset) and makes the kernels re-read it; restores the previous
// value on exit.
class PnaKernelGuard {
 public:
  explicit PnaKernelGuard(std::optional<std::string> value) {
    if (const char* v = std::getenv(kVar)) previous_ = v;
    set(value);
  }
  ~PnaKernelGuard() { set(previous_); }
  PnaKernelGuard(const PnaKernelGuard&) = delete;
  PnaKernelGuard& operator=(const PnaKernelGuard&) = delete;

 private:
  static void set(const std::optional<std::string>& value) {
    if (value)
      setenv(kVar, value->c_str(), 1);
    else
      unsetenv(kVar);
    kernels::reload_pna_kernel_choice();
  }
  static constexpr const char* kVar = "GRADUS_PNA_KERNEL";
  std::optional<std::string> previous_;
};

// The smallest distance of an adjacency decision to its boundary, in double from the (rounded)
// inputs: s > 0 for the relu adjacency (a' > 0 and relu's gradient), a > tau for the relu and
// binary thresholds. The two backends sum s in different orders, so a decision closer than their
// rounding to its boundary may fall either way (a changed neighbourhood, a jump of 1 in binary);
// the test draws its inputs again until every decision is at least 1e-6 (some 10 f32 roundings of
// s) from its boundary.
double decision_margin(const PnaShape& s, const Tensor& q, const Tensor& k) {
  const std::vector<double> qv = q.to_vector(), kv = k.to_vector();
  const int64_t T = s.t, D = s.head_dim;
  double margin = INFINITY;
  for (int64_t bh = 0; bh < s.batch * s.heads; ++bh)
    for (int64_t i = 0; i < T; ++i) {
      std::vector<double> row(static_cast<size_t>(i + 1));
      double m = -INFINITY;
      for (int64_t j = 0; j <= i; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += qv[(bh * T + i) * D + d] * kv[(bh * T + j) * D + d];
        row[j] = s.scale * dot;
        m = std::max(m, row[j]);
      }
      double lse = 0;
      if (s.adjacency == PnaAdjacency::softmax) {
        for (double x : row) lse += std::exp(x - m);
        lse = m + std::log(lse);
      }
      for (double x : row) {
        const bool relu = s.adjacency == PnaAdjacency::relu;
        const double a = relu ? std::max(x, 0.0) : std::exp(x - lse);
        if (relu) margin = std::min(margin, std::abs(x));
        if (s.threshold == PnaThreshold::relu || s.threshold == PnaThreshold::binary)
          margin = std::min(margin, std::abs(a - s.tau));
      }
    }
  return margin;
}

// f32 / f64: each result is a sum of up to T products of terms themselves sums of D products, added
// in different orders by the backends: 4 eps (T + D) times the largest result of the tensor. bf16:
// the blocked kernels round a', dS and the gradient's blocks to bf16 for the products (2^-9
// relative each), which g_sum . v + g_sq . v^2 + g_deg (2 D + 1 terms, with cancellation) can
// amplify several times, and the gradients round once on store: up to 0.018 of the largest result
// in the emulated runs (T 1 and 5, where one or two such terms make a gradient); 2^-4 of it, still
// far below a missing or misplaced term.
Tolerance tolerance(const PnaCase& c, DType dtype, const Tensor& expected) {
  const double scale = testing::max_abs(expected);
  if (dtype == DType::bf16) return {0.0, std::ldexp(scale, -4)};
  Tolerance t = testing::default_tolerance(dtype);
  t.atol = std::max(t.atol, 4.0 * testing::machine_epsilon(dtype) *
                                static_cast<double>(c.t + c.head_dim) * scale);
  return t;
}

// One (case, adjacency, threshold, blocks) in `dtype` (bf16 against the CPU's f32 on the rounded
// values) with the kernel family set by the caller: forward, then backward from the CPU forward's
// saved lse and arg indices on both sides.
void check_case(ParityRun& run, const PnaCase& c, PnaAdjacency adjacency, PnaThreshold threshold,
                Blocks blocks, DType dtype) {
  PnaShape s;
  s.batch = c.batch, s.heads = c.heads, s.t = c.t, s.head_dim = c.head_dim;
  s.scale = 1.0 / std::sqrt(double(c.head_dim));
  s.adjacency = adjacency, s.threshold = threshold;
  s.tau = adjacency == PnaAdjacency::softmax ? 0.05 : 0.2;
  s.with_square = blocks.square, s.with_max = blocks.max, s.with_min = blocks.min;
  SCOPED_TRACE(fmt::format("{}, adjacency {}, threshold {}, square {} max {} min {} [{}]", c.name,
                           static_cast<int>(adjacency), static_cast<int>(threshold), blocks.square,
                           blocks.max, blocks.min, dtype_name(dtype)));
  testing::PoisonGuard poison;
  const Device device = run.device();
  const bool bf16 = dtype == DType::bf16;
  const DType ref_dtype = bf16 ? DType::f32 : dtype;  // the CPU computes no bf16
  const DType stats = stats_dtype(dtype);
  auto draw = [&](const Shape& shape) {
    const Tensor x = rand_normal(shape, run.generator());
    return raw_to_dtype(raw_to_dtype(x, dtype), DType::f32);
  };
  const Shape heads{c.batch, c.heads, c.t, c.head_dim};
  Tensor q = draw(heads), k = draw(heads);
  for (int attempt = 0; decision_margin(s, q, k) < 1e-6; ++attempt) {
    ASSERT_LT(attempt, 20) << "no inputs with clear adjacency decisions";
    q = draw(heads), k = draw(heads);
  }
  // v with repeated values (multiples of 1/2), so the extrema meet ties.
  const Tensor v = raw_to_dtype(run.grid(heads, -3.0, 3.0, 0.5), DType::f32);
  const Tensor grad =
      raw_to_dtype(rand_normal({c.batch, c.heads, c.t, s.width()}, run.generator()), stats);

  auto on = [&](const Tensor& x, DType dt, Device dev) { return place(c, x, dt, dev); };
  const Tensor hq = on(q, ref_dtype, kCPU), hk = on(k, ref_dtype, kCPU),
               hv = on(v, ref_dtype, kCPU);
  const Tensor dq = on(q, dtype, device), dk = on(k, dtype, device), dv = on(v, dtype, device);
  const Forward ref = run_forward(c, s, hq, hk, hv);
  const Forward got = run_forward(c, s, dq, dk, dv);
  EXPECT_TRUE(all_close(got.moments, ref.moments, tolerance(c, dtype, ref.moments))) << "moments";
  if (adjacency == PnaAdjacency::softmax) {
    EXPECT_TRUE(all_close(got.lse, ref.lse, tolerance(c, ref_dtype, ref.lse))) << "lse";
  }
  const int64_t n = c.batch * c.heads * c.t * c.head_dim;
  if (s.with_max) {
    EXPECT_EQ(args_of(got.arg_max, n), args_of(ref.arg_max, n)) << "arg_max";
  }
  if (s.with_min) {
    EXPECT_EQ(args_of(got.arg_min, n), args_of(ref.arg_min, n)) << "arg_min";
  }
  // Deterministic: the same call gives the same bits.
  const Forward again = run_forward(c, s, dq, dk, dv);
  EXPECT_TRUE(all_close(again.moments, got.moments, testing::kExact)) << "moments, second run";

  // The saved forward: the CPU's lse and arg indices on both sides.
  const Forward saved{Tensor(), raw_to_device(raw_clone(ref.lse), device),
                      raw_to_device(raw_clone(ref.arg_max), device),
                      raw_to_device(raw_clone(ref.arg_min), device)};
  const Backward gref = run_backward(c, s, hq, hk, hv, ref, grad);
  const Backward ggot = run_backward(c, s, dq, dk, dv, saved, raw_to_device(grad, device));
  const char* names[] = {"grad_q", "grad_k", "grad_v"};
  const Tensor* want[] = {&gref.grad_q, &gref.grad_k, &gref.grad_v};
  const Tensor* have[] = {&ggot.grad_q, &ggot.grad_k, &ggot.grad_v};
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(all_close(*have[i], *want[i], tolerance(c, dtype, *want[i]))) << names[i];
  const Backward gagain = run_backward(c, s, dq, dk, dv, saved, raw_to_device(grad, device));
  EXPECT_TRUE(all_close(gagain.grad_v, ggot.grad_v, testing::kExact)) << "grad_v, second run";
}

// Every case, adjacency and threshold, with each kernel family forced; the blocks rotate so that
// every combination meets both adjacencies.
void check_all_cases(ParityRun& run, DType dtype) {
  for (const char* kernel : {"reference", "blocked"}) {
    SCOPED_TRACE(fmt::format("GRADUS_PNA_KERNEL={}", kernel));
    PnaKernelGuard guard{std::string(kernel)};
    int rotation = 0;
    for (const PnaCase& c : pna_cases())
      for (PnaAdjacency adjacency : {PnaAdjacency::relu, PnaAdjacency::softmax})
        for (int thr = 0; thr <= 4; ++thr)
          check_case(run, c, adjacency, static_cast<PnaThreshold>(thr),
                     kBlocks[rotation++ % std::size(kBlocks)], dtype);
  }
}

TEST(CudaParityPna, f32) {
  GRADUS_PARITY_SETUP(run);
  check_all_cases(run, DType::f32);
}

TEST(CudaParityPna, f64) {
  GRADUS_PARITY_SETUP(run);
  check_all_cases(run, DType::f64);
}

TEST(CudaParityPna, bf16) {
  GRADUS_PARITY_SETUP(run);
  if (testing::parity_on_cpu()) GTEST_SKIP() << "the CPU computes no bf16";
  check_all_cases(run, DType::bf16);
}

// The op, forward and backward through the parity harness (default kernel). Inputs whose
// adjacency decisions cannot fall differently on the two backends: the relu adjacency on q and k
// of multiples of 1/4 with scale 1/4 (every s a multiple of 1/64, exact in f32; relu's tau 0.2 is
// none), and the softmax adjacency with the smooth sigmoid and sharp_softplus thresholds (every
// visible key a neighbour, so the extrema select from the same set).
TEST(CudaParity, pna_moments) {
  GRADUS_PARITY_SETUP(run);
  PnaMomentsOptions relu_options;
  relu_options.scale = 0.25;
  relu_options.threshold = PnaThreshold::relu;
  relu_options.with_square = relu_options.with_max = relu_options.with_min = true;
  PnaMomentsOptions softmax_options = relu_options;
  softmax_options.adjacency = PnaAdjacency::softmax;
  softmax_options.threshold = PnaThreshold::sigmoid;
  softmax_options.scale = 1.0 / std::sqrt(24.0);
  softmax_options.tau = 0.05;
  PnaMomentsOptions strided_options = softmax_options;
  strided_options.threshold = PnaThreshold::sharp_softplus;
  strided_options.with_max = false;
  auto with = [](const PnaMomentsOptions& o) {
    return [o](const std::vector<Tensor>& in) { return pna_moments(in[0], in[1], in[2], o); };
  };
  for (DType dtype : {DType::f32, DType::f64}) {
    testing::ParityOptions options;
    options.dtype = dtype;
    // Sums of up to T (37) terms of size up to about 10 (a' v^2), each term a sum over D (24).
    options.forward = options.backward = testing::sum_tolerance(dtype, 37 + 24, 10.0);
    const Shape shape{2, 2, 37, 24};
    run.check(
        "relu adjacency, relu threshold", with(relu_options),
        {run.grid(shape, -1.0, 1.0, 0.25), run.grid(shape, -1.0, 1.0, 0.25), run.normal(shape)},
        options);
    run.check("softmax adjacency, sigmoid threshold", with(softmax_options),
              {run.normal(shape), run.normal(shape), run.normal(shape)}, options);
    // Heads split from (B, T, H, D) projections: strided (B, H, T, D) views.
    run.check(
        "heads layout, sharp_softplus threshold",
        [o = strided_options](const std::vector<Tensor>& in) {
          return pna_moments(transpose(in[0], 1, 2), transpose(in[1], 1, 2), transpose(in[2], 1, 2),
                             o);
        },
        {run.normal({1, 37, 3, 24}), run.normal({1, 37, 3, 24}), run.normal({1, 37, 3, 24})},
        options);
  }
}

TEST(CudaParityPna, default_choice_is_blocked) {
  GRADUS_PARITY_SETUP(run);
  // Unset, the blocked kernels run: the same results as "blocked" set explicitly.
  PnaKernelGuard guard(std::nullopt);
  check_case(run, pna_cases()[0], PnaAdjacency::softmax, PnaThreshold::sigmoid, kBlocks[0],
             DType::f32);
}

TEST(CudaParityPna, refuses_a_non_positive_beta) {
  GRADUS_PARITY_SETUP(run);
  PnaShape s;
  s.batch = 1, s.heads = 1, s.t = 3, s.head_dim = 8, s.beta = 0.0;
  const PnaCase c{"T 3", 1, 1, 3, 8, false};
  const Tensor x = Tensor::zeros({1, 1, 3, 8}, DType::f32, run.device());
  const std::string message = testing::error_message([&] { run_forward(c, s, x, x, x); });
  EXPECT_NE(message.find("beta must be positive, found 0"), std::string::npos) << message;
}

TEST(CudaParityPna, refuses_a_missing_arg_buffer) {
  GRADUS_PARITY_SETUP(run);
  static const kernels::KernelRef<kernels::PnaForwardFn> forward(kernels::kPnaForward);
  PnaShape s;
  s.batch = 1, s.heads = 1, s.t = 3, s.head_dim = 8, s.with_max = true;
  const Tensor x = Tensor::zeros({1, 1, 3, 8}, DType::f32, run.device());
  const Tensor moments = Tensor::zeros({1, 1, 3, s.width()}, DType::f32, run.device());
  const std::string message = testing::error_message([&] {
    forward(run.device(), DType::f32)(s, operand(x), operand(x), operand(x), moments.raw_data(),
                                      nullptr, nullptr, nullptr);
  });
  EXPECT_NE(message.find("with_max needs arg_max, found null"), std::string::npos) << message;
}

// The variable itself (no GPU needed).
TEST(PnaKernelChoice, parses_the_variable) {
  using kernels::PnaKernelChoice;
  EXPECT_EQ(kernels::parse_pna_kernel_choice(nullptr), PnaKernelChoice::blocked);
  EXPECT_EQ(kernels::parse_pna_kernel_choice(""), PnaKernelChoice::blocked);
  EXPECT_EQ(kernels::parse_pna_kernel_choice("blocked"), PnaKernelChoice::blocked);
  EXPECT_EQ(kernels::parse_pna_kernel_choice("reference"), PnaKernelChoice::reference);
  const std::string message =
      testing::error_message([] { kernels::parse_pna_kernel_choice("tiled"); });
  EXPECT_NE(message.find("GRADUS_PNA_KERNEL"), std::string::npos) << message;
  EXPECT_NE(message.find("\"tiled\""), std::string::npos) << message;
  {
    PnaKernelGuard guard(std::string("reference"));
    EXPECT_EQ(kernels::pna_kernel_choice(), PnaKernelChoice::reference);
  }
  PnaKernelGuard guard(std::nullopt);
  EXPECT_EQ(kernels::pna_kernel_choice(), PnaKernelChoice::blocked);
}

}  // namespace
}  // namespace gradus
