#pragma once
// Errors thrown by clprompt. Every message names the offending file, config field or tensor
// and says what was expected, so a user can fix the input without reading the source.
#include <stdexcept>
#include <string>
#include <string_view>

#include <c10/core/ScalarType.h>
#include <fmt/format.h>
#include <fmt/ranges.h>  // shapes (at::IntArrayRef) print as [B, C, H, W]

/// Tensor dtypes print by name ("Float", "Long") in error messages.
template <>
struct fmt::formatter<c10::ScalarType> : fmt::formatter<std::string_view> {
  template <class Context>
  auto format(c10::ScalarType t, Context& ctx) const {
    return fmt::formatter<std::string_view>::format(c10::toString(t), ctx);
  }
};

namespace clprompt {

/// `text` as echoed in an error message: at most `max` characters, the rest elided with its
/// length (a 50 MB configuration value must not become a 50 MB message).
inline std::string brief(std::string_view text, std::size_t max = 120) {
  if (text.size() <= max) return std::string(text);
  return fmt::format("{}... ({} characters)", text.substr(0, max), text.size());
}

/// Base class of every error clprompt throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A file that is missing, unreadable, truncated or not in the expected format.
class FileError : public Error {
 public:
  FileError(std::string path, const std::string& what)
      : Error(fmt::format("{}: {}", path, what)), path_(std::move(path)) {}
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

/// An invalid configuration value; `field` is its dotted path, e.g. "train.lr".
class ConfigError : public Error {
 public:
  ConfigError(std::string field, const std::string& what)
      : Error(fmt::format("config field '{}': {}", field, what)), field_(std::move(field)) {}
  const std::string& field() const noexcept { return field_; }

 private:
  std::string field_;
};

/// A tensor whose shape, dtype or content does not match what an operation needs.
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// A checkpoint whose tensors do not match the model (missing, unexpected, mis-shaped names).
class CheckpointError : public Error {
 public:
  using Error::Error;
};

/// Training diverged (NaN or infinite loss).
class NumericError : public Error {
 public:
  using Error::Error;
};

/// A data-parallel run lost a rank or could not form its process group (names rank and cause).
class DistributedError : public Error {
 public:
  using Error::Error;
};

}  // namespace clprompt
