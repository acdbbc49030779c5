// Pipelines: one JSON document that runs several experiments in order — language models (a run or
// a sweep, inline), any other `gradus` command (hardmax builds, theory checks, ...) — into one
// directory, and ends with its report. `gradus run FILE` runs a document with a "pipeline" key;
// experiments/tour.json, the README's main job, is one. docs/experiments.md ("Pipelines") is the
// reference.
//
//   {"pipeline": {
//      "name": "tour", "dir": "runs",                   // the directory <dir>/<name>/
//      "steps": [
//        {"name": "language-models", "about": "...",    // a run or a sweep: its descriptor inline
//         "descriptor": {...}, "args": ["--jobs", "2"]},
//        {"name": "hardmax-data", "about": "...",        // any gradus command line
//         "command": ["hardmax-data", "pairs", "--out", "{step}/data.jsonl"]},
//        {"name": "report", "command": ["report", "{dir}"]}]}}
//
// In commands, {dir} is the pipeline's directory, {step} the step's own directory (<dir>/<name>,
// created before the step starts) and {here} the directory of the pipeline file. Each step's output
// goes to <dir>/<name>/log.txt and to the terminal as it comes; <dir>/pipeline.json records every
// step's command, status and time (rewritten atomically). Run again, a pipeline skips the steps it
// finished with the same command; a step that fails stops it (exit status 1) with what failed.
#pragma once

#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace gradus::experiments {

inline constexpr const char* kPipelineStateFile = "pipeline.json";

struct PipelineStep {
  std::string name;   // file-name-safe: the step's directory <dir>/<name>
  std::string about;  // one line shown when it starts ("" = none)
  // Exactly one of: an inline descriptor (an LM run, or a sweep when it has a "sweep" key) with
  // extra arguments for it, or a command line (placeholders substituted).
  nlohmann::ordered_json descriptor;  // null for a command step
  std::vector<std::string> args;      // descriptor steps: extra arguments (e.g. --jobs 2)
  std::vector<std::string> command;   // command steps: e.g. {"verify", "graded"}
};

struct Pipeline {
  std::string name;
  std::string source;  // the document's file
  std::string dir;     // <dir>/<name>
  std::vector<PipelineStep> steps;
};

// True when the JSON file at `path` is an object with a "pipeline" key (false when it cannot be
// read: the usual loading then reports the problem).
bool is_pipeline_document(const std::string& path);

// Reads and validates the document (comments allowed): every step's name, command (a known gradus
// command, strings only, known placeholders) and inline descriptor (validated as `gradus run` or
// `gradus sweep` would, before anything runs). Throws DescriptorError listing every problem, each
// with its JSON path ("pipeline.steps[1].command[0]").
Pipeline load_pipeline(const std::string& path);

// The command line a step runs (the executable's own path first), with placeholders substituted.
// Descriptor steps run `gradus sweep <dir>/<name>/descriptor.json ARGS` for a sweep, or `gradus run
// <dir>/<name>/descriptor.json --run-dir <dir>/<name>/run ARGS` for a single run.
std::vector<std::string> step_command_line(const Pipeline& p, const PipelineStep& step,
                                           const std::string& executable);

struct PipelineOptions {
  std::string path;      // the pipeline document
  bool dry_run = false;  // print the plan (each step's command line) and run nothing
};

// Runs the steps in order (see above). Returns the exit status: 0 when every step succeeded.
int run_pipeline(const PipelineOptions& options, std::ostream& out);

}  // namespace gradus::experiments
