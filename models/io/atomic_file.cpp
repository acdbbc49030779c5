#include "models/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <streambuf>
#include <vector>

#include "core/error.h"

namespace gradus {

namespace {

constexpr const char* kWhere = "write_file_atomic";

std::string errno_text(int err) { return std::strerror(err); }

// A stream buffer over a file descriptor that keeps the errno of the first failed write, so the
// error message can say why (an std::ofstream only says that something failed).
class FdStreamBuf : public std::streambuf {
 public:
  explicit FdStreamBuf(int fd) : fd_(fd), buffer_(1 << 16) {
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
    FdStreamBuf buf(tmp.fd);
    std::ostream out(&buf);
    writer(out);  // an exception leaves through here; ~TempFile removes the file
    out.flush();
    if (buf.error() != 0)
      GRADUS_FAIL(kWhere, "writing '{}' (temporary '{}') failed: {}", path, tmp.path,
                  errno_text(buf.error()));
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

}  // namespace gradus
