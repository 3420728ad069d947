// The bounded pickle reader: the values of Python-2-style pickles, and an error naming file,
// byte offset and opcode for everything outside the subset or beyond a limit.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "clprompt/data/python_pickle.hpp"
#include "data/py2_pickle_writer.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which must not replace Catch's.
#include <catch2/catch.hpp>

namespace {

using clprompt::test::Bytes;
using clprompt::test::file_error;
using clprompt::test::put_be32;
using clprompt::test::write_file;
using clprompt::PickleLimits;
using clprompt::PickleValue;
using clprompt::test::Py2PickleWriter;

std::string parse_error(const Bytes& bytes, const PickleLimits& limits = {}) {
  return clprompt::test::error_message<clprompt::FileError>(
      [&] { (void)clprompt::parse_pickle(bytes, "mem.pkl", limits); });
}

Bytes with_proto(std::initializer_list<uint8_t> body) {
  Bytes b{0x80, 2};
  b.insert(b.end(), body.begin(), body.end());
  return b;
}

}  // namespace

TEST_CASE("a Python 2 protocol-2 pickle of lists, strings, ints and a numpy array reads exactly", "[data][pickle]") {
  // 1300 labels cross cPickle's APPENDS batches of 1000 and the BINPUT -> LONG_BINPUT switch at memo 256.
  const int64_t n = 1300;
  std::vector<int64_t> labels(n);
  std::vector<std::string> names(n);
  Bytes data(static_cast<size_t>(n * 4));
  for (int64_t i = 0; i < n; ++i) {
    labels[static_cast<size_t>(i)] = i % 3 == 0 ? i * 50 : (i % 3 == 1 ? -i : 70000 + i);  // BININT1/2, BININT
    names[static_cast<size_t>(i)] = "img_" + std::to_string(i) + ".png";
  }
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>((i * 7 + 3) % 251);
  Py2PickleWriter w;
  w.dict([&] {
    w.str("filenames");
    w.str_list(names);
    w.str("labels");
    w.int_list(labels);
    w.str("data");
    w.array({n, 4}, data);
    w.str("caf\xe9");  // Latin-1 byte 0xE9
    w.str(std::string(300, 'x'));  // BINSTRING (>= 256 bytes)
  });
  w.stop();

  const PickleValue root = clprompt::parse_pickle(w.bytes, "mem.pkl");
  REQUIRE(root.kind() == PickleValue::Kind::dict);
  CHECK(root.size() == 4);
  const PickleValue l = *root.find("labels");
  REQUIRE(l.kind() == PickleValue::Kind::list);
  REQUIRE(l.size() == n);
  bool labels_equal = true;
  for (int64_t i = 0; i < n; ++i) labels_equal = labels_equal && l.at(i).as_int() == labels[static_cast<size_t>(i)];
  CHECK(labels_equal);
  CHECK(root.find("filenames")->at(1299).as_text() == "img_1299.png");
  const clprompt::PickleArray& a = root.find("data")->array();
  CHECK(a.dtype_name() == "uint8");
  CHECK(a.shape == std::vector<int64_t>{n, 4});
  CHECK_FALSE(a.fortran_order);
  REQUIRE(a.nbytes == n * 4);
  CHECK(Bytes(a.data, a.data + a.nbytes) == data);
  CHECK(root.find("data")->describe() == "numpy.ndarray uint8 [1300, 4]");
  // Python 2 str values decode as Latin-1, as pickle.load(f, encoding='latin1') does.
  CHECK(root.find("caf\xe9")->as_text() == std::string(300, 'x'));
  const auto items = root.items();
  CHECK(items.back().first.as_text() == "caf\xc3\xa9");
  CHECK(items.back().first.as_bytes() == "caf\xe9");
  CHECK_FALSE(root.find("missing").has_value());
  CHECK_THROWS_AS(root.find("labels")->as_int(), clprompt::Error);
  CHECK_THROWS_AS(l.at(n), clprompt::Error);
}

TEST_CASE("pickled numpy arrays keep Fortran order, byte order and any plain dtype", "[data][pickle]") {
  Py2PickleWriter w;
  w.dict([&] {
    w.str("f");
    w.array({2, 3}, {1, 2, 3, 4, 5, 6}, /*fortran_order=*/true);
    w.str("i8");
    w.array({2}, {1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, false, "<i8");
  });
  w.stop();
  const PickleValue root = clprompt::parse_pickle(w.bytes, "mem.pkl");
  CHECK(root.find("f")->array().fortran_order);
  const clprompt::PickleArray& i8 = root.find("i8")->array();
  CHECK(i8.dtype_name() == "<i8");
  CHECK(i8.kind == 'i');
  CHECK(i8.itemsize == 8);
  CHECK(i8.byte_order == '<');
  CHECK(i8.numel() == 2);

  // LONG1 is little-endian two's complement: ff -> -1, 00 80 -> -32768, 8 bytes of 0x7f.. -> max.
  const Bytes longs = with_proto({']', '(', 0x8a, 1, 0xff, 0x8a, 2, 0x00, 0x80, 0x8a, 0, 0x8a, 8, 0xff, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0xff, 0x7f, 'e', '.'});
  const PickleValue v = clprompt::parse_pickle(longs, "longs.pkl");
  CHECK(v.at(0).as_int() == -1);
  CHECK(v.at(1).as_int() == -32768);
  CHECK(v.at(2).as_int() == 0);
  CHECK(v.at(3).as_int() == INT64_MAX);
  // Tuples, None, booleans, memo get.
  const PickleValue t = clprompt::parse_pickle(with_proto({'N', 0x88, 0x89, 0x87, 'q', 1, 'h', 1, 0x86, '.'}), "t.pkl");
  REQUIRE(t.size() == 2);
  CHECK(t.at(0).at(0).is_none());
  CHECK(t.at(0).at(1).as_int() == 1);
  CHECK(t.at(1).describe() == "tuple of 3 items");
}

TEST_CASE("BINUNICODE, SETITEM, APPEND, LONG_BINPUT / LONG_BINGET and EMPTY_TUPLE read as Python reads them",
          "[data][pickle]") {
  // pickle.loads of these bytes in /usr/bin/python3 (3.11.2) gives {'k': [1, 'é', 'é', ()]};
  // pickletools.dis: PROTO 2, EMPTY_DICT, LONG_BINPUT 1000, BINUNICODE 'k', EMPTY_LIST, BININT1 1,
  // APPEND, BINUNICODE 'é', LONG_BINPUT 70000, APPEND, LONG_BINGET 70000, APPEND, EMPTY_TUPLE,
  // APPEND, SETITEM, STOP.
  const Bytes bytes{0x80, 2,   '}', 'r', 0xe8, 3, 0,    0,   'X', 1, 0,    0,    0, 'k', ']', 'K', 1,   'a',
                    'X',  2,   0,   0,   0,    0xc3, 0xa9, 'r', 0x70, 0x11, 1, 0,   'a', 'j', 0x70, 0x11,
                    1,    0,   'a', ')', 'a',  's',  '.'};
  const PickleValue root = clprompt::parse_pickle(bytes, "mem.pkl");
  REQUIRE(root.size() == 1);
  const PickleValue list = *root.find("k");
  REQUIRE(list.size() == 4);
  CHECK(list.at(0).as_int() == 1);
  CHECK(list.at(1).kind() == PickleValue::Kind::text);
  CHECK(list.at(1).as_text() == "\xc3\xa9");
  CHECK(list.at(2).as_text() == "\xc3\xa9");
  CHECK(list.at(2).offset() == 18);  // the memo returns the value made at byte 18
  CHECK(list.at(3).kind() == PickleValue::Kind::tuple);
  CHECK(list.at(3).size() == 0);
  CHECK(root.items().front().first.kind() == PickleValue::Kind::text);
}

TEST_CASE("the pickle reader names file, byte offset and opcode for anything outside its subset", "[data][pickle]") {
  // A code-executing global: c os\nsystem\n at byte 2.
  const Bytes evil = [] {
    Bytes b{0x80, 2, 'c'};
    for (char c : std::string("os\nsystem\n")) b.push_back(static_cast<uint8_t>(c));
    b.insert(b.end(), {'U', 2, 'l', 's', 0x85, 'R', '.'});
    return b;
  }();
  CHECK_THAT(parse_error(evil), Catch::StartsWith("mem.pkl: byte 2: GLOBAL ('c'): global 'os.system' is not allowed"));
  // Opcodes outside the subset, by name; an unknown byte.
  CHECK_THAT(parse_error(with_proto({'G', 0, 0, 0, 0, 0, 0, 0, 0, '.'})),
             Catch::StartsWith("mem.pkl: byte 2: BINFLOAT ('G'): not supported"));
  CHECK_THAT(parse_error(with_proto({'N', 0x93, '.'})), Catch::Contains("byte 3: STACK_GLOBAL (0x93): not supported"));
  CHECK_THAT(parse_error(with_proto({0xff})), Catch::Contains("byte 2: unknown opcode 0xff"));
  CHECK_THAT(parse_error(with_proto({'N', 'N', 'R', '.'})), Catch::Contains("byte 4: REDUCE ('R'): expected an argument tuple"));
  // Lengths are checked against the bytes left before anything is read.
  CHECK_THAT(parse_error(with_proto({'T', 0xff, 0xff, 0xff, 0x7f, 'a', 'b'})),
             Catch::Contains("byte 2: BINSTRING ('T'): truncated: the byte string needs 2147483647 bytes but only 2 remain"));
  CHECK_THAT(parse_error(with_proto({'T', 0xff, 0xff, 0xff, 0xff})), Catch::Contains("negative string length -1"));
  CHECK_THAT(parse_error(with_proto({'X', 5, 0, 0, 0, 'a'})), Catch::Contains("BINUNICODE ('X'): truncated"));
  CHECK_THAT(parse_error(with_proto({'J', 1, 2})), Catch::Contains("BININT ('J'): truncated"));
  CHECK_THAT(parse_error(with_proto({'N'})), Catch::Contains("truncated: the pickle ends at byte 3 without a STOP"));
  CHECK_THAT(parse_error(with_proto({'h', 7, '.'})), Catch::Contains("byte 2: BINGET ('h'): memo index 7 was never stored"));
  CHECK_THAT(parse_error(with_proto({'K', 1, 'a', '.'})), Catch::Contains("APPEND ('a'): stack underflow"));
  CHECK_THAT(parse_error(with_proto({'N', 'K', 1, 'a', '.'})),
             Catch::Contains("APPEND ('a'): expected a list below the values, got None"));
  // After MARK the stack starts empty, as in Python: APPEND cannot reach the list below the MARK.
  CHECK_THAT(parse_error(with_proto({']', '(', 'K', 1, 'a', '.'})), Catch::Contains("APPEND ('a'): stack underflow"));
  CHECK_THAT(parse_error(with_proto({'(', '.'})), Catch::Contains("STOP ('.'): stack underflow"));
  CHECK_THAT(parse_error(with_proto({'e', '.'})), Catch::Contains("APPENDS ('e'): no MARK"));
  CHECK_THAT(parse_error(with_proto({0x8a, 9, 1, 1, 1, 1, 1, 1, 1, 1, 1, '.'})),
             Catch::Contains("LONG1 (0x8a): a 9-byte integer does not fit in 64 bits"));
  CHECK_THAT(parse_error(Bytes{0x80, 9, 'N', '.'}), Catch::Contains("unsupported protocol 9"));
  CHECK_THAT(parse_error(with_proto({'}', 'K', 1, 'b', '.'})), Catch::Contains("BUILD ('b'): expected a state tuple"));
  CHECK_THAT(parse_error(with_proto({'}', ')', 'b', '.'})),
             Catch::Contains("BUILD ('b'): BUILD applies only to numpy arrays and dtypes here, got dict of 0 items"));
}

TEST_CASE("pickled arrays must match their data, and every limit is enforced", "[data][pickle]") {
  // Data shorter than the shape says.
  Py2PickleWriter short_data;
  short_data.array({2, 3}, {1, 2, 3, 4, 5});
  short_data.stop();
  CHECK_THAT(parse_error(short_data.bytes),
             Catch::Contains("BUILD ('b'): the uint8 array of shape [2, 3] needs 6 bytes but the data has 5"));
  // Element counts that overflow, or pass the limit, fail before any allocation.
  Py2PickleWriter huge;
  huge.array({1 << 30, 1 << 30, 1 << 30}, {1});
  huge.stop();
  CHECK_THAT(parse_error(huge.bytes), Catch::Contains("elements (limit max_array_elements)"));
  Py2PickleWriter wide;
  wide.array({4, 4}, Bytes(16, 1));
  wide.stop();
  CHECK_THAT(parse_error(wide.bytes, {.max_array_elements = 15}),
             Catch::Contains("the shape 4, 4 has more than 15 elements"));
  CHECK(clprompt::parse_pickle(wide.bytes, "ok.pkl", {.max_array_elements = 16}).array().numel() == 16);
  Py2PickleWriter structured;
  structured.array({1}, {1}, false, "V8");
  structured.stop();
  CHECK_THAT(parse_error(structured.bytes), Catch::Contains("REDUCE ('R'): unsupported dtype 'V8'"));

  // Memo, stack, MARK nesting, value count and file size.
  CHECK_THAT(parse_error(with_proto({'N', 'q', 1, 'q', 2, 'q', 3, '.'}), {.max_memo_entries = 2}),
             Catch::Contains("byte 7: BINPUT ('q'): more than 2 memo entries (limit max_memo_entries)"));
  CHECK(clprompt::parse_pickle(with_proto({'N', 'q', 1, 'q', 1, 'q', 2, '.'}), "m.pkl", {.max_memo_entries = 2}).is_none());
  CHECK_THAT(parse_error(with_proto({'N', 'N', 'N', '.'}), {.max_stack = 2}),
             Catch::Contains("byte 4: NONE ('N'): more than 2 values on the stack (limit max_stack)"));
  CHECK_THAT(parse_error(with_proto({'(', '(', '(', '.'}), {.max_mark_depth = 2}),
             Catch::Contains("byte 4: MARK ('('): MARKs nest deeper than 2"));
  CHECK_THAT(parse_error(with_proto({']', 'N', 'a', 'N', 'a', '.'}), {.max_values = 2}),
             Catch::Contains("byte 5: NONE ('N'): more than 2 values (limit max_values)"));
  CHECK_THAT(parse_error(with_proto({'N', '.'}), {.max_file_bytes = 3}), Catch::Contains("more than the limit of 3"));
  CHECK_THROWS_AS(clprompt::parse_pickle(with_proto({'N', '.'}), "x", {.max_stack = 0}), clprompt::ConfigError);

  // Files.
  clprompt::test::TempDir dir;
  CHECK_THAT(clprompt::test::error_message<clprompt::FileError>([&] { (void)clprompt::read_pickle(dir / "none.pkl"); }),
             Catch::StartsWith(dir / "none.pkl") && Catch::Contains("not found"));
  std::ofstream(dir / "big.pkl", std::ios::binary).write("\x80\x02N.", 4);
  CHECK(clprompt::read_pickle(dir / "big.pkl").is_none());
  CHECK_THAT(clprompt::test::error_message<clprompt::FileError>(
                 [&] { (void)clprompt::read_pickle(dir / "big.pkl", {.max_file_bytes = 3}); }),
             Catch::StartsWith(dir / "big.pkl") && Catch::Contains("has 4 bytes, more than the limit of 3"));
}
