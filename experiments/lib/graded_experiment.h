// `gradus graded-experiment DESCRIPTOR`: the experiments of graded transformers (docs/graded.md),
// each a JSON descriptor in experiments/graded_*.json that names a task, the variants to compare
// (ungraded baseline, folded baseline, LGT, EGT, ...) and the seeds, and prints a table of
// mean +- std over the seeds (and writes it as JSON).
//   polynomial  weighted-homogeneous polynomial regression (do learned grades find the weights?)
//   multiscale  next-value prediction of channels with time scales 2^q_i
//   brackets    Dyck bracket sequences, each token tagged with its nesting depth
//   lm          character language model: `gradus run` of a base descriptor per variant and seed
// The descriptor is validated completely first; every problem is reported with its JSON path.
#pragma once

#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace gradus::experiments {

struct GradedExperimentOptions {
  std::string descriptor_path;
  std::vector<std::string> overrides;  // "--set path=value" on the experiment descriptor
  std::string out_dir;                 // "" = the descriptor's "out" (default runs/graded)
  std::string project_root;            // for the lm task's corpora; "" = find it
};

// Runs every variant for every seed; returns {"name", "task", "variants": [{"name", "metrics":
// {metric: {"mean", "std", "values"}}, ...}], ...} and writes it to <out>/<name>.json.
nlohmann::json run_graded_experiment(const GradedExperimentOptions& options, std::ostream& out);

// Checks a descriptor document without running it; throws gradus::Error listing every problem
// ("variants[2].model.graded_q_init: expected ..., found ...").
void validate_graded_experiment(const nlohmann::json& doc, const std::string& source);

}  // namespace gradus::experiments
