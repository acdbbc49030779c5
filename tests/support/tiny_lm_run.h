// The tiny language-model run the job tests train (experiments/lm_tiny_test.json: a small model
// on the committed excerpt, a few seconds) and its resume, as options for run_lm.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "experiments/lib/lm_job.h"

namespace gradus::testing {

// The descriptor experiments/lm_tiny_test.json of the checkout at repo_root, its runs under
// log_dir, then `overrides` ("path=value") in order.
inline experiments::LmRunOptions tiny_lm_run(const std::filesystem::path& repo_root,
                                             const std::filesystem::path& log_dir,
                                             const std::vector<std::string>& overrides = {}) {
  experiments::LmRunOptions o;
  o.descriptor_path = (repo_root / "experiments" / "lm_tiny_test.json").string();
  o.overrides = {"log.dir=" + log_dir.string()};
  o.overrides.insert(o.overrides.end(), overrides.begin(), overrides.end());
  o.project_root = repo_root.string();
  return o;
}

// The options that resume the run in run_dir (stopped or killed) of the checkout at repo_root.
inline experiments::LmRunOptions resume_lm_run(const std::filesystem::path& repo_root,
                                               const std::string& run_dir) {
  experiments::LmRunOptions o;
  o.resume_dir = run_dir;
  o.project_root = repo_root.string();
  return o;
}

}  // namespace gradus::testing
