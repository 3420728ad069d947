#pragma once
// Writes pickles the way Python 2's cPickle does at protocol 2 (the CIFAR "python version"
// files were written so): one BINPUT / LONG_BINPUT after every container, string and global,
// lists and dicts filled in batches of 1000 with MARK ... APPENDS / SETITEMS (a single item
// with APPEND / SETITEM), ints as BININT1 / BININT2 / BININT, Python 2 str as
// SHORT_BINSTRING / BINSTRING, and numpy arrays as numpy 1.x's __reduce__ writes them:
//   _reconstruct(ndarray, (0,), 'b') BUILD (1, shape, dtype('u1', 0, 1) BUILD (3, '|', None,
//   None, None, -1, -1, 0), fortran_order, raw bytes).
// Files written with it load in Python 3 with pickle.load(f, encoding='latin1') and numpy (checked
// when the tests were written; see the report of the change that added them).
#include <cstdint>
#include <string>
#include <vector>

namespace clprompt::test {

class Py2PickleWriter {
 public:
  std::vector<uint8_t> bytes;

  Py2PickleWriter() { raw({0x80, 2}); }

  void raw(std::initializer_list<uint8_t> b) { bytes.insert(bytes.end(), b.begin(), b.end()); }
  void raw_string(const std::string& s) { bytes.insert(bytes.end(), s.begin(), s.end()); }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void put() {
    if (memo_ < 256) {
      raw({'q', static_cast<uint8_t>(memo_)});
    } else {
      bytes.push_back('r');
      u32(memo_);
    }
    ++memo_;
  }
  void mark() { bytes.push_back('('); }
  void stop() { bytes.push_back('.'); }
  void none() { bytes.push_back('N'); }

  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      raw({'K', static_cast<uint8_t>(v)});
    } else if (v >= 0 && v < 65536) {
      raw({'M', static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8)});
    } else {
      bytes.push_back('J');
      u32(static_cast<uint32_t>(static_cast<int32_t>(v)));
    }
  }
  void str(const std::string& s) {  // a Python 2 str
    if (s.size() < 256) {
      raw({'U', static_cast<uint8_t>(s.size())});
    } else {
      bytes.push_back('T');
      u32(static_cast<uint32_t>(s.size()));
    }
    raw_string(s);
    put();
  }
  void global(const std::string& module, const std::string& name) {
    bytes.push_back('c');
    raw_string(module + "\n" + name + "\n");
    put();
  }

  // Items are written by `item(i)` for i in [0, n), in cPickle's batches of 1000.
  template <class F>
  void list(int64_t n, F item) {
    bytes.push_back(']');
    put();
    for (int64_t begin = 0; begin < n; begin += 1000) {
      const int64_t end = std::min(n, begin + 1000);
      if (end - begin == 1) {
        item(begin);
        bytes.push_back('a');
      } else {
        mark();
        for (int64_t i = begin; i < end; ++i) item(i);
        bytes.push_back('e');
      }
    }
  }
  void int_list(const std::vector<int64_t>& v) {
    list(static_cast<int64_t>(v.size()), [&](int64_t i) { integer(v[static_cast<size_t>(i)]); });
  }
  void str_list(const std::vector<std::string>& v) {
    list(static_cast<int64_t>(v.size()), [&](int64_t i) { str(v[static_cast<size_t>(i)]); });
  }

  // An array of `shape` with the raw bytes `data` (fortran_order as given) and numpy type
  // string `dtype` ("u1", "<i8", ...; byte order '|' for one-byte types, else the given one).
  void array(const std::vector<int64_t>& shape, const std::vector<uint8_t>& data, bool fortran_order = false,
             const std::string& dtype = "u1") {
    global("numpy.core.multiarray", "_reconstruct");
    global("numpy", "ndarray");
    integer(0);
    bytes.push_back(0x85);  // TUPLE1
    put();
    str("b");
    bytes.push_back(0x87);  // TUPLE3
    put();
    bytes.push_back('R');
    put();
    mark();
    integer(1);
    mark();
    for (int64_t d : shape) integer(d);
    bytes.push_back('t');
    put();
    global("numpy", "dtype");
    str(dtype.size() == 3 ? dtype.substr(1) : dtype);
    integer(0);
    integer(1);
    bytes.push_back(0x87);
    put();
    bytes.push_back('R');
    put();
    mark();
    integer(3);
    str(dtype.size() == 3 ? dtype.substr(0, 1) : "|");
    none();
    none();
    none();
    integer(-1);
    integer(-1);
    integer(0);
    bytes.push_back('t');
    put();
    bytes.push_back('b');
    bytes.push_back(fortran_order ? 0x88 : 0x89);
    bytes.push_back('T');  // cPickle writes the raw data as a (long) Python 2 str
    u32(static_cast<uint32_t>(data.size()));
    bytes.insert(bytes.end(), data.begin(), data.end());
    put();
    bytes.push_back('t');
    put();
    bytes.push_back('b');
  }

  // A dict whose entries are written by `entries()` as key, value, key, value, ... with one
  // MARK ... SETITEMS around them.
  template <class F>
  void dict(F entries) {
    bytes.push_back('}');
    put();
    mark();
    entries();
    bytes.push_back('u');
  }

 private:
  uint32_t memo_ = 1;
};

}  // namespace clprompt::test
