// Atomic file replacement: the new contents go to a temporary file in the same directory, which is
// flushed to disk (fsync) and then renamed over the destination. A reader (or a crash) therefore
// sees either the old file or the complete new one, never a torn write. Used for checkpoints,
// metrics and summaries.
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace gradus {

// Writes `path` with what `writer` streams. On any failure (the writer throws, a write or fsync or
// rename fails) the previous file at `path`, if any, is left untouched, the temporary file is
// removed, and the error propagates: the writer's own exception as is, I/O failures as
// gradus::Error naming `path` and the system's reason (strerror).
// The temporary file is "<dir>/.<name>.tmp.<pid>.<n>"; the new file gets the usual permissions
// (0666 less the umask). GRADUS_FAULT_INJECT (models/io/fault_injection.h) can kill the process
// just before the rename or fail the write as a full disk does, for tests.
void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& writer);

// write_file_atomic with `text` as the whole contents.
void write_text_atomic(const std::string& path, const std::string& text);

// Removes the temporary files that write_file_atomic left in `dir` when its process was killed
// before the rename: ".<name>.tmp.<pid>.<n>" of a pid that no longer exists. They never replace a
// real file, but a checkpoint-sized leftover wastes the disk. Temporaries of live processes (a
// writer at work) and every other file are kept; a directory that cannot be read removes nothing.
// Returns the names removed, sorted.
std::vector<std::string> remove_stale_temporaries(const std::string& dir);

}  // namespace gradus
