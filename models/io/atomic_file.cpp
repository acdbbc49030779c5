#include "models/io/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <streambuf>
#include <vector>

#include "core/error.h"
#include "models/io/fault_injection.h"

namespace gradus {

namespace {

constexpr const char* kWhere = "write_file_atomic";

std::string errno_text(int err) { return std::strerror(err); }

// A stream buffer over a file descriptor that keeps the errno of the first failed write, so the
// error message can say why (an std::ofstream only says that something failed).
class FdStreamBuf : public std::streambuf {
 public:
  // `injected_error`: an errno the first write fails with, as if the system had returned it
  // (fault injection: ENOSPC for a full disk); 0 for none.
  FdStreamBuf(int fd, int injected_error) : fd_(fd), buffer_(1 << 16), injected_(injected_error) {
    setp(buffer_.data(), buffer_.data() + buffer_.size());
  }
  int error() const { return error_; }

 protected:
  int_type overflow(int_type ch) override {
    if (!flush_buffer()) return traits_type::eof();
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  }
  int sync() override { return flush_buffer() ? 0 : -1; }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    // Large blocks (tensor data) go straight to the file instead of through the buffer.
    if (n >= static_cast<std::streamsize>(buffer_.size())) {
      if (!flush_buffer() || !write_all(s, static_cast<size_t>(n))) return 0;
      return n;
    }
    return std::streambuf::xsputn(s, n);
  }

 private:
  bool flush_buffer() {
    size_t n = static_cast<size_t>(pptr() - pbase());
    bool ok = write_all(pbase(), n);
    setp(buffer_.data(), buffer_.data() + buffer_.size());
    return ok;
  }
  bool write_all(const char* p, size_t n) {
    if (error_ != 0) return false;
    if (injected_ != 0 && n > 0) {
      error_ = injected_;
      return false;
    }
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        error_ = errno;
        return false;
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }

  int fd_;
  std::vector<char> buffer_;
  int injected_ = 0;
  int error_ = 0;
};

// Owns the temporary file until it is renamed into place; removes it otherwise.
struct TempFile {
  std::string path;
  int fd = -1;
  bool keep = false;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!keep && !path.empty()) ::unlink(path.c_str());
  }
};

// Makes the rename itself durable. Best effort: some file systems refuse fsync on a directory.
void sync_directory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& writer) {
  GRADUS_CHECK(!path.empty(), kWhere, "empty path");
  namespace fs = std::filesystem;
  fs::path target(path);
  GRADUS_CHECK(target.has_filename(), kWhere, "'{}' names a directory, not a file", path);
  std::string dir = target.has_parent_path() ? target.parent_path().string() : std::string(".");
  const FaultAction fault = fault_for_atomic_write(target.filename().string());

  // A name no other writer uses: pid + a process-wide counter, created exclusively.
  static std::atomic<uint64_t> counter{0};
  TempFile tmp;
  for (int attempt = 0; tmp.fd < 0; ++attempt) {
    std::string candidate =
        (fs::path(dir) /
         fmt::format(".{}.tmp.{}.{}", target.filename().string(), ::getpid(), counter++))
            .string();
    int fd = ::open(candidate.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) {
      tmp.fd = fd;
      tmp.path = candidate;
    } else if (int err = errno; err != EEXIST || attempt > 100) {
      GRADUS_FAIL(kWhere, "cannot create a temporary file in '{}' for '{}': {}", dir, path,
                  errno_text(err));
    }
  }

  {
    FdStreamBuf buf(tmp.fd, fault == FaultAction::enospc ? ENOSPC : 0);
    std::ostream out(&buf);
    writer(out);  // an exception leaves through here; ~TempFile removes the file
    out.flush();
    // The temporary file is removed on the way out, so the message names only the destination.
    if (buf.error() != 0)
      GRADUS_FAIL(kWhere, "writing '{}' failed: {}", path, errno_text(buf.error()));
    GRADUS_CHECK(out.good(), kWhere,
                 "writing '{}' failed: the writer left the stream in a failed state", path);
  }
  if (::fsync(tmp.fd) != 0) {
    int err = errno;
    GRADUS_FAIL(kWhere, "fsync of '{}' (temporary for '{}') failed: {}", tmp.path, path,
                errno_text(err));
  }
  int fd = tmp.fd;
  tmp.fd = -1;
  if (::close(fd) != 0) {
    int err = errno;
    GRADUS_FAIL(kWhere, "closing '{}' (temporary for '{}') failed: {}", tmp.path, path,
                errno_text(err));
  }
  // Fault injection: the worst moment for a kill, a complete temporary file not yet in place.
  if (fault == FaultAction::kill) ::raise(SIGKILL);
  if (::rename(tmp.path.c_str(), path.c_str()) != 0) {
    int err = errno;
    GRADUS_FAIL(kWhere, "cannot rename '{}' to '{}': {}", tmp.path, path, errno_text(err));
  }
  tmp.keep = true;
  sync_directory(dir);
}

void write_text_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, [&](std::ostream& out) { out.write(text.data(), std::ssize(text)); });
}

std::vector<std::string> remove_stale_temporaries(const std::string& dir) {
  std::vector<std::string> removed;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return removed;
  // The pid of ".<name>.tmp.<pid>.<n>", or 0 when the name is not of that form.
  auto writer_pid = [](const std::string& name) -> pid_t {
    const size_t at = name.rfind(".tmp.");
    if (name.size() < 2 || name[0] != '.' || at == std::string::npos || at == 0) return 0;
    const std::string rest = name.substr(at + 5);
    const size_t dot = rest.find('.');
    auto digits = [](const std::string& t) {
      return !t.empty() && t.find_first_not_of("0123456789") == std::string::npos;
    };
    if (dot == std::string::npos || !digits(rest.substr(0, dot)) || !digits(rest.substr(dot + 1)))
      return 0;
    return static_cast<pid_t>(std::strtol(rest.substr(0, dot).c_str(), nullptr, 10));
  };
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    const pid_t pid = writer_pid(name);
    // Only a writer that no longer exists: a live one may be about to rename its file.
    if (pid <= 0 || pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    if (::unlink((std::filesystem::path(dir) / name).c_str()) == 0) removed.push_back(name);
  }
  ::closedir(d);
  std::sort(removed.begin(), removed.end());
  return removed;
}

}  // namespace gradus
