#include "experiments/lib/pipeline.h"

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "experiments/lib/child_process.h"
#include "experiments/lib/commands.h"
#include "experiments/lib/descriptor.h"
#include "experiments/lib/json_file.h"
#include "experiments/lib/progress.h"
#include "experiments/lib/sweep.h"
#include "models/io/atomic_file.h"
#include "models/io/json_depth.h"

namespace gradus::experiments {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kWho = "pipeline";
constexpr const char* kStepDescriptorFile = "descriptor.json";
constexpr const char* kStepLogFile = "log.txt";

// The commands of experiments/cli/main.cpp; model families add theirs with register_command.
const std::vector<std::string>& builtin_commands() {
  static const std::vector<std::string> names = {"run", "eval", "ops", "info", "bench", "verify"};
  return names;
}

std::vector<std::string> known_commands() {
  std::vector<std::string> names = builtin_commands();
  for (const Command* c : all_commands()) names.push_back(c->name);
  return names;
}

bool is_safe_name(const std::string& s) {
  if (s.empty() || s == "." || s == ".." || s.size() > 100) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      return false;
  return true;
}

std::string type_name(const ordered_json& v) {
  return v.is_null() ? "null" : std::string(v.type_name());
}

ordered_json read_document(const std::string& path) { return read_json_document(path, kWho); }

// The placeholders of a command, each replaced in every argument where it appears.
std::string substitute(std::string arg, const Pipeline& p, const PipelineStep& step) {
  const std::vector<std::pair<std::string, std::string>> values = {
      {"{dir}", p.dir},
      {"{step}", (fs::path(p.dir) / step.name).string()},
      {"{here}", fs::absolute(p.source).parent_path().lexically_normal().string()}};
  for (const auto& [key, value] : values)
    for (size_t at; (at = arg.find(key)) != std::string::npos;) arg.replace(at, key.size(), value);
  return arg;
}

// Placeholders written as {name} that are not ours: a likely typo.
std::string unknown_placeholder(const std::string& arg) {
  for (size_t open = arg.find('{'); open != std::string::npos; open = arg.find('{', open + 1)) {
    size_t close = arg.find('}', open);
    if (close == std::string::npos) return "";
    std::string name = arg.substr(open, close - open + 1);
    if (name != "{dir}" && name != "{step}" && name != "{here}") return name;
  }
  return "";
}

// The inline descriptor as the step's child reads it: its runs go into the step's directory.
ordered_json step_descriptor(const Pipeline& p, const PipelineStep& step) {
  ordered_json d = step.descriptor;
  if (!d["log"].is_object()) d["log"] = ordered_json::object();
  d["log"]["dir"] = p.dir;
  d["log"]["name"] = step.name;
  return d;
}

std::string now_duration(Clock::time_point since) {
  return format_duration(std::chrono::duration<double>(Clock::now() - since).count());
}

}  // namespace

bool is_pipeline_document(const std::string& path) {
  try {
    ordered_json doc = read_document(path);
    return doc.is_object() && doc.contains("pipeline");
  } catch (const std::exception&) {
    return false;
  }
}

Pipeline load_pipeline(const std::string& path) {
  ordered_json doc = read_document(path);
  std::vector<DescriptorProblem> problems;
  auto problem = [&](std::string where, std::string what) {
    problems.push_back({std::move(where), std::move(what)});
  };
  Pipeline p;
  p.source = path;
  GRADUS_CHECK(doc.is_object() && doc.contains("pipeline") && doc["pipeline"].is_object(), kWho,
               "{}: expected an object with a \"pipeline\" object", path);
  for (const auto& [key, value] : doc.items())
    if (key != "pipeline")
      problem(key, "unknown key (a pipeline document holds only \"pipeline\")");
  const ordered_json& pl = doc["pipeline"];
  static const std::vector<std::string> kKeys = {"name", "dir", "steps"};
  for (const auto& [key, value] : pl.items())
    if (std::find(kKeys.begin(), kKeys.end(), key) == kKeys.end()) {
      std::string near = closest_match(key, kKeys);
      problem("pipeline." + key, near.empty()
                                     ? "unknown key"
                                     : fmt::format("unknown key (did you mean \"{}\"?)", near));
    }
  p.name = fs::path(path).stem().string();
  if (pl.contains("name")) {
    if (pl["name"].is_string() && is_safe_name(pl["name"]))
      p.name = pl["name"];
    else
      problem("pipeline.name", fmt::format("expected a name of letters, digits, '-', '_' and '.', "
                                           "found {}",
                                           pl["name"].dump()));
  }
  std::string base_dir = "runs";
  if (pl.contains("dir")) {
    if (pl["dir"].is_string() && !pl["dir"].get<std::string>().empty())
      base_dir = pl["dir"];
    else
      problem("pipeline.dir", fmt::format("expected a directory path, found {}", pl["dir"].dump()));
  }
  p.dir = (fs::path(base_dir) / p.name).string();

  if (!pl.contains("steps") || !pl["steps"].is_array() || pl["steps"].empty()) {
    problem("pipeline.steps",
            fmt::format("expected a non-empty array of steps, found {}",
                        pl.contains("steps") ? type_name(pl["steps"]) : "nothing"));
    throw DescriptorError(path, problems);
  }
  const std::vector<std::string> commands = known_commands();
  std::set<std::string> names;
  for (size_t i = 0; i < pl["steps"].size(); ++i) {
    const ordered_json& s = pl["steps"][i];
    const std::string at = fmt::format("pipeline.steps[{}]", i);
    if (!s.is_object()) {
      problem(at, fmt::format("expected an object, found {}", type_name(s)));
      continue;
    }
    static const std::vector<std::string> kStepKeys = {"name", "about", "command", "descriptor",
                                                       "args"};
    for (const auto& [key, value] : s.items())
      if (std::find(kStepKeys.begin(), kStepKeys.end(), key) == kStepKeys.end()) {
        std::string near = closest_match(key, kStepKeys);
        problem(at + "." + key, near.empty()
                                    ? "unknown key"
                                    : fmt::format("unknown key (did you mean \"{}\"?)", near));
      }
    PipelineStep step;
    if (s.contains("name") && s["name"].is_string() && is_safe_name(s["name"])) {
      step.name = s["name"];
      if (!names.insert(step.name).second)
        problem(at + ".name", fmt::format("\"{}\" names an earlier step too", step.name));
    } else {
      problem(at + ".name", fmt::format("expected a name of letters, digits, '-', '_' and '.' "
                                        "(the step's directory), found {}",
                                        s.contains("name") ? s["name"].dump() : "nothing"));
    }
    if (s.contains("about")) {
      if (s["about"].is_string())
        step.about = s["about"];
      else
        problem(at + ".about", fmt::format("expected a string, found {}", type_name(s["about"])));
    }
    const bool has_command = s.contains("command"), has_descriptor = s.contains("descriptor");
    if (has_command == has_descriptor) {
      problem(at,
              "expected exactly one of \"command\" (a gradus command line) and "
              "\"descriptor\" (an inline run or sweep descriptor)");
      continue;
    }
    auto strings = [&](const char* key, std::vector<std::string>& into) {
      const ordered_json& v = s[key];
      if (!v.is_array()) {
        problem(at + "." + key,
                fmt::format("expected an array of strings, found {}", type_name(v)));
        return;
      }
      for (size_t j = 0; j < v.size(); ++j) {
        const std::string where = fmt::format("{}.{}[{}]", at, key, j);
        if (!v[j].is_string()) {
          problem(where, fmt::format("expected a string, found {}", v[j].dump()));
          continue;
        }
        into.push_back(v[j]);
        if (std::string bad = unknown_placeholder(into.back()); !bad.empty())
          problem(where,
                  fmt::format("unknown placeholder {} (known: {{dir}}, {{step}}, {{here}})", bad));
      }
    };
    if (has_command) {
      strings("command", step.command);
      if (step.command.empty() && s["command"].is_array())
        problem(at + ".command", "expected a command line, found an empty array");
      if (!step.command.empty() &&
          std::find(commands.begin(), commands.end(), step.command[0]) == commands.end()) {
        std::string near = closest_match(step.command[0], commands);
        problem(at + ".command[0]",
                fmt::format("unknown gradus command \"{}\"{}", step.command[0],
                            near.empty() ? std::string(" (see gradus help)")
                                         : fmt::format(" (did you mean \"{}\"?)", near)));
      }
      if (s.contains("args")) problem(at + ".args", "only descriptor steps take \"args\"");
    } else {
      if (!s["descriptor"].is_object()) {
        problem(at + ".descriptor",
                fmt::format("expected a descriptor object, found {}", type_name(s["descriptor"])));
        continue;
      }
      step.descriptor = s["descriptor"];
      if (s.contains("args")) strings("args", step.args);
      if (!step.name.empty()) {
        // Validated exactly as the child will read it, problems under this step's path.
        ordered_json d = step_descriptor(p, step);
        try {
          if (d.contains("sweep"))
            plan_sweep(d, path, {}, step.name);
          else
            parse_descriptor(json::parse(d.dump()), path, {}, step.name);
        } catch (const DescriptorError& e) {
          for (const DescriptorProblem& dp : e.problems())
            problem(at + ".descriptor" + (dp.path.empty() ? "" : "." + dp.path), dp.message);
        }
      }
    }
    p.steps.push_back(std::move(step));
  }
  if (!problems.empty()) throw DescriptorError(path, problems);
  return p;
}

std::vector<std::string> step_command_line(const Pipeline& p, const PipelineStep& step,
                                           const std::string& executable) {
  std::vector<std::string> line = {executable};
  const fs::path step_dir = fs::path(p.dir) / step.name;
  if (!step.command.empty()) {
    for (const std::string& a : step.command) line.push_back(substitute(a, p, step));
    return line;
  }
  const std::string file = (step_dir / kStepDescriptorFile).string();
  if (step.descriptor.contains("sweep")) {
    line.insert(line.end(), {"sweep", file});
  } else {
    line.insert(line.end(), {"run", file, "--run-dir", (step_dir / "run").string()});
  }
  for (const std::string& a : step.args) line.push_back(substitute(a, p, step));
  return line;
}

int run_pipeline(const PipelineOptions& options, std::ostream& out) {
  const Pipeline p = load_pipeline(options.path);
  const std::string exe = self_executable(kWho);
  const auto start = Clock::now();
  out << fmt::format("pipeline {}: {} steps into {} ({})\n", p.name, p.steps.size(), p.dir,
                     options.path);
  if (options.dry_run) {
    for (size_t i = 0; i < p.steps.size(); ++i) {
      std::vector<std::string> line = step_command_line(p, p.steps[i], "gradus");
      out << fmt::format("[{}/{}] {}{}\n  $ {}\n", i + 1, p.steps.size(), p.steps[i].name,
                         p.steps[i].about.empty() ? "" : ": " + p.steps[i].about, shell_line(line));
    }
    return 0;
  }
  std::error_code ec;
  fs::create_directories(p.dir, ec);
  GRADUS_CHECK(!ec, kWho, "cannot create {}: {}", p.dir, ec.message());

  // What an earlier invocation finished: a step is done when it succeeded with the same command
  // (and, for descriptor steps, the same descriptor).
  const fs::path state_path = fs::path(p.dir) / kPipelineStateFile;
  json previous = json::object();
  if (fs::is_regular_file(state_path)) {
    std::ifstream in(state_path);
    try {
      previous = json::parse(in);
    } catch (const json::exception&) {
      previous = json::object();  // a damaged record only costs re-running the steps
    }
  }
  auto previous_record = [&](const std::string& name) -> json {
    if (previous.contains("steps") && previous["steps"].is_array())
      for (const json& r : previous["steps"])
        if (r.is_object() && r.value("name", "") == name) return r;
    return json();
  };

  json state = {{"name", p.name}, {"source", p.source}, {"steps", json::array()}};
  for (const PipelineStep& s : p.steps) {
    json r = {{"name", s.name},
              {"about", s.about},
              {"command", step_command_line(p, s, "gradus")},
              {"status", "pending"}};
    if (!s.descriptor.is_null()) r["descriptor"] = json::parse(step_descriptor(p, s).dump());
    state["steps"].push_back(r);
  }
  auto save_state = [&] { write_text_atomic(state_path.string(), state.dump(2) + "\n"); };

  int failed_step = -1;
  for (size_t i = 0; i < p.steps.size(); ++i) {
    const PipelineStep& s = p.steps[i];
    json& record = state["steps"][i];
    const std::string head = fmt::format("[{}/{}] {}", i + 1, p.steps.size(), s.name);
    json before = previous_record(s.name);
    if (before.is_object() && before.value("status", "") == "done" &&
        before.value("command", json()) == record["command"] &&
        before.value("descriptor", json()) == record.value("descriptor", json())) {
      record["status"] = "done";
      record["seconds"] = before.value("seconds", 0.0);
      out << head << ": finished earlier, skipped\n";
      continue;
    }
    const fs::path step_dir = fs::path(p.dir) / s.name;
    fs::create_directories(step_dir, ec);
    GRADUS_CHECK(!ec, kWho, "cannot create {}: {}", step_dir.string(), ec.message());
    if (!s.descriptor.is_null())
      write_text_atomic((step_dir / kStepDescriptorFile).string(),
                        step_descriptor(p, s).dump(2) + "\n");
    const std::vector<std::string> line = step_command_line(p, s, exe);
    out << head << (s.about.empty() ? "" : ": " + s.about) << "\n";
    out << "  $ " << shell_line(step_command_line(p, s, "gradus")) << "\n";
    out.flush();
    const std::string log = (step_dir / kStepLogFile).string();
    std::ofstream(log, std::ios::app) << "$ " << shell_line(line) << "\n";
    record["status"] = "running";
    save_state();
    const auto step_start = Clock::now();
    const int status = run_logged_tee(line, log, out, "  ", kWho);
    const double seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
    record["seconds"] = seconds;
    record["exit"] = exit_text(status);
    if (exited_ok(status)) {
      record["status"] = "done";
      save_state();
      out << fmt::format("  done in {}\n", format_duration(seconds));
      continue;
    }
    record["status"] = "failed";
    save_state();
    failed_step = static_cast<int>(i);
    out << fmt::format("  failed ({}) after {}; its output is in {}\n", exit_text(status),
                       format_duration(seconds), log);
    break;
  }
  if (failed_step >= 0) {
    out << fmt::format(
        "pipeline {}: step {} ({}) failed; fix it and run again: the finished steps are "
        "skipped\n",
        p.name, failed_step + 1, p.steps[failed_step].name);
    return 1;
  }
  const bool reported = fs::is_regular_file(fs::path(p.dir) / "report.html");
  out << fmt::format("pipeline {}: {} steps done in {}; everything is in {}{}\n", p.name,
                     p.steps.size(), now_duration(start), p.dir,
                     reported
                         ? fmt::format(" (open {})", (fs::path(p.dir) / "report.html").string())
                         : std::string());
  return 0;
}

}  // namespace gradus::experiments
