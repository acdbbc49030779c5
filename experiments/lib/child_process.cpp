#include "experiments/lib/child_process.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>

#include "core/error.h"

extern char** environ;

namespace gradus::experiments {

namespace fs = std::filesystem;

std::string self_executable(const std::string& who) {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  GRADUS_CHECK(!ec, who, "cannot find this program's path (/proc/self/exe): {}", ec.message());
  return p.string();
}

namespace {

// posix_spawn with stdout to `out_fd_source` (a file opened by the child, or a pipe's write end)
// and stderr to the same place.
pid_t spawn_with(const std::vector<std::string>& args, const std::string* log_path, int pipe_fd,
                 std::string& error) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (log_path != nullptr) {
    posix_spawn_file_actions_addopen(&actions, 1, log_path->c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                     0644);
  } else {
    posix_spawn_file_actions_adddup2(&actions, pipe_fd, 1);
  }
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (std::string& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, copy[0].c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    error = std::strerror(rc);
    return -1;
  }
  return pid;
}

int wait_status_of(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

}  // namespace

pid_t spawn_logged(const std::vector<std::string>& args, const std::string& log_path,
                   std::string& error) {
  return spawn_with(args, &log_path, -1, error);
}

int run_logged_tee(const std::vector<std::string>& args, const std::string& log_path,
                   std::ostream& out, const std::string& indent, const std::string& who) {
  std::ofstream log(log_path, std::ios::app | std::ios::binary);
  GRADUS_CHECK(log.good(), who, "cannot write {}: {}", log_path, std::strerror(errno));
  int fds[2];
  GRADUS_CHECK(::pipe2(fds, O_CLOEXEC) == 0, who, "cannot create a pipe: {}", std::strerror(errno));
  std::string error;
  const pid_t pid = spawn_with(args, nullptr, fds[1], error);
  ::close(fds[1]);
  if (pid < 0) {
    ::close(fds[0]);
    GRADUS_FAIL(who, "cannot start {}: {}", args.empty() ? "" : args[0], error);
  }
  // Copy as it comes: the log gets the bytes as they are; the terminal gets whole lines, indented
  // (a '\r'-redrawn progress line is shown at its ends of line only).
  std::string pending;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    log.write(buffer, n);
    log.flush();
    pending.append(buffer, static_cast<size_t>(n));
    for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
      std::string line = pending.substr(0, nl);
      if (size_t cr = line.rfind('\r'); cr != std::string::npos) line = line.substr(cr + 1);
      out << indent << line << "\n";
      pending.erase(0, nl + 1);
    }
    out.flush();
  }
  if (!pending.empty()) out << indent << pending << "\n";
  ::close(fds[0]);
  return wait_status_of(pid);
}

std::string exit_text(int status) {
  if (status < 0) return "lost (waiting for it failed)";
  if (WIFEXITED(status)) return fmt::format("exit status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {}", WTERMSIG(status));
  return fmt::format("wait status {}", status);
}

bool exited_ok(int status) { return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0; }

std::string tail_lines(const std::string& path, size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  std::vector<std::string> lines;
  std::istringstream s(text.str());
  for (std::string line; std::getline(s, line);) {
    if (size_t cr = line.rfind('\r'); cr != std::string::npos) line = line.substr(cr + 1);
    lines.push_back(line);
  }
  std::string out;
  for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i)
    out += "    " + lines[i] + "\n";
  return out.empty() ? "    (empty)\n" : out;
}

std::string shell_line(const std::vector<std::string>& args) {
  std::string out;
  for (const std::string& a : args) {
    if (!out.empty()) out += ' ';
    const bool plain = !a.empty() && a.find_first_of(" \t\"'\\$`*?;&|<>()") == std::string::npos;
    if (plain) {
      out += a;
    } else {
      out += '\'';
      for (char c : a) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
      out += '\'';
    }
  }
  return out;
}

}  // namespace gradus::experiments
