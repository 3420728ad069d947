#pragma once
// Atomic file replacement: a crash, a full disk or a throwing writer never leaves a
// half-written file behind, and whatever was at the path before stays intact until the new
// content is complete and on disk.
#include <functional>
#include <ostream>
#include <string>
#include <string_view>

namespace clprompt {

/// Calls `write` on a stream to "<path>.tmp-<pid>-<random>" in the same directory (so the final
/// rename never crosses file systems), flushes and fsyncs it, then renames it over `path`.
/// On any failure the temporary file is removed and FileError(path, why) is thrown; an
/// exception from `write` that is already a clprompt::Error is rethrown unchanged.
/// The new file gets default permissions (not those of the file it replaces).
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);

/// write_file_atomically with a fixed text.
void write_text_file_atomically(const std::string& path, std::string_view text);

}  // namespace clprompt
