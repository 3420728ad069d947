#pragma once
// SHA-256 (FIPS 180-4), to verify the shipped weights without a crypto dependency.
#include <cstdint>
#include <string>
#include <string_view>

namespace clprompt {

/// Lower-case hex digest of `bytes`.
std::string sha256_hex(std::string_view bytes);

/// Lower-case hex digest of a file's contents; FileError when it cannot be read.
std::string sha256_file_hex(const std::string& path);

}  // namespace clprompt
