#pragma once
// JSON from outside the program (configuration files, --set values, safetensors headers, CLIP
// tokenizer files), bounded while it is parsed rather than after: nlohmann's parser itself is
// iterative, but everything that walks a parsed document (merge_patch, dump, the destructor of
// older versions, our readers) recurses once per nesting level, so a file nested 100 000 levels
// deep overflows the stack. The depth is checked at every opening bracket and the size before
// the first byte is parsed.
#include <cstddef>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "clprompt/core/error.hpp"

namespace clprompt {

struct JsonLimits {
  std::size_t max_bytes = std::size_t{16} << 20;  ///< larger texts are refused unread
  int max_depth = 64;                             ///< nesting of objects and arrays
};

/// Text refused by parse_json; the message says why, without the file or field (the caller's
/// error adds it).
class JsonError : public Error {
 public:
  using Error::Error;
};

/// Not JSON: "not valid JSON: " and the parser's message, which says where.
class JsonSyntaxError : public JsonError {
 public:
  using JsonError::JsonError;
};

/// JSON over a JsonLimits bound; refused before or while parsing.
class JsonLimitError : public JsonError {
 public:
  using JsonError::JsonError;
};

/// Parses `text` under `limits`; `callback` (nlohmann's parser_callback_t signature, may be null)
/// sees every event after the depth check. Throws JsonLimitError or JsonSyntaxError (numbers
/// out of range, such as 1e400, included), both JsonErrors; the caller adds which file or field it was.
template <class J>
J parse_json(std::string_view text, const JsonLimits& limits = {}, typename J::parser_callback_t callback = nullptr) {
  if (text.size() > limits.max_bytes)
    throw JsonLimitError(fmt::format("{} bytes of JSON, more than the limit of {} bytes", text.size(), limits.max_bytes));
  auto bounded = [&](int depth, typename J::parse_event_t event, J& parsed) {
    if ((event == J::parse_event_t::object_start || event == J::parse_event_t::array_start) && depth >= limits.max_depth)
      throw JsonLimitError(fmt::format("JSON nested deeper than {} levels", limits.max_depth));
    return callback ? callback(depth, event, parsed) : true;
  };
  try {
    return J::parse(text, bounded);
  } catch (const typename J::exception& e) {
    throw JsonSyntaxError(fmt::format("not valid JSON: {}", e.what()));
  }
}

}  // namespace clprompt
