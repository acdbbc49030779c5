// Running a sweep: each run is a child process of the same executable,
//   gradus run <sweep dir>/base.json --set ... --set seed=S --run-dir <sweep dir>/<id>/seed-<S>
// with its output in that directory's log.txt, `jobs` at a time. A child that fails is reported
// (exit status, the end of its log) and the others go on.
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "experiments/lib/child_process.h"
#include "experiments/lib/progress.h"
#include "experiments/lib/run_dir.h"
#include "experiments/lib/sweep.h"
#include "models/io/atomic_file.h"

namespace gradus::experiments {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// What sweep.json on disk plans differently from `plan` (empty: the same plan).
std::vector<std::string> plan_differences(const json& old_plan, const json& plan) {
  std::vector<std::string> out;
  if (old_plan.value("base", json()) != plan["base"]) {
    const json &a = old_plan.value("base", json::object()), &b = plan["base"];
    for (const auto& [section, values] : b.items()) {
      if (!values.is_object()) {
        if (a.value(section, json()) != values)
          out.push_back(fmt::format("base {}: {} there, {} now", section,
                                    a.value(section, json()).dump(), values.dump()));
        continue;
      }
      for (const auto& [key, value] : values.items()) {
        json old =
            a.contains(section) && a[section].is_object() ? a[section].value(key, json()) : json();
        if (old != value)
          out.push_back(
              fmt::format("base {}.{}: {} there, {} now", section, key, old.dump(), value.dump()));
      }
    }
    if (out.empty()) out.push_back("the base descriptor differs");
  }
  auto configs = [](const json& p) {
    std::vector<std::string> ids;
    for (const json& c : p.value("configs", json::array()))
      ids.push_back(c.value("id", "") + " " + c.value("overrides", json::object()).dump());
    return ids;
  };
  if (configs(old_plan) != configs(plan)) {
    std::vector<std::string> old_ids, new_ids;
    for (const json& c : old_plan.value("configs", json::array()))
      old_ids.push_back(c.value("id", ""));
    for (const json& c : plan["configs"]) new_ids.push_back(c["id"]);
    out.push_back(fmt::format("configs: [{}] there, [{}] now", fmt::join(old_ids, ", "),
                              fmt::join(new_ids, ", ")));
  }
  return out;
}

// Runs of seconds are common in sweeps: tenths below a minute.
std::string run_time(double seconds) {
  return seconds < 59.95 ? fmt::format("{:.1f}s", seconds) : format_duration(seconds);
}

struct Running {
  size_t run = 0;  // index into the plan's runs
  Clock::time_point start;
};

}  // namespace

int run_sweep(const SweepOptions& options, std::ostream& out) {
  GRADUS_CHECK(options.jobs >= 1, "--jobs", "expected a positive integer, found {}", options.jobs);
  GRADUS_CHECK(options.threads >= 0, "--threads", "expected a positive integer, found {}",
               options.threads);
  // --aggregate-only accepts the sweep directory itself as well as the descriptor.
  if (options.aggregate_only && fs::is_directory(options.descriptor_path)) {
    GRADUS_CHECK(options.overrides.empty(), "--aggregate-only",
                 "--set has no effect on an existing sweep directory");
    json agg = aggregate_sweep(options.descriptor_path);
    out << aggregate_markdown(agg);
    return 0;
  }
  const SweepPlan plan = load_sweep(options.descriptor_path, options.overrides);
  const fs::path dir = plan.dir;
  const fs::path plan_file = dir / kSweepPlanFile;
  if (options.aggregate_only) {
    GRADUS_CHECK(fs::is_regular_file(plan_file), "--aggregate-only", "{} has not run yet (no {})",
                 dir.string(), plan_file.string());
    json agg = aggregate_sweep(dir.string());
    out << aggregate_markdown(agg);
    return 0;
  }
  // The data must be there before any run starts (each run would fail on its own otherwise).
  resolve_corpus(plan.base["data"]["corpus"], options.project_root);

  const json plan_json = plan.to_json();
  if (fs::is_regular_file(plan_file)) {
    json old_plan;
    try {
      old_plan = json::parse(read_text(plan_file));
    } catch (const json::exception& e) {  // parse errors, numbers out of range
      GRADUS_FAIL("gradus sweep",
                  "{} is not valid JSON ({}); delete the directory {} to start over",
                  plan_file.string(), e.what(), dir.string());
    }
    std::vector<std::string> diffs = plan_differences(old_plan, plan_json);
    GRADUS_CHECK(diffs.empty(), "gradus sweep",
                 "{} holds another sweep plan ({}); give this sweep another log.name or delete {} "
                 "to start over",
                 plan_file.string(), fmt::join(diffs, "; "), dir.string());
  }

  const std::vector<size_t> mine = shard_runs(plan.runs.size(), options.shard);
  std::vector<size_t> todo;
  size_t finished = 0;
  for (size_t i : mine)
    if (fs::is_regular_file(dir / plan.runs[i].dir / kSummaryFile))
      ++finished;
    else
      todo.push_back(i);
  const int64_t threads =
      options.threads > 0
          ? options.threads
          : std::max<int64_t>(
                1, static_cast<int64_t>(std::thread::hardware_concurrency()) / options.jobs);
  out << fmt::format("sweep {}: {} configs x {} seeds = {} runs in {}", plan.name,
                     plan.configs.size(), plan.seeds.size(), plan.runs.size(), dir.string());
  if (options.shard.count > 1)
    out << fmt::format(" (shard {}/{}: {} runs)", options.shard.index, options.shard.count,
                       mine.size());
  out << fmt::format("; {} finished, {} to run, {} at a time, {} thread{} each\n", finished,
                     todo.size(), options.jobs, threads, threads == 1 ? "" : "s");

  for (size_t i : mine) {
    const SweepRun& r = plan.runs[i];
    fs::path summary = dir / r.dir / kSummaryFile;
    if (fs::is_regular_file(summary)) {
      double val = json::parse(read_text(summary)).value("final_val_loss", 0.0);
      out << fmt::format("skip  {} seed {}: finished (val loss {:.4f})\n", r.config, r.seed, val);
    } else if (options.dry_run) {
      bool resume = fs::is_regular_file(dir / r.dir / kCheckpointFile);
      out << fmt::format("{} {} seed {}: gradus run {} --set {} --run-dir {}\n",
                         resume ? "resume" : "run   ", r.config, r.seed,
                         (dir / kSweepBaseFile).string(),
                         fmt::join(plan.run_overrides(r), " --set "), (dir / r.dir).string());
    }
  }
  if (options.dry_run) return 0;

  std::error_code ec;
  fs::create_directories(dir, ec);
  GRADUS_CHECK(!ec, "gradus sweep", "cannot create {}: {}", dir.string(), ec.message());
  write_text_atomic(plan_file.string(), plan_json.dump(2) + "\n");
  write_text_atomic((dir / kSweepBaseFile).string(), plan.base_document.dump(2) + "\n");

  const std::string exe =
      options.executable.empty() ? self_executable("gradus sweep") : options.executable;
  const auto sweep_start = Clock::now();
  std::deque<size_t> queue(todo.begin(), todo.end());
  std::map<pid_t, Running> running;
  size_t started = 0, done = 0, failed = 0;
  const size_t total = todo.size();

  // Reports a finished child: its final validation loss, or its exit status and log's end.
  auto report = [&](const Running& job, int status) {
    const SweepRun& r = plan.runs[job.run];
    const double seconds = std::chrono::duration<double>(Clock::now() - job.start).count();
    const fs::path run_dir = dir / r.dir;
    if (status == 0 && fs::is_regular_file(run_dir / kSummaryFile)) {
      ++done;
      double val = json::parse(read_text(run_dir / kSummaryFile)).value("final_val_loss", 0.0);
      out << fmt::format("done  {} seed {}: val loss {:.4f} in {}\n", r.config, r.seed, val,
                         run_time(seconds));
    } else {
      ++failed;
      out << fmt::format("FAIL  {} seed {}: {} after {}; the end of {}:\n{}", r.config, r.seed,
                         status == 0 ? "no summary.json" : exit_text(status), run_time(seconds),
                         (run_dir / kRunLogFile).string(),
                         tail_lines((run_dir / kRunLogFile).string(), 8));
    }
    out.flush();
  };

  while (!queue.empty() || !running.empty()) {
    while (!queue.empty() && static_cast<int64_t>(running.size()) < options.jobs) {
      const size_t i = queue.front();
      queue.pop_front();
      const SweepRun& r = plan.runs[i];
      const fs::path run_dir = dir / r.dir;
      fs::create_directories(run_dir, ec);
      GRADUS_CHECK(!ec, "gradus sweep", "cannot create {}: {}", run_dir.string(), ec.message());
      const bool resume = fs::is_regular_file(run_dir / kCheckpointFile);
      std::vector<std::string> args = {exe, "run", (dir / kSweepBaseFile).string()};
      for (const std::string& o : plan.run_overrides(r)) args.insert(args.end(), {"--set", o});
      args.insert(args.end(),
                  {"--run-dir", run_dir.string(), "--threads", std::to_string(threads)});
      const std::string log = (run_dir / kRunLogFile).string();
      {
        std::ofstream header(log, std::ios::app);
        header << "$";
        for (const std::string& a : args) header << " " << a;
        header << "\n";
      }
      ++started;
      out << fmt::format("start {} seed {}{} [{}/{}]\n", r.config, r.seed,
                         resume ? " (resuming)" : "", started, total);
      out.flush();

      std::string error;
      const pid_t pid = spawn_logged(args, log, error);
      Running job{i, Clock::now()};
      if (pid < 0) {
        std::ofstream(log, std::ios::app)
            << fmt::format("gradus sweep: cannot start {}: {}\n", exe, error);
        report(job, 127 << 8);
        continue;
      }
      running[pid] = job;
    }
    if (running.empty()) continue;
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      GRADUS_CHECK(errno == EINTR, "gradus sweep", "waiting for the runs failed: {}",
                   std::strerror(errno));
      continue;
    }
    auto it = running.find(pid);
    if (it == running.end()) continue;  // not one of ours
    Running job = it->second;
    running.erase(it);
    report(job, status);
  }

  json agg = aggregate_sweep(dir.string());
  const double seconds = std::chrono::duration<double>(Clock::now() - sweep_start).count();
  out << fmt::format("\nsweep {}: {} ran, {} skipped, {} failed in {}; {}\n\n", plan.name, done,
                     finished, failed, run_time(seconds), (dir / "aggregate.md").string());
  out << aggregate_markdown(agg);
  return failed > 0 ? 1 : 0;
}

}  // namespace gradus::experiments
