// Sweeps: one descriptor with a "sweep" object runs a grid of configurations over several seeds
// (`gradus sweep DESCRIPTOR`, or `gradus run` on such a file), each run an ordinary run directory,
// and aggregates mean ± std per configuration. docs/experiments.md ("Sweeps") is the reference.
//
//   "sweep": {
//     "seeds": [0, 1, 2],                      // or n: seeds 0..n-1 (replaces "seed")
//     "grid": {"train.lr": [1e-3, 3e-4]},      // cartesian product over descriptor keys
//     "variants": [{"name": "gin", "set": {"model.attention_kind": "gin"}}]  // each x the grid
//   }
//
// The sweep directory <log.dir>/<log.name>/ (not timestamped: a second invocation finds and skips
// finished runs) holds sweep.json (the plan), base.json (the descriptor every run starts from),
// <config id>/seed-<s>/ (run directories, with log.txt: the run's output), results.csv and
// aggregate.json / .csv / .md.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace gradus::experiments {

inline constexpr const char* kSweepPlanFile = "sweep.json";
inline constexpr const char* kSweepBaseFile = "base.json";
inline constexpr const char* kRunLogFile = "log.txt";

// One point of the grid (crossed with a variant): the overrides it applies to the base.
struct SweepConfig {
  std::string id;    // file-name-safe slug: "gin_g0.5,lr=0.001" ("base" when nothing varies)
  std::string name;  // human label: "gin_g0.5 train.lr=0.001"
  nlohmann::json overrides;  // {"model.attention_kind": "gin", "train.lr": 0.001}
};

struct SweepRun {
  std::string config;  // SweepConfig::id
  uint64_t seed = 0;
  std::string dir;  // relative to the sweep directory: "<id>/seed-<s>"
};

struct SweepPlan {
  std::string name;    // log.name of the base: the sweep directory's name
  std::string source;  // the descriptor file
  std::string dir;     // <log.dir>/<log.name>
  // The base descriptor as children read it (the file without "sweep", --set applied, a corpus
  // path made absolute, log.name explicit), and its resolved form (every default filled in).
  nlohmann::json base_document;
  nlohmann::json base;
  std::vector<uint64_t> seeds;
  std::vector<SweepConfig>
      configs;                 // variants in order, each crossed with the grid (last key fastest)
  std::vector<SweepRun> runs;  // seed-major: every config at the first seed, then the next

  // sweep.json: {"name", "source", "base", "seeds", "configs": [{"id", "name", "overrides"}],
  // "runs": [{"config", "seed", "dir"}]}
  nlohmann::json to_json() const;
  // The overrides of one run as `--set path=value` assignments (seed included).
  std::vector<std::string> run_overrides(const SweepRun& run) const;
};

// True when the JSON file at `path` is an object with a "sweep" key (false when it cannot be read:
// the caller's usual loading then reports the problem).
bool is_sweep_descriptor(const std::string& path);

// Validates a sweep descriptor and expands it. `doc` is the whole file (with "sweep"); overrides
// ("path=value") whose path starts with "sweep." change the sweep object, the others the base.
// Everything is checked before returning: the base, the "sweep" object (unknown keys with a
// suggestion, seeds, grid keys and values, variants) and every expanded configuration, each
// problem naming its config. Throws DescriptorError listing every problem.
SweepPlan plan_sweep(const nlohmann::ordered_json& doc, const std::string& source,
                     const std::vector<std::string>& overrides = {},
                     const std::string& default_name = "sweep");
// Reads the file (comments allowed) and plans it; log.name defaults to the file's stem.
SweepPlan load_sweep(const std::string& path, const std::vector<std::string>& overrides = {});

// --shard i/n: this process runs the plan's runs whose index % n == i (i is 0-based).
struct Shard {
  int64_t index = 0;
  int64_t count = 1;
};
Shard parse_shard(const std::string& text);  // "i/n"; throws gradus::Error naming --shard
std::vector<size_t> shard_runs(size_t num_runs, const Shard& shard);

struct SweepOptions {
  std::string descriptor_path;         // a sweep descriptor (or, with aggregate_only, a sweep dir)
  std::vector<std::string> overrides;  // --set path=value
  int64_t jobs = 1;                    // runs at once
  int64_t threads = 0;                 // CPU threads per run; 0: hardware threads / jobs (>= 1)
  Shard shard;
  bool dry_run = false;         // print the plan and what would run; run and write nothing
  bool aggregate_only = false;  // only (re)write the aggregation files
  std::string executable;       // the gradus binary for the runs; "" = this process's executable
  std::string project_root;     // where named corpora live; "" = find_project_root()
};

// Runs the sweep as `gradus sweep` does: plans and validates, refuses a sweep directory whose
// sweep.json holds another plan, skips finished runs, runs the others (this shard's) as child
// processes `gradus run base.json --set ... --run-dir DIR --threads T`, `jobs` at a time, each
// writing DIR/log.txt, then aggregates. Prints one line per run start and end and a summary.
// Returns the exit status: 0 when every run of this shard finished, 1 when any failed.
int run_sweep(const SweepOptions& options, std::ostream& out);

// Reads <sweep_dir>/sweep.json and the summary.json of every finished run, writes results.csv,
// aggregate.json, aggregate.csv and aggregate.md (atomically) and returns aggregate.json's
// contents: {"name", "metrics": [...], "configs": [{"id", "name", "overrides", "seeds",
// "metrics": {"final_val_loss": {"mean", "std", "n", "values"}, ...}}]}. The metrics are the
// numeric keys of summary.json plus gap = final_val_loss - final_train_loss; std is the sample
// standard deviation (n - 1), 0 when n = 1. Throws gradus::Error naming the file it cannot read.
nlohmann::json aggregate_sweep(const std::string& sweep_dir);

// aggregate.md's table: one row per config, each cell "mean ± std (n)".
std::string aggregate_markdown(const nlohmann::json& aggregate);

}  // namespace gradus::experiments
