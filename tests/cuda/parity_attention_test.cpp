// CPU/GPU parity of the fused attention kernels themselves (kernels/attention.h), called through
// the kernel registry on CPU tensors and on device tensors: the four CUDA kernel families (the
// warp-per-row reference, the flash-style tiled kernels, the cuBLAS blocked kernels and the
// tensor-core flash kernels, chosen with GRADUS_ATTENTION_KERNEL),
// f32, bf16 and f64, causal or not, Tk > Tq, sequence lengths that are no multiple of a tile, head
// sizes the tiled kernels take (64, 128) and one they leave to the reference (24), and operands
// read and written in the (B, T, H, D) storage of projections split into heads, with padded rows
// whose padding no kernel may touch. Outputs are NaN-poisoned before each kernel, so an element
// left unwritten fails. (The op-level test of scaled_dot_product_attention is
// CudaParity.scaled_dot_product_attention.)
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>

#include "kernels/attention.h"
#include "kernels/cuda/attention_select.h"
#include "kernels/registry.h"
#include "support/cuda_parity.h"
#include "support/expect_error.h"

namespace gradus {
namespace {

using testing::all_close;
using testing::ParityRun;
using testing::Tolerance;

struct AttentionCase {
  std::string name;
  int64_t batch, heads, t_q, t_k, head_dim;
  bool causal;
  bool strided;  // (B, T, H, D + 3) storage viewed as (B, H, T, D); otherwise contiguous
};

// The cases every dtype and kernel family runs.
const std::vector<AttentionCase>& attention_cases() {
  static const std::vector<AttentionCase> cases = {
      {"T 37, D 64, causal", 2, 3, 37, 37, 64, true, false},
      {"T 200, D 64, not causal, strided", 1, 2, 200, 200, 64, false, true},
      {"T 1, D 128, causal", 2, 1, 1, 1, 128, true, false},
      {"Tq 37 < Tk 200, D 128, causal, strided", 2, 1, 37, 200, 128, true, true},
      {"T 200, D 128, causal, strided", 1, 2, 200, 200, 128, true, true},
      {"Tq 5, Tk 70, D 64, not causal", 1, 2, 5, 70, 64, false, false},
      {"T 37, D 24 (reference only), causal, strided", 2, 2, 37, 37, 24, true, true},
      {"Tq 5, Tk 37, D 24, not causal", 1, 1, 5, 37, 24, false, false},
  };
  return cases;
}

// The storage of a (B, H, T, D) operand: (B, H, T, D) itself, or the (B, T, H, D + 3) of a
// projection split into heads, its rows padded so that a kernel reading or writing past D is
// caught.
Shape storage_shape(const AttentionCase& c, int64_t t) {
  if (!c.strided) return {c.batch, c.heads, t, c.head_dim};
  return {c.batch, t, c.heads, c.head_dim + 3};
}
// The (B, H, T, D) operand view of such storage.
Tensor as_heads(const AttentionCase& c, const Tensor& storage) {
  if (!c.strided) return storage;
  const int64_t B = c.batch, t = storage.size(1), H = c.heads, row = c.head_dim + 3;
  return raw_view(storage, {B, H, t, c.head_dim}, {t * H * row, row, H * row, 1}, 0);
}
// A fresh (poisoned, under PoisonGuard) operand on `device`.
Tensor empty_operand(const AttentionCase& c, int64_t t, DType dtype, Device device) {
  return as_heads(c, Tensor::empty(storage_shape(c, t), dtype, device));
}
// x (f32, CPU, (B, H, T, D)) as an operand of `dtype` on `device`. The storage is filled on the CPU
// in f32, then converted and moved whole, which keeps its layout.
Tensor place(const AttentionCase& c, const Tensor& x, DType dtype, Device device) {
  const Tensor storage = Tensor::empty(storage_shape(c, x.size(2)), DType::f32, kCPU);
  raw_copy_(as_heads(c, storage), x);
  return as_heads(c, raw_to_device(raw_to_dtype(storage, dtype), device));
}

kernels::AttentionOperand operand(const Tensor& t) {
  return {t.raw_data(), t.stride(0), t.stride(1), t.stride(2)};
}
kernels::AttentionOutput output(const Tensor& t) {
  return {t.raw_data(), t.stride(0), t.stride(1), t.stride(2)};
}

kernels::AttentionShape shape_of(const AttentionCase& c) {
  return {c.batch, c.heads, c.t_q, c.t_k, c.head_dim, 1.0 / std::sqrt(double(c.head_dim)),
          c.causal};
}

// lse and delta: f64 for f64, f32 otherwise.
DType stats_dtype(DType dtype) { return dtype == DType::f64 ? DType::f64 : DType::f32; }

struct Forward {
  Tensor out, lse;
};
Forward run_forward(const AttentionCase& c, const Tensor& q, const Tensor& k, const Tensor& v) {
  static const kernels::KernelRef<kernels::AttentionForwardFn> forward(kernels::kAttentionForward);
  const Device device = q.device();
  Forward f{empty_operand(c, c.t_q, q.dtype(), device),
            Tensor::empty({c.batch, c.heads, c.t_q}, stats_dtype(q.dtype()), device)};
  forward(device, q.dtype())(shape_of(c), operand(q), operand(k), operand(v), output(f.out),
                             f.lse.raw_data());
  return f;
}

struct Backward {
  Tensor delta, grad_q, grad_k, grad_v;
};
Backward run_backward(const AttentionCase& c, const Tensor& q, const Tensor& k, const Tensor& v,
                      const Tensor& out, const Tensor& lse, const Tensor& grad_out) {
  static const kernels::KernelRef<kernels::AttentionBackwardFn> backward(
      kernels::kAttentionBackward);
  const Device device = q.device();
  const DType dtype = q.dtype();
  Backward g{Tensor::empty({c.batch, c.heads, c.t_q}, stats_dtype(dtype), device),
             empty_operand(c, c.t_q, dtype, device), empty_operand(c, c.t_k, dtype, device),
             empty_operand(c, c.t_k, dtype, device)};
  backward(device, dtype)(shape_of(c), operand(q), operand(k), operand(v), operand(out),
                          operand(grad_out), lse.raw_data(), g.delta.raw_data(), output(g.grad_q),
                          output(g.grad_k), output(g.grad_v));
  return g;
}

// Sets GRADUS_ATTENTION_KERNEL (nullopt: unset) and makes the kernels re-read it; restores the
// previous value on exit.
class AttentionKernelGuard {
 public:
  explicit AttentionKernelGuard(std::optional<std::string> value) {
    if (const char* v = std::getenv(kVar)) previous_ = v;
    set(value);
  }
  ~AttentionKernelGuard() { set(previous_); }
  AttentionKernelGuard(const AttentionKernelGuard&) = delete;
  AttentionKernelGuard& operator=(const AttentionKernelGuard&) = delete;

 private:
  static void set(const std::optional<std::string>& value) {
    if (value)
      setenv(kVar, value->c_str(), 1);
    else
      unsetenv(kVar);
    kernels::reload_attention_kernel_choice();
  }
  static constexpr const char* kVar = "GRADUS_ATTENTION_KERNEL";
  std::optional<std::string> previous_;
};

// Tolerances (see support/cuda_parity.h). A score is a dot product of D unit-scale terms, an output
// a sum over up to Tk keys of P v, delta a dot product of D terms of size up to about 3, and each
// gradient a sum over the keys (grad_q) or queries (grad_k, grad_v) of terms built from two such
// dot products (dS = P (grad_out . v - delta)): sum_tolerance over the longest of these sums, with
// the term size 2 for the gradients and delta.
Tolerance forward_tolerance(const AttentionCase& c, DType dtype) {
  return testing::sum_tolerance(dtype, std::max(c.head_dim, c.t_k));
}
Tolerance backward_tolerance(const AttentionCase& c, DType dtype) {
  return testing::sum_tolerance(dtype, std::max(c.t_q, c.t_k) + c.head_dim, 2.0);
}

// bf16 results round once on store: max |device - reference| <= 2^-7 max |reference| per tensor
// (ParityRun::check_bf16_forward), and never less than the f32 tolerance `floor` of the sums that
// made them: where the exact result is 0 (grad_q and grad_k with a single key, whose softmax is the
// constant 1, so dS = P (grad_out . v - delta) cancels), both sides hold only the f32 rounding of
// that cancellation, of either sign (seen on an H100: |diff| 1.1e-6 against 2^-7 of a reference of
// 5e-7). lse and delta stay f32, computed from the same (rounded) values as the CPU's, so they keep
// the f32 tolerances.
::testing::AssertionResult bf16_close(const Tensor& actual, const Tensor& expected,
                                      const Tolerance& floor) {
  const double atol = std::max(std::ldexp(testing::max_abs(expected), -7), floor.atol);
  return all_close(actual, expected, Tolerance{0.0, atol});
}

// One case in `dtype` (f32, f64, or bf16 against the CPU's f32 on the rounded values) with the
// kernel family set by the caller: forward, then backward from the CPU forward's saved out and lse
// (the same saved values on both sides, so the backward is compared on its own).
void check_case(ParityRun& run, const AttentionCase& c, DType dtype) {
  SCOPED_TRACE(fmt::format("{} [{}]", c.name, dtype_name(dtype)));
  testing::PoisonGuard poison;
  const Device device = run.device();
  const bool bf16 = dtype == DType::bf16;
  const DType ref_dtype = bf16 ? DType::f32 : dtype;  // the CPU computes no bf16
  // Inputs rounded to the device's dtype first, so both sides see the same values.
  auto draw = [&](int64_t t) {
    Tensor x = rand_normal({c.batch, c.heads, t, c.head_dim}, run.generator());
    return raw_to_dtype(raw_to_dtype(x, dtype), DType::f32);
  };
  const Tensor q = draw(c.t_q), k = draw(c.t_k), v = draw(c.t_k), grad_out = draw(c.t_q);

  auto on = [&](const Tensor& x, DType dt, Device dev) { return place(c, x, dt, dev); };
  const Tensor hq = on(q, ref_dtype, kCPU), hk = on(k, ref_dtype, kCPU),
               hv = on(v, ref_dtype, kCPU);
  const Tensor dq = on(q, dtype, device), dk = on(k, dtype, device), dv = on(v, dtype, device);
  const Forward ref = run_forward(c, hq, hk, hv);
  const Forward got = run_forward(c, dq, dk, dv);
  const Tolerance ftol = forward_tolerance(c, ref_dtype), btol = backward_tolerance(c, ref_dtype);
  EXPECT_TRUE(bf16 ? bf16_close(got.out, ref.out, ftol) : all_close(got.out, ref.out, ftol))
      << "out";
  EXPECT_TRUE(all_close(got.lse, ref.lse, ftol)) << "lse";
  // Deterministic: the same call gives the same bits.
  const Forward again = run_forward(c, dq, dk, dv);
  EXPECT_TRUE(all_close(again.out, got.out, testing::kExact)) << "out, second run";
  EXPECT_TRUE(all_close(again.lse, got.lse, testing::kExact)) << "lse, second run";

  // The saved forward: the CPU's out rounded to the dtype, and its lse, on both sides.
  const Tensor out = raw_to_dtype(raw_to_dtype(raw_clone(ref.out), dtype), DType::f32);
  const Tensor hout = on(out, ref_dtype, kCPU), dout = on(out, dtype, device);
  const Tensor dlse = raw_to_device(raw_clone(ref.lse), device);
  const Backward gref = run_backward(c, hq, hk, hv, hout, ref.lse, on(grad_out, ref_dtype, kCPU));
  const Backward ggot = run_backward(c, dq, dk, dv, dout, dlse, on(grad_out, dtype, device));
  EXPECT_TRUE(all_close(ggot.delta, gref.delta, btol)) << "delta";
  const char* names[] = {"grad_q", "grad_k", "grad_v"};
  const Tensor* want[] = {&gref.grad_q, &gref.grad_k, &gref.grad_v};
  const Tensor* have[] = {&ggot.grad_q, &ggot.grad_k, &ggot.grad_v};
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(bf16 ? bf16_close(*have[i], *want[i], btol) : all_close(*have[i], *want[i], btol))
        << names[i];
}

// Every case with each kernel family forced (tiled falls back to the reference where it does not
// apply, flash to blocked: its tensor-core kernels run the bf16 cases with D 64 and 128).
void check_all_cases(ParityRun& run, DType dtype) {
  for (const char* kernel : {"reference", "tiled", "blocked", "flash"}) {
    SCOPED_TRACE(fmt::format("GRADUS_ATTENTION_KERNEL={}", kernel));
    AttentionKernelGuard guard{std::string(kernel)};
    for (const AttentionCase& c : attention_cases()) check_case(run, c, dtype);
  }
}

TEST(CudaParityAttentionKernels, f32) {
  GRADUS_PARITY_SETUP(run);
  check_all_cases(run, DType::f32);
}

TEST(CudaParityAttentionKernels, f64) {
  GRADUS_PARITY_SETUP(run);
  check_all_cases(run, DType::f64);
}

TEST(CudaParityAttentionKernels, bf16) {
  GRADUS_PARITY_SETUP(run);
  if (testing::parity_on_cpu()) GTEST_SKIP() << "the CPU computes no bf16";
  check_all_cases(run, DType::bf16);
}

TEST(CudaParityAttentionKernels, default_choice_is_flash) {
  GRADUS_PARITY_SETUP(run);
  // Unset, the flash kernels run (blocked where they do not apply): the results of "flash".
  AttentionKernelGuard guard(std::nullopt);
  ASSERT_EQ(kernels::attention_kernel_choice(), kernels::AttentionKernelChoice::flash);
  check_case(run, attention_cases()[0], DType::f32);
  if (!testing::parity_on_cpu()) check_case(run, attention_cases()[0], DType::bf16);
}

TEST(CudaParityAttentionKernels, refuses_a_causal_mask_with_fewer_keys_than_queries) {
  GRADUS_PARITY_SETUP(run);
  const AttentionCase c{"Tq 5 > Tk 3", 1, 1, 5, 3, 64, true, false};
  const Tensor q = Tensor::zeros({1, 1, 5, 64}, DType::f32, run.device());
  const Tensor kv = Tensor::zeros({1, 1, 3, 64}, DType::f32, run.device());
  const std::string message = testing::error_message([&] { run_forward(c, q, kv, kv); });
  EXPECT_NE(message.find("a causal mask needs at least as many keys (3) as queries (5)"),
            std::string::npos)
      << message;
}

// The variable itself (no GPU needed).
TEST(AttentionKernelChoice, parses_the_variable) {
  using kernels::AttentionKernelChoice;
  EXPECT_EQ(kernels::parse_attention_kernel_choice(nullptr), AttentionKernelChoice::flash);
  EXPECT_EQ(kernels::parse_attention_kernel_choice(""), AttentionKernelChoice::flash);
  EXPECT_EQ(kernels::parse_attention_kernel_choice("blocked"), AttentionKernelChoice::blocked);
  EXPECT_EQ(kernels::parse_attention_kernel_choice("tiled"), AttentionKernelChoice::tiled);
  EXPECT_EQ(kernels::parse_attention_kernel_choice("reference"), AttentionKernelChoice::reference);
  EXPECT_EQ(kernels::parse_attention_kernel_choice("flash"), AttentionKernelChoice::flash);
  const std::string message =
      testing::error_message([] { kernels::parse_attention_kernel_choice("fast"); });
  EXPECT_NE(message.find("GRADUS_ATTENTION_KERNEL"), std::string::npos) << message;
  EXPECT_NE(message.find("\"fast\""), std::string::npos) << message;
  EXPECT_NE(message.find("\"flash\""), std::string::npos) << message;
  {
    AttentionKernelGuard guard(std::string("reference"));
    EXPECT_EQ(kernels::attention_kernel_choice(), AttentionKernelChoice::reference);
  }
  AttentionKernelGuard guard(std::nullopt);
  EXPECT_EQ(kernels::attention_kernel_choice(), AttentionKernelChoice::flash);
}

}  // namespace
}  // namespace gradus
