#pragma once
// What the fuzz targets share: the library's readers that take a path get the input written to a
// file in a directory of this process (under $CLPROMPT_FUZZ_SCRATCH, else /dev/shm, so that writing
// it costs no disk I/O), and inputs that stand for several files are split at a separator line.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <ATen/Parallel.h>

namespace clprompt::fuzz {

/// One intra-op thread: two fuzzers share the two cores of a small machine, and a single-threaded
/// run reproduces a finding the same way every time.
inline int single_threaded() {
  at::set_num_threads(1);
  return 0;
}

/// Separates the files of an input that stands for several (IDX images | labels, vocab.json |
/// merges.txt | text). A line of its own, so that libFuzzer's mutations rarely create or break it
/// by accident, and the seeds (fuzz/make_corpus.cpp) write it between the files.
inline constexpr std::string_view kFileSeparator = "\n--clprompt-fuzz-next-file--\n";

/// The input cut at every kFileSeparator; always at least one part.
inline std::vector<std::string> split_files(const uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts;
  for (std::size_t begin = 0;;) {
    const std::size_t at = input.find(kFileSeparator, begin);
    parts.emplace_back(input.substr(begin, at == std::string_view::npos ? std::string_view::npos : at - begin));
    if (at == std::string_view::npos) return parts;
    begin = at + kFileSeparator.size();
  }
}

/// A directory of this process (several fuzzers may run at once), removed when it exits.
class ScratchDirectory {
 public:
  ScratchDirectory() {
    std::error_code ec;
    std::filesystem::path base = "/dev/shm";
    if (const char* chosen = std::getenv("CLPROMPT_FUZZ_SCRATCH"); chosen != nullptr && *chosen != '\0') base = chosen;
    else if (!std::filesystem::is_directory(base, ec)) base = std::filesystem::temp_directory_path();
    path_ = base / ("clprompt-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(path_);
  }
  ~ScratchDirectory() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDirectory(const ScratchDirectory&) = delete;
  ScratchDirectory& operator=(const ScratchDirectory&) = delete;

  /// Writes `bytes` to the file `name` in this directory, replacing it, and returns its path.
  std::string write(const std::string& name, std::string_view bytes) const {
    const std::string path = (path_ / name).string();
    std::FILE* file = std::fopen(path.c_str(), "wb");
    // Failing to write the input is the harness's problem, never a finding in the library.
    if (file == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), file) != bytes.size() || std::fclose(file) != 0) {
      std::perror(path.c_str());
      std::abort();
    }
    return path;
  }
  std::string write(const std::string& name, const uint8_t* data, std::size_t size) const {
    return write(name, std::string_view(reinterpret_cast<const char*>(data), size));
  }

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// A checksum over `size` bytes at `data`: reading every byte lets AddressSanitizer check that a
/// view the library returned lies inside memory it owns.
inline uint64_t touch_bytes(const void* data, std::size_t size) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  uint64_t sum = 0;
  for (std::size_t i = 0; i < size; ++i) sum = sum * 31 + bytes[i];
  return sum;
}

/// A violated property of the library's output: a finding, reported like a crash.
[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "clprompt fuzz finding: %s\n", what.c_str());
  std::abort();
}

/// The process's scratch directory (one per process, created on first use).
inline const ScratchDirectory& scratch() {
  static const ScratchDirectory directory;
  return directory;
}

}  // namespace clprompt::fuzz
