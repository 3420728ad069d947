#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include <torch/types.h>
#include <torch/utils.h>

#include "clprompt/core/error.hpp"
#include "clprompt/io/atomic_file.hpp"
#include "clprompt/io/safetensors.hpp"
#include "test_util.hpp"

// After LibTorch: glog (pulled in by c10) defines its own CHECK, which Catch's must replace
// when the build does not use the precompiled header.
#include <catch2/catch.hpp>

namespace fs = std::filesystem;

namespace {

using clprompt::test::TempDir;
using clprompt::test::write_bytes;

// File names in `dir`, sorted (to check that no temporary file is left behind).
std::vector<std::string> names_in(const TempDir& dir) {
  std::vector<std::string> result;
  for (const auto& entry : fs::directory_iterator(dir.path())) result.push_back(entry.path().filename().string());
  std::sort(result.begin(), result.end());
  return result;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A safetensors file by hand: u64 little-endian header length, header, buffer.
std::string safetensors_bytes(const std::string& header, const std::string& buffer, int64_t length = -1) {
  const uint64_t n = length < 0 ? header.size() : static_cast<uint64_t>(length);
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes += static_cast<char>((n >> (8 * i)) & 0xFF);
  return bytes + header + buffer;
}

template <class T>
std::string raw(std::initializer_list<T> values) {
  std::string bytes(values.size() * sizeof(T), '\0');
  std::memcpy(bytes.data(), values.begin(), bytes.size());
  return bytes;
}

bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const auto ca = a.contiguous(), cb = b.contiguous();
  return ca.nbytes() == cb.nbytes() && (ca.nbytes() == 0 || std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) == 0);
}

std::string read_error(const std::string& path) {
  try {
    (void)clprompt::read_safetensors(path);
  } catch (const clprompt::FileError& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("safetensors round-trips every dtype bit-exactly with metadata", "[io][safetensors]") {
  TempDir dir;
  torch::manual_seed(0);
  const float special[] = {0.0f, -0.0f, std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                           std::numeric_limits<float>::quiet_NaN(), 1e-40f /* subnormal */, 65504.0f, 3.14159f};
  const auto specials = torch::from_blob(const_cast<float*>(special), {8}).clone();
  clprompt::TensorMap tensors{
      {"f64", torch::randn({3, 4}, torch::kDouble)},
      {"f32", torch::cat({torch::randn({5}), specials})},
      {"f16", torch::cat({torch::randn({2, 3}).flatten(), specials}).to(torch::kHalf)},
      {"bf16", torch::cat({torch::randn({7}), specials}).to(torch::kBFloat16)},
      {"i64", torch::tensor({std::numeric_limits<int64_t>::min(), int64_t{-1}, int64_t{0}, std::numeric_limits<int64_t>::max()})},
      {"i32", torch::randint(-1000, 1000, {2, 2, 2}, torch::kInt)},
      {"i16", torch::randint(-30000, 30000, {9}, torch::kShort)},
      {"i8", torch::randint(-128, 127, {3}, torch::kChar)},
      {"u8", torch::randint(0, 255, {1, 5}, torch::kByte)},
      {"bool", torch::rand({6}) > 0.5},
      {"scalar", torch::tensor(2.5)},                  // 0-dim
      {"empty", torch::zeros({0, 3}, torch::kFloat)},  // no bytes
      {"strided", torch::arange(12, torch::kFloat).view({3, 4}).t()},  // written contiguous
  };
  const clprompt::Metadata metadata{{"format", "pt"}, {"note", "ünïcode & \"quotes\""}};
  const auto path = dir.file("all.safetensors");
  clprompt::write_safetensors(path, tensors, metadata);

  const auto bytes = read_bytes(path);
  uint64_t header_length = 0;
  std::memcpy(&header_length, bytes.data(), 8);
  CHECK(header_length % 8 == 0);  // padded like the reference writer
  CHECK(bytes[8] == '{');

  const auto contents = clprompt::read_safetensors(path);
  CHECK(contents.metadata == metadata);
  REQUIRE(contents.tensors.size() == tensors.size());
  for (const auto& [name, tensor] : tensors) {
    INFO(name);
    REQUIRE(contents.tensors.count(name) == 1);
    CHECK(same_bits(contents.tensors.at(name), tensor));
  }
  CHECK(contents.tensors.at("scalar").dim() == 0);
  CHECK(contents.tensors.at("empty").sizes() == at::IntArrayRef{0, 3});
  CHECK(names_in(dir) == std::vector<std::string>{"all.safetensors"});  // no temporary left
}

TEST_CASE("safetensors reads a file laid out like the reference Python writer", "[io][safetensors]") {
  TempDir dir;
  // The reference orders data by dtype alignment, then name: I64 "ids" before F32 "bias".
  std::string header =
      R"({"__metadata__":{"format":"pt"},"bias":{"dtype":"F32","shape":[2],"data_offsets":[16,24]},)"
      R"("ids":{"dtype":"I64","shape":[2,1],"data_offsets":[0,16]},"none":{"dtype":"F16","shape":[0],"data_offsets":[24,24]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  const auto path = dir.file("reference.safetensors");
  write_bytes(path, safetensors_bytes(header, raw<int64_t>({7, -3}) + raw<float>({1.5f, -2.0f})));

  const auto contents = clprompt::read_safetensors(path);
  CHECK(contents.metadata == clprompt::Metadata{{"format", "pt"}});
  REQUIRE(contents.tensors.size() == 3);
  CHECK(torch::equal(contents.tensors.at("ids"), torch::tensor({int64_t{7}, int64_t{-3}}).view({2, 1})));
  CHECK(torch::equal(contents.tensors.at("bias"), torch::tensor({1.5f, -2.0f})));
  CHECK(contents.tensors.at("none").scalar_type() == torch::kHalf);
  CHECK(contents.tensors.at("none").numel() == 0);
}

TEST_CASE("safetensors writer produces the reference byte layout", "[io][safetensors]") {
  TempDir dir;
  const auto path = dir.file("small.safetensors");
  clprompt::write_safetensors(path, {{"b", torch::tensor({int16_t{1}})}, {"a", torch::tensor({1.0f, 2.0f})}});
  std::string header = R"({"a":{"data_offsets":[0,8],"dtype":"F32","shape":[2]},"b":{"data_offsets":[8,10],"dtype":"I16","shape":[1]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  CHECK(read_bytes(path) == safetensors_bytes(header, raw<float>({1.0f, 2.0f}) + raw<int16_t>({1})));
}

TEST_CASE("safetensors reads the buffer once and views aligned tensors into it", "[io][safetensors]") {
  TempDir dir;
  const auto path = dir.file("big.safetensors");
  const auto big = torch::arange(int64_t{50} * 1024 * 1024 / 4, torch::kFloat);  // 50 MB
  clprompt::write_safetensors(path, {{"a_big", big}, {"b_small", torch::ones({4}, torch::kDouble)}});
  const auto contents = clprompt::read_safetensors(path);
  const auto& a = contents.tensors.at("a_big");
  const auto& b = contents.tensors.at("b_small");
  CHECK(torch::equal(a, big));
  CHECK(torch::equal(b, torch::ones({4}, torch::kDouble)));
  // Both are views of one buffer holding exactly the file's data: no per-tensor copy.
  CHECK(a.storage().is_alias_of(b.storage()));
  CHECK(a.storage().nbytes() == big.nbytes() + 4 * sizeof(double));

  // A tensor at an offset not aligned to its element size is copied instead.
  std::string header = R"({"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"b":{"dtype":"F32","shape":[2],"data_offsets":[3,11]}})";
  const auto odd = dir.file("odd.safetensors");
  write_bytes(odd, safetensors_bytes(header, std::string("xyz") + raw<float>({0.5f, 4.0f})));
  const auto misaligned = clprompt::read_safetensors(odd);
  CHECK(torch::equal(misaligned.tensors.at("b"), torch::tensor({0.5f, 4.0f})));
  CHECK(reinterpret_cast<uintptr_t>(misaligned.tensors.at("b").data_ptr()) % alignof(float) == 0);
}

TEST_CASE("corrupt safetensors files fail with a FileError naming the file", "[io][safetensors]") {
  TempDir dir;
  const auto path = dir.file("bad.safetensors");
  const std::string f32x2 = raw<float>({1.0f, 2.0f});
  auto entry = [](const std::string& name, const std::string& body) { return fmt::format(R"("{}":{{{}}})", name, body); };
  const std::string good_a = R"("dtype":"F32","shape":[2],"data_offsets":[0,8])";
  struct Case {
    const char* what;
    std::string bytes;
    const char* expected;  // a fragment of the message
  };
  const std::vector<Case> cases{
      {"shorter than 8 bytes", std::string("abc"), "shorter than the 8-byte"},
      {"header longer than the file", safetensors_bytes("{}", "", 1000), "larger than the rest of the file"},
      {"absurd header length", safetensors_bytes("{}", "", 200'000'000), "exceeds the limit"},
      {"header not JSON", safetensors_bytes("{\"a\": ", ""), "not valid JSON"},
      {"header not an object", safetensors_bytes("[1, 2]  ", ""), "must start with '{'"},
      {"entry not an object", safetensors_bytes(R"({"a": 5})", ""), "tensor 'a'"},
      {"missing dtype", safetensors_bytes("{" + entry("a", R"("shape":[2],"data_offsets":[0,8])") + "}", f32x2), "missing 'dtype'"},
      {"missing shape", safetensors_bytes("{" + entry("a", R"("dtype":"F32","data_offsets":[0,8])") + "}", f32x2), "missing 'shape'"},
      {"missing offsets", safetensors_bytes("{" + entry("a", R"("dtype":"F32","shape":[2])") + "}", f32x2), "missing 'data_offsets'"},
      {"dtype not a string", safetensors_bytes("{" + entry("a", R"("dtype":4,"shape":[2],"data_offsets":[0,8])") + "}", f32x2), "'dtype' must be a string"},
      {"unsupported dtype", safetensors_bytes("{" + entry("a", R"("dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8])") + "}", f32x2), "unsupported dtype 'F8_E4M3'"},
      {"shape not an array", safetensors_bytes("{" + entry("a", R"("dtype":"F32","shape":"2","data_offsets":[0,8])") + "}", f32x2), "'shape' must be"},
      {"fractional dim", safetensors_bytes("{" + entry("a", R"("dtype":"F32","shape":[2.0],"data_offsets":[0,8])") + "}", f32x2), "'shape' must be"},
      {"negative dim", safetensors_bytes("{" + entry("a", R"("dtype":"F32","shape":[-2],"data_offsets":[0,8])") + "}", f32x2), "negative dimension"},
      {"offsets not a pair", safetensors_bytes("{" + entry("a", R"("dtype":"F32","shape":[2],"data_offsets":[8])") + "}", f32x2), "'data_offsets' must be"},
      {"offsets not integers", safetensors_bytes("{" + entry("a", R"("dtype":"F32","shape":[2],"data_offsets":["0",8])") + "}", f32x2), "'data_offsets' must be"},
      {"begin after end", safetensors_bytes("{" + entry("a", R"("dtype":"F32","shape":[2],"data_offsets":[8,0])") + "}", f32x2), "begin 8 > end 0"},
      {"end beyond buffer", safetensors_bytes("{" + entry("a", R"("dtype":"F32","shape":[4],"data_offsets":[0,16])") + "}", f32x2), "beyond the 8-byte data buffer"},
      {"size mismatch", safetensors_bytes("{" + entry("a", R"("dtype":"F32","shape":[3],"data_offsets":[0,8])") + "}", f32x2), "needs 12 bytes"},
      {"numel overflow", safetensors_bytes("{" + entry("a", R"("dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8])") + "}", f32x2), "too many"},
      {"gap", safetensors_bytes("{" + entry("a", good_a) + "," + entry("b", R"("dtype":"F32","shape":[1],"data_offsets":[12,16])") + "}", f32x2 + f32x2), "gap"},
      {"overlap", safetensors_bytes("{" + entry("a", good_a) + "," + entry("b", R"("dtype":"F32","shape":[2],"data_offsets":[4,12])") + "}", f32x2 + raw<float>({3.0f})), "overlap"},
      {"trailing bytes", safetensors_bytes("{" + entry("a", good_a) + "}", f32x2 + "junk"), "incomplete buffer"},
      {"duplicate name", safetensors_bytes("{" + entry("a", good_a) + "," + entry("a", good_a) + "}", f32x2), "'a' twice"},
      {"metadata not strings", safetensors_bytes(R"({"__metadata__":{"epoch":3},)" + entry("a", good_a) + "}", f32x2), "'epoch' must be a string"},
      {"metadata not an object", safetensors_bytes(R"({"__metadata__":[1],)" + entry("a", good_a) + "}", f32x2), "'__metadata__' must be"},
      {"invalid bool", safetensors_bytes("{" + entry("a", R"("dtype":"BOOL","shape":[2],"data_offsets":[0,2])") + "}", std::string("\x01\x02", 2)), "other than 0 and 1"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    write_bytes(path, c.bytes);
    const auto message = read_error(path);
    CHECK_THAT(message, Catch::StartsWith(path + ": ") && Catch::Contains(c.expected));
  }
  CHECK_THAT(read_error(dir.file("missing.safetensors")), Catch::Contains("missing.safetensors") && Catch::Contains("no such file"));
  CHECK_THAT(read_error(dir.path().string()), Catch::Contains("not a regular file"));
}

TEST_CASE("truncated safetensors files fail at every cut point", "[io][safetensors]") {
  TempDir dir;
  const auto whole = dir.file("whole.safetensors");
  clprompt::write_safetensors(whole, {{"w", torch::randn({3, 5})}, {"x", torch::arange(7)}}, {{"k", "v"}});
  const auto bytes = read_bytes(whole);
  const auto path = dir.file("cut.safetensors");
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    INFO("cut at " << cut << " of " << bytes.size());
    write_bytes(path, bytes.substr(0, cut));
    CHECK_THAT(read_error(path), Catch::StartsWith(path + ": "));
  }
  write_bytes(path, bytes);
  CHECK_NOTHROW(clprompt::read_safetensors(path));
}

TEST_CASE("safetensors writer rejects what it cannot store before writing", "[io][safetensors]") {
  TempDir dir;
  const auto path = dir.file("c.safetensors");
  auto write_error = [&](const clprompt::TensorMap& tensors) {
    try {
      clprompt::write_safetensors(path, tensors);
    } catch (const clprompt::FileError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(write_error({{"z", torch::zeros({2}, torch::kComplexFloat)}}),
             Catch::StartsWith(path) && Catch::Contains("'z'") && Catch::Contains("ComplexFloat"));
  CHECK_THAT(write_error({{"u", at::Tensor()}}), Catch::Contains("'u' is undefined"));
  CHECK_THAT(write_error({{"__metadata__", torch::zeros({1})}}), Catch::Contains("reserved"));
  CHECK(names_in(dir).empty());
}

TEST_CASE("atomic writes keep the old content when the writer fails", "[io][atomic_file]") {
  TempDir dir;
  const auto path = dir.file("target.txt");
  clprompt::write_text_file_atomically(path, "old content");
  CHECK(read_bytes(path) == "old content");

  SECTION("a throwing writer becomes a FileError naming the file") {
    try {
      clprompt::write_file_atomically(path, [](std::ostream& out) {
        out << "half of the new";
        throw std::runtime_error("disk on fire");
      });
      FAIL("no exception");
    } catch (const clprompt::FileError& e) {
      CHECK(e.path() == path);
      CHECK_THAT(e.what(), Catch::Contains("disk on fire") && Catch::Contains("previous content is kept"));
    }
  }
  SECTION("a clprompt error from the writer passes through unchanged") {
    CHECK_THROWS_AS(clprompt::write_file_atomically(path, [](std::ostream&) { throw clprompt::ShapeError("bad shape"); }),
                    clprompt::ShapeError);
  }
  SECTION("safetensors writes are atomic too") {
    CHECK_THROWS_AS(clprompt::write_safetensors(path, {{"z", torch::zeros({1}, torch::kComplexDouble)}}), clprompt::FileError);
  }
  CHECK(read_bytes(path) == "old content");
  CHECK(names_in(dir) == std::vector<std::string>{"target.txt"});  // no temporary file left

  clprompt::write_text_file_atomically(path, "new");
  CHECK(read_bytes(path) == "new");
  CHECK(names_in(dir) == std::vector<std::string>{"target.txt"});
}

TEST_CASE("atomic write into a missing directory fails clearly", "[io][atomic_file]") {
  TempDir dir;
  const auto path = dir.file("no/such/dir/out.json");
  try {
    clprompt::write_text_file_atomically(path, "{}");
    FAIL("no exception");
  } catch (const clprompt::FileError& e) {
    CHECK(e.path() == path);
    CHECK_THAT(e.what(), Catch::Contains("directory") && Catch::Contains("does not exist"));
  }
  CHECK_THROWS_AS(clprompt::write_text_file_atomically(dir.path().string(), "x"), clprompt::FileError);  // a directory
  CHECK(names_in(dir).empty());
}
