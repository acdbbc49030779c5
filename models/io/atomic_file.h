// Atomic file replacement: the new contents go to a temporary file in the same directory, which is
// flushed to disk (fsync) and then renamed over the destination. A reader (or a crash) therefore
// sees either the old file or the complete new one, never a torn write. Used for checkpoints,
// metrics and summaries.
#pragma once

#include <functional>
#include <ostream>
#include <string>

namespace gradus {

// Writes `path` with what `writer` streams. On any failure (the writer throws, a write or fsync or
// rename fails) the previous file at `path`, if any, is left untouched, the temporary file is
// removed, and the error propagates: the writer's own exception as is, I/O failures as
// gradus::Error naming `path` and the system's reason (strerror).
// The temporary file is "<dir>/.<name>.tmp.<pid>.<n>"; the new file gets the usual permissions
// (0666 less the umask).
void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& writer);

// write_file_atomic with `text` as the whole contents.
void write_text_atomic(const std::string& path, const std::string& text);

}  // namespace gradus
