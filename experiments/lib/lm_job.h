// The language-model job: `gradus run DESCRIPTOR` trains a DecoderLM on a text corpus as the
// descriptor says, evaluating on the validation split and checkpointing as it goes, and
// `gradus eval CHECKPOINT` measures a checkpoint's next-byte cross-entropy on a text.
//
// Randomness: one seed fixes the run. The initialisation draws from Philox stream (seed, 0 ...),
// the training windows from (seed, 2^61 ...), dropout from (seed, 2^62 ...) (the model's own
// generator); the streams never meet. Evaluation windows are in order (no randomness). A run
// resumed from its checkpoint therefore repeats the uninterrupted run bit for bit (same backend
// and thread count).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/data/text_dataset.h"
#include "models/nn/lm.h"

namespace gradus::experiments {

// Where the training windows' Philox stream starts (see above).
inline constexpr uint64_t kDataStreamOffset = uint64_t{1} << 61;

struct LmRunOptions {
  std::string descriptor_path;         // may be empty when resuming (the run's resolved.json)
  std::vector<std::string> overrides;  // "--set path=value" assignments, in order
  std::string resume_dir;              // continue this run directory from its checkpoint
  // A fixed run directory instead of <log.dir>/<log.name>/<timestamp>/ (sweeps): created when
  // missing; when it already holds a run, that run is resumed (the descriptor must match) or,
  // when complete, left as it is.
  std::string run_dir;
  std::string project_root;            // where named corpora live; "" = find_project_root()
  bool tty = false;                    // progress display: redrawn line (true) or plain lines
  // Testing hook: return right after this step as a killed run would stop (no final checkpoint,
  // no summary). 0: never.
  int64_t stop_after_step = 0;
};

struct LmRunResult {
  std::string run_dir;
  bool completed = false;  // false when stopped by stop_after_step
  int64_t step = 0;        // steps done
  nlohmann::json summary;  // summary.json's contents (completed runs)
};

// Validates the descriptor (and overrides) before any work, then trains, evaluates, checkpoints
// and writes the run directory (see run_dir.h). With resume_dir: reads the run's resolved.json,
// restores its checkpoint (or starts over when it has none yet), drops the metrics lines after the
// checkpoint and continues in the same directory; a descriptor given as well must resolve to the
// same document; temporary files that killed writers left in it are removed first. A failed write
// (a full disk) stops the run with an error naming the file, the reason and the intact checkpoint
// to resume from. Progress and evaluations are printed to `out`. Throws gradus::Error
// (DescriptorError for an invalid descriptor); a loss or gradient norm that turns NaN or
// infinite stops the run with an error naming the step.
LmRunResult run_lm(const LmRunOptions& options, std::ostream& out);

// The mean next-token cross-entropy over evaluation windows, weighted by tokens.
struct WindowLoss {
  double mean_nats = 0.0;  // mean cross-entropy per predicted token (natural log)
  int64_t tokens = 0;      // predicted tokens (windows x context)
  int64_t windows = 0;
};
// Evaluates `lm` (in eval mode, without gradients; the mode is restored) on up to `max_batches`
// batches of `windows` (0: all), from the first window. Each batch's mean is weighted by its
// token count and summed in double.
WindowLoss evaluate_windows(DecoderLM& lm, SequentialWindows windows, int64_t max_batches = 0);

struct LmEvalOptions {
  std::string checkpoint;      // a checkpoint file or a run directory (its checkpoint)
  std::string text_file;       // "" = the validation split of the run's descriptor
  int64_t context = 0;         // N; 0 = the model's max_position_embeddings
  std::string device = "cpu";  // cpu | cuda | auto
  int64_t batch_size = 0;      // windows per forward pass; 0 = the run's train.batch_size
  std::string project_root;    // where named corpora live; "" = find_project_root()
};

// Loads the checkpoint's model and returns one JSON object:
//   {"checkpoint", "text", "context", "windows", "tokens", "cross_entropy_nats", "bits_per_byte",
//    "step", "device"}
// over the text's bytes cut into non-overlapping windows of N tokens (the last partial window
// dropped). Throws gradus::Error naming the file and the problem.
nlohmann::json eval_lm(const LmEvalOptions& options);

}  // namespace gradus::experiments
