#pragma once
// Whole files as bytes, and gzip in both directions (zlib): what the readers of IDX, CIFAR and
// tokenizer files share.
#include <cstdint>
#include <string>
#include <vector>

namespace clprompt {

namespace detail {

/// The bytes of `path`, gunzipped when they start with the gzip magic 1f 8b (then
/// `*was_gzip` is set). Throws FileError naming `path` when it is missing, unreadable or corrupt.
std::vector<uint8_t> read_file_maybe_gzip(const std::string& path, bool* was_gzip = nullptr);

/// The bytes of `path` as stored. Throws FileError when missing or unreadable.
std::vector<uint8_t> read_file_bytes(const std::string& path);

/// Decompresses gzip data (concatenated members allowed); `path` names the source in errors.
std::vector<uint8_t> gunzip(const std::vector<uint8_t>& compressed, const std::string& path);

/// Compresses `bytes` into the gzip format (for writing test fixtures and caches).
std::vector<uint8_t> gzip_compress(const std::vector<uint8_t>& bytes);

}  // namespace detail

}  // namespace clprompt
