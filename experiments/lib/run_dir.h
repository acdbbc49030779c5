// Paths of an experiment: the run directory runs/NAME/TIMESTAMP/ and what it holds, the metrics
// log, and where named corpora live.
//
// A run directory holds (each file replaced atomically, so a killed run never leaves a torn file):
//   resolved.json            the descriptor with every default filled in
//   metrics.jsonl            one JSON object per logged step
//   checkpoint.safetensors   model weights (Hugging Face Llama names) and the training state
//   summary.json             written when the run completes
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace gradus::experiments {

inline constexpr const char* kResolvedFile = "resolved.json";
inline constexpr const char* kMetricsFile = "metrics.jsonl";
inline constexpr const char* kCheckpointFile = "checkpoint.safetensors";
inline constexpr const char* kSummaryFile = "summary.json";

// Creates <base_dir>/<name>/<timestamp>/ (local time, YYYYmmdd-HHMMSS; "-2", "-3", ... appended
// when that directory exists already) and returns its path. Throws gradus::Error naming the
// directory when it cannot be created.
std::string create_run_dir(const std::string& base_dir, const std::string& name);

// The project's root directory: the first of the current directory, the running executable's
// directory and their parents that holds data-excerpts/ and scripts/fetch-data. Empty when none
// does.
std::string find_project_root();

// The named corpora ("moby_dick", "moby_dick_excerpt").
std::vector<std::string> corpus_names();
bool is_corpus_name(const std::string& corpus);

// The file behind data.corpus: a corpus name is looked up under `project_root` (moby_dick in the
// data/ directory that scripts/fetch-data fills, or $GRADUS_DATA_DIR as that script uses;
// moby_dick_excerpt in data-excerpts/); anything else is a file path. An empty `project_root`
// means find_project_root(). Throws gradus::Error that starts with "data.corpus:" and says what
// to do (run scripts/fetch-data, check the path) when there is no such file.
std::string resolve_corpus(const std::string& corpus, const std::string& project_root = "");

// The lines of a metrics log, in order.
class MetricsLog {
 public:
  explicit MetricsLog(std::string path) : path_(std::move(path)) {}
  // Reads the existing file and keeps the lines whose "step" is at most `max_step` (the lines a
  // killed run wrote after its last checkpoint are dropped on resume). A missing file is empty.
  void load(int64_t max_step);
  // Adds a line and rewrites the file atomically.
  void append(const nlohmann::json& line);
  const std::vector<nlohmann::json>& lines() const { return lines_; }

 private:
  std::string path_;
  std::vector<nlohmann::json> lines_;
};

}  // namespace gradus::experiments
