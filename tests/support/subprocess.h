// Running the `gradus` binary from a test: the command-line paths (sweeps, kill -9 and resume) are
// tested through the real executable, as a user runs them. GRADUS_BINARY is set by
// tests/CMakeLists.txt.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace gradus::testing {

inline std::string gradus_binary() { return GRADUS_BINARY; }

// Starts `gradus ARGS...` with stdout and stderr going to `log_path` (appended) and returns its
// pid; the caller waits (wait_for) or kills it.
inline pid_t spawn_gradus(const std::vector<std::string>& args, const std::string& log_path,
                          const std::string& cwd = "") {
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) ::_exit(126);
    std::vector<char*> argv;
    std::string binary = gradus_binary();
    argv.push_back(binary.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

// Waits for `pid`; returns its exit status, or 128 + the signal that ended it.
inline int wait_for(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

struct CommandResult {
  int status = -1;     // exit status, or 128 + signal
  std::string output;  // stdout and stderr together
};

// Runs `gradus ARGS...` to completion and returns its status and output.
inline CommandResult run_gradus(const std::vector<std::string>& args, const std::string& cwd = "") {
  char name[] = "/tmp/gradus_test_output_XXXXXX";
  int fd = ::mkstemp(name);
  if (fd >= 0) ::close(fd);
  CommandResult r;
  r.status = wait_for(spawn_gradus(args, name, cwd));
  std::ifstream in(name);
  std::stringstream ss;
  ss << in.rdbuf();
  r.output = ss.str();
  ::unlink(name);
  return r;
}

}  // namespace gradus::testing
