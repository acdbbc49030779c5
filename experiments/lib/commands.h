// Commands that model families add to the `gradus` command line without editing the CLI: each
// registers itself from its own file (e.g. experiments/lib/hardmax_cli.cpp), and `gradus help`
// lists it. `gradus verify [SUITE ...]` runs the registered theory-check suites.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace gradus::experiments {

struct Command {
  std::string name;   // "build-hardmax"
  std::string usage;  // the lines `gradus help` prints (first line: "NAME ARGS", then indented text)
  // args: everything after the command name. Returns the process exit status; throws gradus::Error
  // for bad input (the CLI prints it and exits 1).
  int (*run)(const std::vector<std::string>& args) = nullptr;
};
// Registers at static initialisation: `static const bool r = register_command({...});`
bool register_command(Command command);
const Command* find_command(const std::string& name);
std::vector<const Command*> all_commands();  // sorted by name

struct VerifySuite {
  std::string name;         // "graded"
  std::string description;  // one line
  // Runs every check, printing a table to `out`; returns true when every check passed.
  // args: the options after `gradus verify NAME` (suites document their own, e.g. --quick).
  bool (*run)(const std::vector<std::string>& args, std::ostream& out) = nullptr;
};
bool register_verify_suite(VerifySuite suite);
const VerifySuite* find_verify_suite(const std::string& name);
std::vector<const VerifySuite*> all_verify_suites();  // sorted by name

}  // namespace gradus::experiments
