// `gradus sweep DESCRIPTOR [--jobs N] [--threads T] [--shard i/n] [--set path=value ...]
//  [--dry-run] [--aggregate-only]` (docs/experiments.md, Sweeps).
#include <iostream>
#include <string>
#include <vector>

#include "core/error.h"
#include "experiments/lib/commands.h"
#include "experiments/lib/sweep.h"

namespace gradus::experiments {
namespace {

constexpr const char* kSweepUsage =
    "sweep DESCRIPTOR [--jobs N] [--threads T] [--shard i/n] [--set path=value ...] [--dry-run]\n"
    "                 [--aggregate-only]\n"
    "                   run a descriptor's \"sweep\" (grid x variants x seeds) as child runs, N "
    "at\n"
    "                   a time, skipping finished runs; writes <log.dir>/<log.name>/ with\n"
    "                   aggregate.md (mean ± std per configuration); --shard i/n (0-based) runs\n"
    "                   the runs whose index % n == i";

int64_t integer_flag(const std::string& flag, const std::string& text) {
  try {
    size_t end = 0;
    int64_t v = std::stoll(text, &end);
    if (end == text.size() && v >= 1) return v;
  } catch (const std::exception&) {
  }
  GRADUS_FAIL("gradus sweep", "{} expects a positive integer, found \"{}\"", flag, text);
}

int cmd_sweep(const std::vector<std::string>& args) {
  SweepOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--jobs" || a == "--threads" || a == "--shard" || a == "--set") {
      GRADUS_CHECK(i + 1 < args.size(), "gradus sweep", "{} needs a value", a);
      const std::string& v = args[++i];
      if (a == "--jobs")
        o.jobs = integer_flag(a, v);
      else if (a == "--threads")
        o.threads = integer_flag(a, v);
      else if (a == "--shard")
        o.shard = parse_shard(v);
      else
        o.overrides.push_back(v);
    } else if (a == "--dry-run") {
      o.dry_run = true;
    } else if (a == "--aggregate-only") {
      o.aggregate_only = true;
    } else if (!a.starts_with("--") && o.descriptor_path.empty()) {
      o.descriptor_path = a;
    } else {
      GRADUS_FAIL("gradus sweep", "unexpected argument \"{}\" (usage: gradus {})", a, kSweepUsage);
    }
  }
  GRADUS_CHECK(!o.descriptor_path.empty(), "gradus sweep",
               "expected a descriptor with a \"sweep\" object (usage: gradus {})", kSweepUsage);
  return run_sweep(o, std::cout);
}

const bool registered = register_command({"sweep", kSweepUsage, cmd_sweep});

}  // namespace
}  // namespace gradus::experiments
