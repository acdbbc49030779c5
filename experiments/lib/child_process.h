// Child processes of the gradus executable. Sweeps and pipelines run each run or step as
// `gradus <command> ...` in a process of its own, with its output in a log file: a run that
// crashes, runs out of memory or is killed takes nothing else down, and its log says why.
#pragma once

#include <sys/types.h>

#include <iosfwd>
#include <string>
#include <vector>

namespace gradus::experiments {

// The running executable's path (/proc/self/exe). Throws gradus::Error naming `who` when it cannot
// be read.
std::string self_executable(const std::string& who);

// Starts `args[0]` with arguments `args` (args[0] included), stdout and stderr appended to
// `log_path`. Returns the pid, or -1 with `error` set to the system's reason.
pid_t spawn_logged(const std::vector<std::string>& args, const std::string& log_path,
                   std::string& error);

// Runs `args` to completion, its stdout and stderr appended to `log_path` and copied, line by line
// with `indent` in front, to `out` as they come. Returns the wait status (see exit_text). Throws
// gradus::Error naming `who` when the process cannot be started.
int run_logged_tee(const std::vector<std::string>& args, const std::string& log_path,
                   std::ostream& out, const std::string& indent, const std::string& who);

// "exit status 3", "killed by signal 9" for a wait status; exited_ok: exit status 0.
std::string exit_text(int wait_status);
bool exited_ok(int wait_status);

// The last `n` lines of a text file, each indented by four spaces ("    (empty)" when none); a
// progress line redrawn with '\r' shows as its last state.
std::string tail_lines(const std::string& path, size_t n);

// The command line as a shell would show it (arguments with spaces or quotes quoted).
std::string shell_line(const std::vector<std::string>& args);

}  // namespace gradus::experiments
