// `gradus report DIR [--out FILE]`: the HTML and Markdown report of a run or sweep directory
// (experiments/lib/report.h, docs/experiments.md "Reports").
#include <fmt/format.h>

#include <iostream>

#include "core/error.h"
#include "experiments/lib/commands.h"
#include "experiments/lib/report.h"

namespace gradus::experiments {
namespace {

int report_cmd(const std::vector<std::string>& args) {
  std::string dir, out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--out") {
      GRADUS_CHECK(i + 1 < args.size(), "gradus report",
                   "--out needs a file name (e.g. report.html)");
      out = args[++i];
    } else {
      GRADUS_CHECK(args[i].rfind("--", 0) != 0, "gradus report",
                   "unknown option {} (expected DIR [--out FILE])", args[i]);
      GRADUS_CHECK(dir.empty(), "gradus report", "expected one directory, found {} and {}", dir,
                   args[i]);
      dir = args[i];
    }
  }
  GRADUS_CHECK(!dir.empty(), "gradus report",
               "expected a run or sweep directory (gradus report DIR [--out FILE])");
  const ReportFiles f = write_report(dir, out);
  std::cout << fmt::format("wrote {} and {} ({} charts as SVG beside it); metrics as CSV: {}\n",
                           f.html, f.markdown, f.svgs.size(), fmt::join(f.csvs, ", "));
  return 0;
}

const bool registered = register_command(
    {"report",
     "report DIR [--out FILE]\n"
     "                   HTML page (DIR/report.html: curves, tables, descriptor, machine; no\n"
     "                   network or scripts needed) and Markdown (report.md, report_*.svg) of a\n"
     "                   run, sweep or pipeline directory; metrics.csv for pandas (docs/experiments.md)",
     report_cmd});

}  // namespace
}  // namespace gradus::experiments
