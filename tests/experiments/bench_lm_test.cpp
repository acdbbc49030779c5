// `gradus bench lm` (experiments/lib/bench_lm.h): a one-step run reports what it measured and the
// options it ran with; bad options are refused with a message that names them.
#include "experiments/lib/bench_lm.h"

#include <gtest/gtest.h>

#include <cmath>
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

TEST(BenchLm, BadOptionsAreRefusedByName) {
  BenchLmOptions o;
  o.precision = "fp16";
  EXPECT_NE(error_of(o).find("--precision: expected f32 or bf16"), std::string::npos)
      << error_of(o);
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
