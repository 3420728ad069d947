// Compiled part of include/clprompt/io/atomic_file.hpp: write to a temporary file, fsync, rename.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <system_error>

#include <fmt/format.h>

#include "clprompt/core/error.hpp"
#include "clprompt/core/fault_injection.hpp"
#include "clprompt/io/atomic_file.hpp"

namespace clprompt {
namespace detail {
namespace {

namespace fs = std::filesystem;

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }
// ---- atomic files -------------------------------------------------------------------------

std::string temp_path_for(const std::string& path) {
  std::random_device device;
  const uint64_t random = (static_cast<uint64_t>(device()) << 32) ^ device();
  return fmt::format("{}.tmp-{}-{:016x}", path, ::getpid(), random);
}

// Removes the temporary file unless released (i.e. renamed into place).
class TempFileGuard {
 public:
  explicit TempFileGuard(std::string path) : path_(std::move(path)) {}
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;
  ~TempFileGuard() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

void fsync_path(const std::string& path, int flags, const std::string& target, const char* what) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) throw FileError(target, fmt::format("cannot open {} to sync it: {}", what, errno_text(errno)));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // EINVAL: the file system does not support fsync on this kind of file (e.g. a directory).
  if (rc != 0 && err != EINVAL) throw FileError(target, fmt::format("cannot sync {}: {}", what, errno_text(err)));
}


}  // namespace
}  // namespace detail

// ==== atomic_file.hpp ========================================================================

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  namespace fs = std::filesystem;
  const std::string temp = detail::temp_path_for(path);
  // O_EXCL: never truncate a file someone else created under the same name.
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    const int err = errno;
    const fs::path dir = fs::path(path).parent_path();
    std::error_code ec;
    if (!dir.empty() && !fs::is_directory(dir, ec))
      throw FileError(path, fmt::format("cannot write: the directory '{}' does not exist", dir.string()));
    throw FileError(path, fmt::format("cannot create the temporary file '{}': {}", temp, detail::errno_text(err)));
  }
  ::close(fd);
  detail::TempFileGuard guard(temp);
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) throw FileError(path, fmt::format("cannot open the temporary file '{}': {}", temp, detail::errno_text(errno)));
    try {
      write(out);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw FileError(path, fmt::format("not written (any previous content is kept): {}", e.what()));
    }
    out.flush();
    if (!out) throw FileError(path, fmt::format("writing '{}' failed: {}", temp, detail::errno_text(errno)));
    fault_point("atomic-write");  // tests: killed with the new content written but not in place
    out.close();
    if (!out) throw FileError(path, fmt::format("closing '{}' failed: {}", temp, detail::errno_text(errno)));
  }
  detail::fsync_path(temp, O_RDONLY, path, "the temporary file");
  std::error_code ec;
  fs::rename(temp, path, ec);
  if (ec) throw FileError(path, fmt::format("cannot rename '{}' over it: {}", temp, ec.message()));
  guard.release();
  // Persist the rename itself; the content is already safe, so a failure here is not fatal.
  const fs::path dir = fs::path(path).parent_path();
  try {
    detail::fsync_path(dir.empty() ? "." : dir.string(), O_RDONLY | O_DIRECTORY, path, "the directory");
  } catch (const FileError&) {
  }
}

void write_text_file_atomically(const std::string& path, std::string_view text) {
  write_file_atomically(path, [&](std::ostream& out) { out.write(text.data(), static_cast<std::streamsize>(text.size())); });
}

}  // namespace clprompt
