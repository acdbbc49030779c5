// `gradus bench lm` (experiments/lib/bench_lm.h): a one-step run reports what it measured and the
// options it ran with; bad options are refused with a message that names them.
#include "experiments/lib/bench_lm.h"

#include <gtest/gtest.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "core/error.h"

namespace gradus::experiments {
namespace {

std::string error_of(const BenchLmOptions& o) {
  try {
    bench_lm(o);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error thrown";
}

TEST(BenchLm, OneSmallStepReportsItsMeasurements) {
  BenchLmOptions o;
  o.batch = 2;  // the small preset with 2 sequences: a fraction of a second
  o.steps = 1;
  const nlohmann::json r = bench_lm(o);
  EXPECT_EQ(r["batch"], 2);
  EXPECT_EQ(r["seq"], 128);
  EXPECT_EQ(r["precision"], "f32");
  EXPECT_EQ(r["attention"], "std");
  EXPECT_GT(r["tokens_per_s"].get<double>(), 0.0);
  EXPECT_GT(r["peak_bytes"].get<double>(), 0.0);
  EXPECT_GT(r["step_matmul_gflop"].get<double>(), 0.0);
  EXPECT_TRUE(std::isfinite(r["final_loss"].get<double>()));
}

// The census of one step: its kernel calls by name, and their total; the mixed-precision path
// (f32 compute, f64 parameters on the CPU) adds the casts of the weights and their gradients.
TEST(BenchLm, CensusListsTheKernelCallsOfOneStep) {
  BenchLmOptions o;
  o.batch = 2;
  o.steps = 1;
  o.census = true;
  const nlohmann::json plain = bench_lm(o);
  o.precision = "f32-f64";
  const nlohmann::json mixed = bench_lm(o);
  auto calls = [](const nlohmann::json& r, const std::string& kernel) {
    for (const auto& e : r["kernel_census"])
      if (e["kernel"] == kernel) return e["calls"].get<int64_t>();
    return int64_t{0};
  };
  for (const nlohmann::json* r : {&plain, &mixed}) {
    int64_t total = 0, previous = INT64_MAX;
    for (const auto& e : (*r)["kernel_census"]) {
      total += e["calls"].get<int64_t>();
      EXPECT_LE(e["calls"].get<int64_t>(), previous) << "most frequent first";
      previous = e["calls"].get<int64_t>();
    }
    EXPECT_EQ((*r)["kernel_calls_per_step"].get<int64_t>(), total);
    // small: 4 layers of 7 products, each with 2 more in the backward, and the head's 3. Mixed
    // precision writes the gradients of wide operands with gemm_wide_output.
    EXPECT_EQ(calls(*r, "gemm") + calls(*r, "gemm_wide_output"), 4 * 7 * 3 + 3);
    EXPECT_EQ(calls(*r, "adam_multi_step"), 1);
    EXPECT_EQ(calls(*r, "cross_entropy_check_targets"), 1);
  }
  EXPECT_EQ(calls(plain, "copy (dtype conversion)"), 0);
  EXPECT_EQ(calls(plain, "copy"), 0)
      << "the heads of q, k and v and their gradients are never copied";
  EXPECT_EQ(calls(plain, "gemm_wide_output"), 0);
  // Every weight's dW and every wide activation's dx (q, k, v, gate and up read the normed f64
  // stream; the head's x too) come straight from the product, and so do the head's f64 logits:
  // 4 layers x (7 + 5) + 3.
  EXPECT_EQ(calls(mixed, "gemm_wide_output"), 4 * (7 + 5) + 3);
  // No cast at all in a mixed step: the 29 weights are one cast_multi call on entry
  // (AutocastWeights); the norms write the bf16 copies the products read; add_rms_norm widens the
  // attention's and the MLP's outputs itself; the head's logits come wide from the gemm and their
  // gradient narrow from the cross-entropy kernel; the products write wide gradients.
  EXPECT_EQ(calls(mixed, "cast_multi"), 1);
  EXPECT_EQ(calls(plain, "cast_multi"), 0);
  EXPECT_EQ(calls(mixed, "copy (dtype conversion)"), 0);
  for (const nlohmann::json* r : {&plain, &mixed}) {
    // Every residual add is in a norm's kernel: 2 per block (the last one in the final norm).
    EXPECT_EQ(calls(*r, "add_rms_norm_forward"), 2 * 4);
    EXPECT_EQ(calls(*r, "add_rms_norm_backward"), 2 * 4);
    EXPECT_EQ(calls(*r, "rms_norm_forward"), 1) << "the first block's input norm alone";
  }
  EXPECT_EQ(mixed["precision"], "f32-f64");
  EXPECT_FALSE(BenchLmOptions{}.census);
  EXPECT_FALSE(bench_lm(BenchLmOptions{.steps = 1, .batch = 2}).contains("kernel_census"));
}

TEST(BenchLm, BadOptionsAreRefusedByName) {
  BenchLmOptions o;
  o.precision = "fp16";
  EXPECT_NE(error_of(o).find("--precision: expected f32, bf16"), std::string::npos) << error_of(o);
  o.precision = "bf16";  // on the CPU
  EXPECT_NE(error_of(o).find("--precision bf16 needs --device cuda"), std::string::npos)
      << error_of(o);
  o = BenchLmOptions{};
  o.batch = -1;
  EXPECT_NE(error_of(o).find("--batch must be positive"), std::string::npos) << error_of(o);
  o = BenchLmOptions{};
  o.steps = 0;
  EXPECT_NE(error_of(o).find("--steps must be at least 1"), std::string::npos) << error_of(o);
  o = BenchLmOptions{};
  o.device = "tpu";
  EXPECT_NE(error_of(o).find("--device: expected cpu or cuda"), std::string::npos) << error_of(o);
}

}  // namespace
}  // namespace gradus::experiments
