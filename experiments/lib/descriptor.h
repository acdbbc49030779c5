// The experiment descriptor: one JSON document that fixes a language-model run (data, model,
// training, evaluation, logging, seed, device). The reference of every key (type, default, range)
// is docs/experiments.md; the table behind it is descriptor_fields() below.
//
// A descriptor is checked completely before any work starts. Every problem is reported at once,
// each with its JSON path and what was expected:
//   train.lr: expected a positive number, found -1
//   train.lrr: unknown key (did you mean "train.lr"?)
//   model.hidden_size: expected a positive integer, found "big" (a string)
// Overrides (`--set path=value`, value parsed as JSON, else taken as a string) are applied to the
// document before the check, so they are checked the same way; problems they cause say so.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/nn/config.h"

namespace gradus::experiments {

// Where `data.corpus` names a data set rather than a file.
struct DataSpec {
  std::string corpus;  // "moby_dick", "moby_dick_excerpt", or a path to a text file
  double val_fraction = 0.1;
  int64_t context = 128;  // T: tokens per training window (defaults to max_position_embeddings)
};

struct TrainSpec {
  std::string optimizer = "adamw";   // adamw | adam | sgd
  double lr = 1e-3;                  // the peak learning rate (after warm-up)
  double weight_decay = 0.0;         // applied to matrices only (see docs/experiments.md)
  double beta1 = 0.9, beta2 = 0.95;  // adam, adamw
  double eps = 1e-8;                 // adam, adamw
  double momentum = 0.9;             // sgd
  int64_t warmup_steps = 0;
  std::string schedule = "cosine";  // cosine | constant
  double min_lr = 0.0;
  int64_t steps = 1000;
  int64_t batch_size = 16;
  double clip_grad_norm = 1.0;  // 0: no clipping
  double grade_lr_scale = 0.1;  // grade parameters (graded kinds): lr x this, no weight decay
  // f32 | bf16: mixed precision (autodiff/autocast.h), bf16 products and attention, f32 norms,
  // softmax, loss, parameters and optimiser state; needs the GPU.
  std::string precision = "f32";
};

struct EvalSpec {
  int64_t every = 100;  // 0: only at the end
  int64_t batches = 8;  // validation batches per evaluation; 0: the whole split
};

struct LogSpec {
  int64_t every = 10;
  std::string name;          // runs/<name>/...; defaults to the descriptor file's stem
  std::string dir = "runs";  // where run directories go
};

struct Descriptor {
  DataSpec data;
  ModelConfig model;
  TrainSpec train;
  EvalSpec eval;
  LogSpec log;
  uint64_t seed = 0;
  std::string device = "cpu";  // cpu | cuda | auto

  // Every key with its value (defaults filled in): the resolved descriptor, which parses back to
  // an equal Descriptor.
  nlohmann::json to_json() const;
};

// One problem found in a descriptor: the JSON path ("train.lr", "train.betas[1]", "" for the
// document itself) and what is wrong.
struct DescriptorProblem {
  std::string path;
  std::string message;
};

// Thrown for an invalid descriptor; what() lists every problem, one per line.
class DescriptorError : public Error {
 public:
  DescriptorError(const std::string& source, std::vector<DescriptorProblem> problems);
  const std::vector<DescriptorProblem>& problems() const { return problems_; }

 private:
  std::vector<DescriptorProblem> problems_;
};

// The schema: one entry per key, in document order. `expected` is the phrase used in errors and in
// the reference ("a positive number"); `default_value` is null for a required key and for
// data.context (whose default is model.max_position_embeddings).
struct DescriptorField {
  std::string path;
  std::string type;  // "integer", "number", "boolean", "string", "[number, number]"
  std::string expected;
  nlohmann::json default_value;
  std::string doc;
};
const std::vector<DescriptorField>& descriptor_fields();

// Applies one `path=value` override to `doc`: the value is parsed as JSON when it parses (numbers,
// true/false, arrays, quoted strings), else taken as a string; objects on the path are created as
// needed. Throws gradus::Error for an assignment without '=' or with an empty path component, or a
// path that runs through a value that is not an object. Unknown keys are left for validation.
void apply_override(nlohmann::json& doc, const std::string& assignment);

// Validates `doc` (after applying `overrides` in order) and returns the descriptor with defaults
// filled in. `source` names the document in messages (a file name); `default_name` is log.name
// when the document gives none. Throws DescriptorError listing every problem.
Descriptor parse_descriptor(nlohmann::json doc, const std::string& source,
                            const std::vector<std::string>& overrides = {},
                            const std::string& default_name = "run");

// Reads the JSON file at `path` (comments allowed) and parses it; log.name defaults to the file's
// stem. Throws gradus::Error naming the file when it cannot be read or is not JSON (with line and
// column), DescriptorError when it is not a valid descriptor.
Descriptor load_descriptor(const std::string& path, const std::vector<std::string>& overrides = {});

// The closest of `candidates` to `word` by edit distance, or "" when none is close enough to be a
// plausible misspelling (for "did you mean").
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace gradus::experiments
