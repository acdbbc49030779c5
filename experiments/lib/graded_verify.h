// `gradus verify graded`: the theory of graded transformers (docs/graded.md, spec section 5) as
// numerical checks. Each check draws many random instances in f64 and reports the worst ratio
// observed / bound, which must be <= 1 (for exact properties the bound is a tolerance; for
// bit-for-bit ones the ratio is 0 when every bit agrees and infinite otherwise).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace gradus::experiments {

struct GradedCheckOptions {
  int64_t instances = 200;  // random instances per check (the expensive checks use a tenth)
  uint64_t seed = 0;
};

struct CheckResult {
  std::string id;    // "1", "3b", ...
  std::string name;  // what is checked
  int64_t instances = 0;
  double worst_ratio = 0.0;  // max over instances of observed / bound
  bool passed = true;
  std::string note;  // what else was measured (tightness, d_eff, fit errors)
};

std::vector<CheckResult> run_graded_checks(const GradedCheckOptions& options);
// The table `gradus verify graded` prints: per check the instances, the worst ratio and
// PASS/FAIL, then the notes.
void print_check_table(const std::vector<CheckResult>& results, std::ostream& out);

}  // namespace gradus::experiments
