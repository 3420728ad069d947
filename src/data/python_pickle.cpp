// The bounded pickle reader of include/clprompt/data/python_pickle.hpp.
#include "clprompt/data/python_pickle.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <unordered_map>

#include "clprompt/core/error.hpp"

namespace fs = std::filesystem;

namespace clprompt {

void PickleLimits::validate(const std::string& path) const {
  const std::pair<const char*, int64_t> all[] = {{"max_file_bytes", max_file_bytes},
                                                 {"max_memo_entries", max_memo_entries},
                                                 {"max_stack", max_stack},
                                                 {"max_mark_depth", max_mark_depth},
                                                 {"max_values", max_values},
                                                 {"max_array_elements", max_array_elements}};
  for (const auto& [name, value] : all)
    require_option(value > 0, path, name, fmt::format("expected a positive limit, got {}", value));
}

int64_t PickleArray::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // checked for overflow when the array was built
  return n;
}

std::string PickleArray::dtype_name() const {
  if (kind == 'b' && itemsize == 1) return "bool";
  const char* base = kind == 'u' ? "uint" : kind == 'i' ? "int" : kind == 'f' ? "float" : "?";
  const std::string name = fmt::format("{}{}", base, itemsize * 8);
  if (itemsize == 1 || byte_order == '|' || byte_order == '=') return name;
  return fmt::format("{}{}{}", byte_order, kind, itemsize);
}

namespace detail {

struct PickleNode {
  PickleValue::Kind kind = PickleValue::Kind::none;
  int64_t offset = 0;
  int64_t integer = 0;                 // boolean, integer
  int64_t begin = 0, length = 0;       // bytes, text: a span of the file
  std::vector<int32_t> items;          // list, tuple; dict: key, value, key, value, ...
  std::string name;                    // global: "module.name"
  int32_t dtype = -1;                  // ndarray: its dtype node
  bool built = false;                  // ndarray, dtype: BUILD applied
  PickleArray array;                   // ndarray after BUILD; dtype: kind, itemsize, byte order
};

struct PickleArena {
  std::string source;
  std::vector<uint8_t> bytes;
  std::vector<PickleNode> nodes;

  static PickleValue value(const std::shared_ptr<const PickleArena>& arena, int32_t index) {
    return PickleValue(arena, index);
  }
};

}  // namespace detail

namespace {

using Kind = PickleValue::Kind;
using detail::PickleNode;

const char* kind_name_of(Kind k) {
  switch (k) {
    case Kind::none: return "None";
    case Kind::boolean: return "bool";
    case Kind::integer: return "int";
    case Kind::bytes: return "bytes";
    case Kind::text: return "str";
    case Kind::list: return "list";
    case Kind::tuple: return "tuple";
    case Kind::dict: return "dict";
    case Kind::ndarray: return "numpy.ndarray";
    case Kind::dtype: return "numpy.dtype";
    case Kind::global: return "global";
  }
  return "?";
}

// Every opcode by name, so an unsupported one is reported by what it is (Lib/pickle.py:111-195).
const char* opcode_name(uint8_t op) {
  switch (op) {
    case '(': return "MARK";
    case '.': return "STOP";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'F': return "FLOAT";
    case 'I': return "INT";
    case 'J': return "BININT";
    case 'K': return "BININT1";
    case 'L': return "LONG";
    case 'M': return "BININT2";
    case 'N': return "NONE";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 'R': return "REDUCE";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'X': return "BINUNICODE";
    case 'a': return "APPEND";
    case 'b': return "BUILD";
    case 'c': return "GLOBAL";
    case 'd': return "DICT";
    case '}': return "EMPTY_DICT";
    case 'e': return "APPENDS";
    case 'g': return "GET";
    case 'h': return "BINGET";
    case 'i': return "INST";
    case 'j': return "LONG_BINGET";
    case 'l': return "LIST";
    case ']': return "EMPTY_LIST";
    case 'o': return "OBJ";
    case 'p': return "PUT";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";
    case 't': return "TUPLE";
    case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";
    case 'G': return "BINFLOAT";
    case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return nullptr;
  }
}

std::string opcode_label(uint8_t op) {
  const char* name = opcode_name(op);
  const std::string code = op >= 0x20 && op < 0x7f ? fmt::format("'{}'", static_cast<char>(op))
                                                   : fmt::format("0x{:02x}", op);
  return name != nullptr ? fmt::format("{} ({})", name, code) : fmt::format("unknown opcode {}", code);
}

constexpr const char* kReconstruct = "numpy.core.multiarray._reconstruct";
constexpr const char* kReconstruct2 = "numpy._core.multiarray._reconstruct";
constexpr const char* kNdarray = "numpy.ndarray";
constexpr const char* kDtype = "numpy.dtype";

// Checked int64 multiplication: false on overflow.
bool mul_overflows(int64_t a, int64_t b, int64_t* out) { return __builtin_mul_overflow(a, b, out); }

class Parser {
 public:
  Parser(std::shared_ptr<detail::PickleArena> arena, const PickleLimits& limits)
      : arena_(std::move(arena)), limits_(limits), bytes_(arena_->bytes.data()),
        size_(static_cast<int64_t>(arena_->bytes.size())) {}

  int32_t run() {
    while (true) {
      if (pos_ >= size_)
        throw FileError(arena_->source,
                        fmt::format("truncated: the pickle ends at byte {} without a STOP opcode", size_));
      op_offset_ = pos_;
      op_ = bytes_[pos_++];
      if (step()) return result_;
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw FileError(arena_->source, fmt::format("byte {}: {}: {}", op_offset_, opcode_label(op_), what));
  }

  // ---- reading arguments ----
  const uint8_t* take(int64_t n, const char* what) {
    if (n < 0 || n > size_ - pos_)
      fail(fmt::format("truncated: {} needs {} bytes but only {} remain in the file", what, n, size_ - pos_));
    const uint8_t* p = bytes_ + pos_;
    pos_ += n;
    return p;
  }
  uint32_t read_u32(const char* what) {
    const uint8_t* p = take(4, what);
    return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
           static_cast<uint32_t>(p[3]) << 24;
  }
  std::string read_line(const char* what) {
    // GLOBAL's module and name lines; names of the accepted globals are short.
    constexpr int64_t kMaxLine = 256;
    const int64_t limit = std::min(size_, pos_ + kMaxLine);
    for (int64_t i = pos_; i < limit; ++i)
      if (bytes_[i] == '\n') {
        std::string line(reinterpret_cast<const char*>(bytes_ + pos_), static_cast<size_t>(i - pos_));
        pos_ = i + 1;
        return line;
      }
    if (limit == size_) fail(fmt::format("truncated: the {} line has no end of line before the end of the file", what));
    fail(fmt::format("the {} line is longer than {} bytes", what, kMaxLine));
  }

  // ---- values ----
  int32_t make(Kind kind) {
    if (static_cast<int64_t>(arena_->nodes.size()) >= limits_.max_values)
      fail(fmt::format("more than {} values (limit max_values)", limits_.max_values));
    PickleNode node;
    node.kind = kind;
    node.offset = op_offset_;
    arena_->nodes.push_back(std::move(node));
    return static_cast<int32_t>(arena_->nodes.size() - 1);
  }
  PickleNode& node(int32_t i) { return arena_->nodes[static_cast<size_t>(i)]; }

  // ---- the stack ----
  int64_t mark_base() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(int32_t v) {
    if (static_cast<int64_t>(stack_.size()) >= limits_.max_stack)
      fail(fmt::format("more than {} values on the stack (limit max_stack)", limits_.max_stack));
    stack_.push_back(v);
  }
  // Values above the innermost MARK; Python's stack is a fresh list after MARK.
  int64_t available() const { return static_cast<int64_t>(stack_.size()) - mark_base(); }
  int32_t pop(const char* role) {
    if (available() < 1) fail(fmt::format("stack underflow: no {} on the stack", role));
    const int32_t v = stack_.back();
    stack_.pop_back();
    return v;
  }
  int32_t top(const char* role) {
    if (available() < 1) fail(fmt::format("stack underflow: no {} on the stack", role));
    return stack_.back();
  }
  std::vector<int32_t> pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    const auto base = static_cast<size_t>(marks_.back());
    marks_.pop_back();
    std::vector<int32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(base), stack_.end());
    stack_.resize(base);
    return items;
  }

  std::string what(int32_t v) { return PickleValue(detail::PickleArena::value(arena_, v)).describe(); }

  // ---- opcodes ----
  bool step() {
    switch (op_) {
      case 0x80: {  // PROTO
        const uint8_t version = *take(1, "the protocol version");
        if (version > 5) fail(fmt::format("unsupported protocol {}; expected 0 to 5", version));
        return false;
      }
      case '.':  // STOP
        result_ = pop("result");
        return true;
      case '(':  // MARK
        if (static_cast<int64_t>(marks_.size()) >= limits_.max_mark_depth)
          fail(fmt::format("MARKs nest deeper than {} (limit max_mark_depth)", limits_.max_mark_depth));
        marks_.push_back(static_cast<int64_t>(stack_.size()));
        return false;
      case '}': push(make(Kind::dict)); return false;
      case ']': push(make(Kind::list)); return false;
      case ')': push(make(Kind::tuple)); return false;
      case 'N': push(make(Kind::none)); return false;
      case 0x88:
      case 0x89: {
        const int32_t v = make(Kind::boolean);
        node(v).integer = op_ == 0x88 ? 1 : 0;
        push(v);
        return false;
      }
      case 'J': {  // BININT: signed 4 bytes
        const auto raw = static_cast<int32_t>(read_u32("the 4-byte integer"));
        push_int(raw);
        return false;
      }
      case 'K': push_int(*take(1, "the 1-byte integer")); return false;
      case 'M': {
        const uint8_t* p = take(2, "the 2-byte integer");
        push_int(p[0] | p[1] << 8);
        return false;
      }
      case 0x8a: {  // LONG1: little-endian two's complement (pickle.py decode_long)
        const uint8_t n = *take(1, "the integer length");
        const uint8_t* p = take(n, "the integer");
        if (n > 8) fail(fmt::format("a {}-byte integer does not fit in 64 bits", n));
        uint64_t u = 0;
        for (int i = 0; i < n; ++i) u |= static_cast<uint64_t>(p[i]) << (8 * i);
        if (n > 0 && n < 8 && (p[n - 1] & 0x80) != 0) u |= ~uint64_t{0} << (8 * n);  // sign-extend
        push_int(static_cast<int64_t>(u));
        return false;
      }
      case 'U': {
        const uint8_t n = *take(1, "the string length");
        push_span(Kind::bytes, n);
        return false;
      }
      case 'T': {  // BINSTRING: signed 32-bit length (pickle.py:1341-1347)
        const auto n = static_cast<int32_t>(read_u32("the string length"));
        if (n < 0) fail(fmt::format("negative string length {}", n));
        push_span(Kind::bytes, n);
        return false;
      }
      case 'X': {
        const uint32_t n = read_u32("the string length");
        push_span(Kind::text, n);
        return false;
      }
      case 'a': {
        const int32_t value = pop("value to append");
        append_to(top("list"), {value});
        return false;
      }
      case 'e': {
        std::vector<int32_t> values = pop_mark();
        append_to(top("list"), values);
        return false;
      }
      case 's': {
        const int32_t value = pop("value");
        const int32_t key = pop("key");
        set_items(top("dict"), {key, value});
        return false;
      }
      case 'u': {
        std::vector<int32_t> pairs = pop_mark();
        if (pairs.size() % 2 != 0) fail(fmt::format("odd number of keys and values ({})", pairs.size()));
        set_items(top("dict"), pairs);
        return false;
      }
      case 't': {
        std::vector<int32_t> items = pop_mark();
        const int32_t t = make(Kind::tuple);
        node(t).items = std::move(items);
        push(t);
        return false;
      }
      case 0x85:
      case 0x86:
      case 0x87: {
        const int n = op_ - 0x84;
        if (available() < n) fail(fmt::format("stack underflow: TUPLE{} needs {} values, {} available", n, n, available()));
        const int32_t t = make(Kind::tuple);
        node(t).items.assign(stack_.end() - n, stack_.end());
        stack_.resize(stack_.size() - static_cast<size_t>(n));
        push(t);
        return false;
      }
      case 'q': memo_put(*take(1, "the memo index")); return false;
      case 'r': memo_put(read_u32("the memo index")); return false;
      case 'h': memo_get(*take(1, "the memo index")); return false;
      case 'j': memo_get(read_u32("the memo index")); return false;
      case 'c': global(); return false;
      case 'R': reduce(); return false;
      case 'b': build(); return false;
      default:
        fail("not supported: this reader accepts only the opcodes numpy data pickles of protocol 2 use "
             "(no code is executed)");
    }
  }

  void push_int(int64_t value) {
    const int32_t v = make(Kind::integer);
    node(v).integer = value;
    push(v);
  }
  void push_span(Kind kind, int64_t n) {
    const int64_t begin = pos_;
    (void)take(n, kind == Kind::text ? "the UTF-8 string" : "the byte string");  // checked before use
    const int32_t v = make(kind);
    node(v).begin = begin;
    node(v).length = n;
    push(v);
  }

  void append_to(int32_t list, const std::vector<int32_t>& values) {
    if (node(list).kind != Kind::list) fail(fmt::format("expected a list below the values, got {}", what(list)));
    auto& items = node(list).items;
    items.insert(items.end(), values.begin(), values.end());
  }
  void set_items(int32_t dict, const std::vector<int32_t>& pairs) {
    if (node(dict).kind != Kind::dict) fail(fmt::format("expected a dict below the items, got {}", what(dict)));
    auto& items = node(dict).items;
    items.insert(items.end(), pairs.begin(), pairs.end());
  }

  void memo_put(uint32_t index) {
    const int32_t v = top("value to store in the memo");
    auto it = memo_.find(index);
    if (it == memo_.end() && static_cast<int64_t>(memo_.size()) >= limits_.max_memo_entries)
      fail(fmt::format("more than {} memo entries (limit max_memo_entries)", limits_.max_memo_entries));
    memo_[index] = v;
  }
  void memo_get(uint32_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) fail(fmt::format("memo index {} was never stored", index));
    push(it->second);
  }

  void global() {
    const std::string module = read_line("module");
    const std::string name = read_line("name");
    const std::string full = module + "." + name;
    if (full != kReconstruct && full != kReconstruct2 && full != kNdarray && full != kDtype)
      fail(fmt::format("global '{}' is not allowed; only {}, {} and {} are accepted (no code is executed)", full,
                       kReconstruct, kNdarray, kDtype));
    const int32_t v = make(Kind::global);
    node(v).name = full == kReconstruct2 ? kReconstruct : full;
    push(v);
  }

  bool is_global(int32_t v, const char* name) { return node(v).kind == Kind::global && node(v).name == name; }
  bool is_integral(int32_t v) { return node(v).kind == Kind::integer || node(v).kind == Kind::boolean; }
  std::string_view span(int32_t v) {
    const PickleNode& n = node(v);
    return {reinterpret_cast<const char*>(bytes_ + n.begin), static_cast<size_t>(n.length)};
  }

  void reduce() {
    const int32_t args = pop("argument tuple");
    const int32_t callable = top("callable");
    if (node(args).kind != Kind::tuple) fail(fmt::format("expected an argument tuple, got {}", what(args)));
    const std::vector<int32_t> a = node(args).items;
    if (is_global(callable, kReconstruct)) {
      // _reconstruct(ndarray, shape, dtype spec) makes the empty array that BUILD then fills.
      if (a.size() != 3 || !is_global(a[0], kNdarray) || node(a[1]).kind != Kind::tuple ||
          !(node(a[2]).kind == Kind::bytes || node(a[2]).kind == Kind::text || node(a[2]).kind == Kind::dtype))
        fail(fmt::format("expected _reconstruct(numpy.ndarray, shape tuple, dtype), got {}", what(args)));
      stack_.back() = make(Kind::ndarray);
      return;
    }
    if (is_global(callable, kDtype)) {
      // dtype(type string, align, copy)
      if (a.size() != 3 || !(node(a[0]).kind == Kind::bytes || node(a[0]).kind == Kind::text) ||
          !is_integral(a[1]) || !is_integral(a[2]))
        fail(fmt::format("expected dtype(type string, align, copy), got {}", what(args)));
      const int32_t d = make(Kind::dtype);
      node(d).array = parse_dtype(std::string(span(a[0])));
      stack_.back() = d;
      return;
    }
    fail(fmt::format("cannot call {}: only numpy.core.multiarray._reconstruct and numpy.dtype can be applied",
                     what(callable)));
  }

  // A plain numpy type string: optional byte order, kind, item size ("u1", "<i8", "f4", "b1").
  PickleArray parse_dtype(const std::string& text) {
    PickleArray d;
    std::string s = text;
    if (!s.empty() && (s[0] == '<' || s[0] == '>' || s[0] == '|' || s[0] == '=')) {
      d.byte_order = s[0];
      s.erase(0, 1);
    }
    const bool ok = s.size() == 2 && (s[0] == 'u' || s[0] == 'i' || s[0] == 'f' || s[0] == 'b') &&
                    (s[1] == '1' || s[1] == '2' || s[1] == '4' || s[1] == '8') && !(s[0] == 'b' && s[1] != '1') &&
                    !(s[0] == 'f' && s[1] == '1');
    if (!ok)
      fail(fmt::format("unsupported dtype '{}'; expected a bool, integer or float type such as 'u1', '<i8' or 'f4'",
                       text));
    d.kind = s[0];
    d.itemsize = s[1] - '0';
    if (d.itemsize == 1) d.byte_order = '|';
    else if (d.byte_order == '|') d.byte_order = '=';
    return d;
  }

  void build() {
    const int32_t state = pop("state");
    const int32_t inst = top("object to build");
    if (node(state).kind != Kind::tuple) fail(fmt::format("expected a state tuple, got {}", what(state)));
    const std::vector<int32_t> s = node(state).items;
    if (node(inst).kind == Kind::dtype) return build_dtype(inst, s);
    if (node(inst).kind == Kind::ndarray) return build_array(inst, s);
    fail(fmt::format("BUILD applies only to numpy arrays and dtypes here, got {}", what(inst)));
  }

  // (version, byte order, subarray, names, fields, elsize, alignment, flags[, metadata])
  // (numpy descriptor.c arraydescr_setstate, versions 3 and 4).
  void build_dtype(int32_t d, const std::vector<int32_t>& s) {
    PickleNode& n = node(d);
    if (n.built) fail("the dtype was already built");
    const bool version_ok = !s.empty() && is_integral(s[0]) && (node(s[0]).integer == 3 || node(s[0]).integer == 4);
    if ((s.size() != 8 && s.size() != 9) || !version_ok ||
        !(node(s[1]).kind == Kind::bytes || node(s[1]).kind == Kind::text))
      fail(fmt::format("expected a dtype state (3 or 4, byte order, None, None, None, elsize, alignment, flags), "
                       "got a tuple of {} items",
                       s.size()));
    for (size_t i = 2; i <= 4; ++i)
      if (node(s[i]).kind != Kind::none)
        fail("structured and sub-array dtypes are not supported (the state has names, fields or a sub-array)");
    const std::string_view order = span(s[1]);
    if (order.size() != 1 || (order[0] != '<' && order[0] != '>' && order[0] != '|' && order[0] != '='))
      fail(fmt::format("invalid byte order '{}' in the dtype state", order));
    if (n.array.itemsize > 1) n.array.byte_order = order[0] == '|' ? '=' : order[0];
    n.built = true;
  }

  // (version 1, shape, dtype, fortran_order, raw data) or the same without version
  // (numpy methods.c array_setstate).
  void build_array(int32_t a, const std::vector<int32_t>& s) {
    if (node(a).built) fail("the array was already built");
    size_t first = 0;
    if (s.size() == 5) {
      if (!is_integral(s[0]) || node(s[0]).integer != 1)
        fail(fmt::format("expected array state version 1, got {}", what(s[0])));
      first = 1;
    } else if (s.size() != 4) {
      fail(fmt::format("expected an array state (1, shape, dtype, fortran_order, data), got a tuple of {} items",
                       s.size()));
    }
    const int32_t shape = s[first], dtype = s[first + 1], fortran = s[first + 2], data = s[first + 3];
    if (node(shape).kind != Kind::tuple) fail(fmt::format("expected a shape tuple, got {}", what(shape)));
    if (node(dtype).kind != Kind::dtype || !node(dtype).built)
      fail(fmt::format("expected a built numpy.dtype, got {}", what(dtype)));
    if (!is_integral(fortran)) fail(fmt::format("expected a fortran_order flag, got {}", what(fortran)));
    if (node(data).kind != Kind::bytes)
      fail(fmt::format("expected the raw array data as a byte string, got {}", what(data)));
    PickleArray array = node(dtype).array;
    const std::vector<int32_t> dims = node(shape).items;
    if (dims.size() > 32) fail(fmt::format("{} dimensions; numpy allows at most 32", dims.size()));
    int64_t count = 1;
    for (size_t i = 0; i < dims.size(); ++i) {
      if (node(dims[i]).kind != Kind::integer || node(dims[i]).integer < 0)
        fail(fmt::format("shape entry {} is {}; expected a non-negative int", i, what(dims[i])));
      const int64_t d = node(dims[i]).integer;
      array.shape.push_back(d);
      if (mul_overflows(count, d, &count) || count > limits_.max_array_elements)
        fail(fmt::format("the shape {} has more than {} elements (limit max_array_elements)",
                         fmt::join(array.shape, ", "), limits_.max_array_elements));
    }
    int64_t nbytes = 0;
    if (mul_overflows(count, array.itemsize, &nbytes)) fail("the array size in bytes overflows 64 bits");
    if (nbytes != node(data).length)
      fail(fmt::format("the {} array of shape [{}] needs {} bytes but the data has {}", array.dtype_name(),
                       fmt::join(array.shape, ", "), nbytes, node(data).length));
    array.fortran_order = node(fortran).integer != 0;
    array.data = bytes_ + node(data).begin;
    array.nbytes = nbytes;
    node(a).array = std::move(array);
    node(a).dtype = dtype;
    node(a).built = true;
  }

  std::shared_ptr<detail::PickleArena> arena_;
  const PickleLimits& limits_;
  const uint8_t* bytes_;
  int64_t size_;
  int64_t pos_ = 0;
  int64_t op_offset_ = 0;
  uint8_t op_ = 0;
  std::vector<int32_t> stack_;
  std::vector<int64_t> marks_;
  std::unordered_map<uint32_t, int32_t> memo_;
  int32_t result_ = -1;
};

}  // namespace

// ---- PickleValue ----------------------------------------------------------------------------

namespace {
const PickleNode& node_of(const std::shared_ptr<const detail::PickleArena>& arena, int32_t index) {
  return arena->nodes[static_cast<size_t>(index)];
}
}  // namespace

PickleValue::Kind PickleValue::kind() const { return node_of(arena_, index_).kind; }
std::string PickleValue::kind_name() const { return kind_name_of(kind()); }
int64_t PickleValue::offset() const { return node_of(arena_, index_).offset; }
const std::string& PickleValue::source() const { return arena_->source; }

int64_t PickleValue::as_int() const {
  const PickleNode& n = node_of(arena_, index_);
  if (n.kind != Kind::integer && n.kind != Kind::boolean)
    throw Error(fmt::format("{}: the value at byte {} is {}, not an int", source(), n.offset, describe()));
  return n.integer;
}

std::string_view PickleValue::as_bytes() const {
  const PickleNode& n = node_of(arena_, index_);
  if (n.kind != Kind::bytes && n.kind != Kind::text)
    throw Error(fmt::format("{}: the value at byte {} is {}, not a string", source(), n.offset, describe()));
  return {reinterpret_cast<const char*>(arena_->bytes.data() + n.begin), static_cast<size_t>(n.length)};
}

std::string PickleValue::as_text() const {
  const std::string_view raw = as_bytes();
  if (kind() == Kind::text) return std::string(raw);
  std::string out;  // Latin-1 -> UTF-8
  out.reserve(raw.size());
  for (const char ch : raw) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

int64_t PickleValue::size() const {
  const PickleNode& n = node_of(arena_, index_);
  if (n.kind == Kind::list || n.kind == Kind::tuple) return static_cast<int64_t>(n.items.size());
  if (n.kind == Kind::dict) return static_cast<int64_t>(n.items.size() / 2);
  throw Error(fmt::format("{}: the value at byte {} is {}, not a list, tuple or dict", source(), n.offset, describe()));
}

PickleValue PickleValue::at(int64_t i) const {
  const PickleNode& n = node_of(arena_, index_);
  if (n.kind != Kind::list && n.kind != Kind::tuple)
    throw Error(fmt::format("{}: the value at byte {} is {}, not a list or tuple", source(), n.offset, describe()));
  if (i < 0 || i >= static_cast<int64_t>(n.items.size()))
    throw Error(fmt::format("{}: index {} is outside the {} of {} items at byte {}", source(), i, kind_name(),
                            n.items.size(), n.offset));
  return PickleValue(arena_, n.items[static_cast<size_t>(i)]);
}

std::optional<PickleValue> PickleValue::find(std::string_view key) const {
  const PickleNode& n = node_of(arena_, index_);
  if (n.kind != Kind::dict)
    throw Error(fmt::format("{}: the value at byte {} is {}, not a dict", source(), n.offset, describe()));
  std::optional<PickleValue> found;
  for (size_t i = 0; i + 1 < n.items.size(); i += 2) {
    const PickleValue k(arena_, n.items[i]);
    if (k.is_string() && k.as_bytes() == key) found = PickleValue(arena_, n.items[i + 1]);
  }
  return found;
}

std::vector<std::pair<PickleValue, PickleValue>> PickleValue::items() const {
  const PickleNode& n = node_of(arena_, index_);
  if (n.kind != Kind::dict)
    throw Error(fmt::format("{}: the value at byte {} is {}, not a dict", source(), n.offset, describe()));
  std::vector<std::pair<PickleValue, PickleValue>> out;
  for (size_t i = 0; i + 1 < n.items.size(); i += 2)
    out.emplace_back(PickleValue(arena_, n.items[i]), PickleValue(arena_, n.items[i + 1]));
  return out;
}

const PickleArray& PickleValue::array() const {
  const PickleNode& n = node_of(arena_, index_);
  if (n.kind != Kind::ndarray || !n.built)
    throw Error(fmt::format("{}: the value at byte {} is {}, not a numpy array", source(), n.offset, describe()));
  return n.array;
}

std::string PickleValue::describe() const {
  const PickleNode& n = node_of(arena_, index_);
  switch (n.kind) {
    case Kind::none: return "None";
    case Kind::boolean: return n.integer != 0 ? "True" : "False";
    case Kind::integer: return fmt::format("int {}", n.integer);
    case Kind::bytes:
    case Kind::text: {
      const std::string_view s = as_bytes();
      const bool shown = s.size() <= 40 && std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
      return shown ? fmt::format("{} '{}'", kind_name(), s) : fmt::format("{} of {} bytes", kind_name(), s.size());
    }
    case Kind::list:
    case Kind::tuple: return fmt::format("{} of {} items", kind_name(), n.items.size());
    case Kind::dict: return fmt::format("dict of {} items", n.items.size() / 2);
    case Kind::ndarray:
      return n.built ? fmt::format("numpy.ndarray {} [{}]", n.array.dtype_name(), fmt::join(n.array.shape, ", "))
                     : "numpy.ndarray (not built)";
    case Kind::dtype: return fmt::format("numpy.dtype {}", n.array.dtype_name());
    case Kind::global: return fmt::format("global {}", n.name);
  }
  return "?";
}

// ---- loading --------------------------------------------------------------------------------

PickleValue parse_pickle(std::vector<uint8_t> bytes, const std::string& name, const PickleLimits& limits) {
  limits.validate("");
  if (static_cast<int64_t>(bytes.size()) > limits.max_file_bytes)
    throw FileError(name, fmt::format("has {} bytes, more than the limit of {} (max_file_bytes)", bytes.size(),
                                      limits.max_file_bytes));
  auto arena = std::make_shared<detail::PickleArena>();
  arena->source = name;
  arena->bytes = std::move(bytes);
  Parser parser(arena, limits);
  const int32_t root = parser.run();
  return detail::PickleArena::value(std::shared_ptr<const detail::PickleArena>(std::move(arena)), root);
}

PickleValue read_pickle(const std::string& path, const PickleLimits& limits) {
  limits.validate("");
  std::error_code ec;
  if (!fs::exists(path, ec)) throw FileError(path, "not found; expected a Python pickle file");
  if (fs::is_directory(path, ec)) throw FileError(path, "is a directory; expected a Python pickle file");
  const auto size = fs::file_size(path, ec);
  if (ec) throw FileError(path, fmt::format("cannot read the file size ({})", ec.message()));
  if (size > static_cast<uintmax_t>(limits.max_file_bytes))
    throw FileError(path, fmt::format("has {} bytes, more than the limit of {} (max_file_bytes)", size,
                                      limits.max_file_bytes));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError(path, "cannot be opened for reading");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size)))
    throw FileError(path, fmt::format("read failed after {} of {} bytes", in.gcount(), size));
  return parse_pickle(std::move(bytes), path, limits);
}

}  // namespace clprompt
