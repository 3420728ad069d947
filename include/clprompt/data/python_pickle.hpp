#pragma once
// A bounded reader for the part of Python's pickle format that numpy data files written by
// Python 2's cPickle (protocol 2) use - above all the "python version" of CIFAR-10/100
// (https://www.cs.toronto.edu/~kriz/cifar.html), which torchvision and every reference
// implementation read with `pickle.load(f, encoding='latin1')` (torchvision 0.13
// datasets/cifar.py:79-90 and :98-100, CODA-Prompt dataloaders/dataloader.py:226-237).
//
//   PickleValue root = read_pickle(path);                 // a dict
//   if (auto data = root.find("data")) data->array();      // numpy ndarray: dtype, shape, bytes
//
// Opcodes (values and semantics from CPython 3.11 Lib/pickle.py:111-195 and its Unpickler,
// :1218-1745): PROTO, STOP, MARK, EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, TUPLE, TUPLE1-3, NONE,
// NEWTRUE, NEWFALSE, BININT, BININT1, BININT2, LONG1 (up to 8 bytes), SHORT_BINSTRING,
// BINSTRING (signed length, :1341-1347), BINUNICODE, APPEND, APPENDS, SETITEM, SETITEMS,
// BINPUT, LONG_BINPUT, BINGET, LONG_BINGET, GLOBAL, REDUCE and BUILD. Every other opcode is
// an error naming the file, the byte offset and the opcode.
//
// No code runs: GLOBAL accepts only numpy.core.multiarray._reconstruct (also spelled
// numpy._core.multiarray._reconstruct, as numpy >= 2 writes it), numpy.ndarray and numpy.dtype,
// and REDUCE / BUILD only apply them the way numpy's pickles do:
//   _reconstruct(ndarray, (0,), b'b')  -> an empty array, then
//   BUILD (version 1, shape, dtype, fortran_order, raw bytes)   (numpy methods.c array_setstate;
//         the 4-tuple without version is accepted as well)
//   dtype('u1', 0, 1)                   -> a dtype, then
//   BUILD (3, '|', None, None, None, -1, -1, 0)  (numpy descriptor.c arraydescr_setstate;
//         versions 3 and 4, plain (non-structured) dtypes only).
//
// Bounds: the file size, memo entries, values on the stack, MARK nesting and the number of
// values created are limited (PickleLimits); every length is checked against the bytes left
// before it is used; array element and byte counts are overflow-checked and must equal the
// raw data length. Strings and array data are not copied: they point into the file's bytes,
// which every PickleValue keeps alive. Nothing in the reader recurses, so nested or cyclic
// containers cannot exhaust the C++ stack.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "clprompt/core/options.hpp"

namespace clprompt {

/// Resource limits of the pickle reader. The defaults admit CIFAR-100's 161 MB training file
/// (about 100k memo entries, 150k values) with a wide margin.
struct PickleLimits {
  int64_t max_file_bytes = int64_t{1} << 31;     ///< larger files are refused before reading
  int64_t max_memo_entries = int64_t{1} << 22;   ///< distinct BINPUT / LONG_BINPUT indices
  int64_t max_stack = int64_t{1} << 22;          ///< values on the stack, all MARK levels together
  int64_t max_mark_depth = 64;                   ///< nested MARKs
  int64_t max_values = int64_t{1} << 24;         ///< values created in total
  int64_t max_array_elements = int64_t{1} << 34; ///< elements of one numpy array

  static constexpr auto fields() {
    return std::tuple{field("max_file_bytes", &PickleLimits::max_file_bytes),
                      field("max_memo_entries", &PickleLimits::max_memo_entries),
                      field("max_stack", &PickleLimits::max_stack),
                      field("max_mark_depth", &PickleLimits::max_mark_depth),
                      field("max_values", &PickleLimits::max_values),
                      field("max_array_elements", &PickleLimits::max_array_elements)};
  }
  /// Throws ConfigError unless every limit is positive.
  void validate(const std::string& path) const;
};

namespace detail {
struct PickleArena;
}  // namespace detail

/// A numpy array read from a pickle: its dtype, shape and raw bytes (C or Fortran order).
struct PickleArray {
  char kind = 'u';           ///< numpy kind: 'u' unsigned, 'i' signed, 'f' float, 'b' bool
  int64_t itemsize = 1;      ///< bytes per element
  char byte_order = '|';     ///< '<', '>', '|' (not applicable) or '=' (native)
  std::vector<int64_t> shape;
  bool fortran_order = false;
  const uint8_t* data = nullptr;  ///< nbytes bytes, valid while a PickleValue of the file lives
  int64_t nbytes = 0;
  int64_t numel() const;
  /// numpy's name, e.g. "uint8", "<i8", ">f4".
  std::string dtype_name() const;
};

/// One value of a loaded pickle. Cheap to copy; keeps the whole loaded file alive.
class PickleValue {
 public:
  enum class Kind { none, boolean, integer, bytes, text, list, tuple, dict, ndarray, dtype, global };

  Kind kind() const;
  /// "None", "bool", "int", "bytes", "str", "list", "tuple", "dict", "numpy.ndarray", ...
  std::string kind_name() const;
  /// Byte offset of the opcode that created the value (for error messages).
  int64_t offset() const;
  /// The file (or name) the value was read from.
  const std::string& source() const;

  bool is_none() const { return kind() == Kind::none; }
  bool is_string() const { return kind() == Kind::bytes || kind() == Kind::text; }

  /// bool, or int (Python's bool is an int). Throws Error for other kinds.
  int64_t as_int() const;
  /// The raw bytes of a bytes (Python 2 str) or str value. Throws Error for other kinds.
  std::string_view as_bytes() const;
  /// A str value as UTF-8; a bytes value decoded as Latin-1, as pickle.load(..., encoding='latin1')
  /// decodes Python 2 strings. Throws Error for other kinds.
  std::string as_text() const;

  /// Number of items of a list, tuple or dict. Throws Error for other kinds.
  int64_t size() const;
  /// Item i of a list or tuple. Throws Error for other kinds or i outside [0, size()).
  PickleValue at(int64_t i) const;
  /// The value of a dict under a str or bytes key equal to `key`, if any (the last one set wins,
  /// as in Python). Throws Error for other kinds.
  std::optional<PickleValue> find(std::string_view key) const;
  /// Every (key, value) pair of a dict, in insertion order (repeated keys appear once each time
  /// they were set). Throws Error for other kinds.
  std::vector<std::pair<PickleValue, PickleValue>> items() const;

  /// A built numpy array. Throws Error for other kinds.
  const PickleArray& array() const;

  /// A one-line description, e.g. "list of 3 items", "numpy.ndarray uint8 [2, 3072]", "int 7".
  std::string describe() const;

 private:
  friend struct detail::PickleArena;
  PickleValue(std::shared_ptr<const detail::PickleArena> arena, int32_t index)
      : arena_(std::move(arena)), index_(index) {}
  std::shared_ptr<const detail::PickleArena> arena_;
  int32_t index_ = 0;
};

/// Loads the pickle in `path`. Throws FileError naming the path (and for format errors the byte
/// offset and the opcode) when the file is missing, too large, truncated, uses an opcode or
/// global outside the subset, or breaks a limit; ConfigError for invalid limits.
PickleValue read_pickle(const std::string& path, const PickleLimits& limits = {});

/// Loads a pickle held in memory; `name` stands for the file in error messages.
PickleValue parse_pickle(std::vector<uint8_t> bytes, const std::string& name, const PickleLimits& limits = {});

}  // namespace clprompt
