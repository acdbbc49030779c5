// `gradus report DIR`: a self-contained HTML page and a Markdown page about a run directory or a
// sweep directory (docs/experiments.md, "Reports"), plus the metrics as CSV for pandas.
//
// A run directory (it holds resolved.json) gets its loss, learning-rate, gradient-norm and
// throughput curves, the graded diagnostics when the metrics carry "grading" objects, the
// summary, the machine and the resolved descriptor. A sweep directory (it holds sweep.json) gets
// each configuration's mean validation and training loss over seeds with a ± std band, the final
// and best validation loss of each configuration with error bars, the aggregate table, the state of
// every run, the overrides, the base descriptor and the machines. A pipeline directory (it holds
// pipeline.json; experiments/lib/pipeline.h) gets the table of its steps, then each step's own
// report (a run or a sweep) or its result: the last JSON object it printed as a table, else the
// end of its output.
//
// The output depends on the directory's files only (no clock, no absolute paths of the directory),
// so a second report of the same directory is byte-identical. Every file is written atomically.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace gradus::experiments {

struct ReportFiles {
  std::string html;               // DIR/report.html (or --out)
  std::string markdown;           // beside it: report.md
  std::vector<std::string> svgs;  // beside it: report_<chart>.svg, referenced by report.md
  std::vector<std::string> csvs;  // metrics.csv of the run (of the sweep and of each of its runs)
};

// Writes the report of `dir` (a run, sweep or pipeline directory). `html_path` "" means DIR/report.html;
// the Markdown and SVG files go beside the HTML file, named after its stem. Throws gradus::Error
// naming the file for a directory that is neither, an unreadable or corrupt JSON file, or a
// metrics.jsonl line that is not a JSON object with an integer "step" (with its line number).
// A run without summary.json is reported as incomplete, with its curves up to the last step.
ReportFiles write_report(const std::string& dir, const std::string& html_path = "");

// The lines of a metrics.jsonl file (none when it does not exist yet).
std::vector<nlohmann::json> read_metrics_lines(const std::string& path);

// Metrics lines as CSV: a header of "step" and then the union of the lines' other numeric
// top-level keys (in order of first appearance; nested objects such as "grading" are left out),
// one row per line, an empty cell where a line lacks a key.
std::string metrics_csv(const std::vector<nlohmann::json>& lines);

// Several runs in one CSV (a sweep's): `lead_columns` (e.g. config, seed) first, each row
// carrying its run's labels, then the columns of metrics_csv over the union of all lines.
struct LabelledMetrics {
  std::vector<std::string> labels;  // one per lead column
  std::vector<nlohmann::json> lines;
};
std::string metrics_csv(const std::vector<std::string>& lead_columns,
                        const std::vector<LabelledMetrics>& runs);

}  // namespace gradus::experiments
