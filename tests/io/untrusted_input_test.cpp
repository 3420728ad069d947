// Inputs from outside the program that used to crash, hang or exhaust memory: each must end in
// a named clprompt error (issue 15's list), and valid inputs next to the limits must still pass.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "clprompt/clip/clip_tokenizer.hpp"
#include "clprompt/core/json_parse.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/data/idx.hpp"
#include "clprompt/data/scenario.hpp"
#include "clprompt/io/file_bytes.hpp"
#include "clprompt/io/safetensors.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/run/cli.hpp"
#include "clprompt/run/experiment.hpp"
#include "clip/tiny_vocab.hpp"
#include "test_util.hpp"

namespace {

using clprompt::test::error_message;
using clprompt::test::TempDir;
using clprompt::test::write_bytes;

std::string nested_arrays(int depth) { return std::string(static_cast<size_t>(depth), '[') + std::string(static_cast<size_t>(depth), ']'); }

/// A safetensors file with `header` as its header text and no data.
void write_raw_safetensors(const std::string& path, const std::string& header) {
  std::string bytes(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) bytes[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  write_bytes(path, bytes + header);
}

}  // namespace

TEST_CASE("JSON is bounded while it is parsed: depth, size, numbers out of range", "[io][limits]") {
  using clprompt::Json;
  CHECK(clprompt::parse_json<Json>(nested_arrays(64)).is_array());  // at the limit: fine
  CHECK_THROWS_AS(clprompt::parse_json<Json>(nested_arrays(65)), clprompt::JsonLimitError);
  // 100 000 levels: refused at level 65, long before anything recurses over it.
  CHECK_THROWS_WITH(clprompt::parse_json<Json>(nested_arrays(100000)), Catch::Contains("deeper than 64"));
  clprompt::JsonLimits small;
  small.max_bytes = 10;
  CHECK_THROWS_WITH(clprompt::parse_json<Json>("[1, 2, 3, 4, 5]", small), Catch::Contains("15 bytes"));
  CHECK_THROWS_AS(clprompt::parse_json<Json>("{\"lr\": 1e400}"), clprompt::JsonSyntaxError);
  CHECK_THROWS_AS(clprompt::parse_json<Json>("{\"lr\": "), clprompt::JsonSyntaxError);
}

TEST_CASE("configuration files: directories, FIFOs, huge, deep and out-of-range files are named errors",
          "[io][limits][cli]") {
  TempDir dir;
  CHECK_THAT(error_message<clprompt::FileError>([&] { clprompt::read_config_file(dir.path().string()); }),
             Catch::Contains("regular JSON file"));
  const auto fifo = dir.file("config.fifo");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THAT(error_message<clprompt::FileError>([&] { clprompt::read_config_file(fifo); }),  // returns, not blocks
             Catch::Contains("config.fifo") && Catch::Contains("regular JSON file"));
  CHECK_THAT(error_message<clprompt::FileError>([&] { clprompt::read_config_file(dir.file("missing.json")); }),
             Catch::Contains("no such file"));
  write_bytes(dir.file("deep.json"), "{\"a\": " + nested_arrays(100000) + "}");
  CHECK_THAT(error_message<clprompt::FileError>([&] { clprompt::read_config_file(dir.file("deep.json")); }),
             Catch::Contains("deep.json") && Catch::Contains("deeper than 64"));
  write_bytes(dir.file("overflow.json"), "{\"train\": {\"lr\": 1e400}}");
  CHECK_THAT(error_message<clprompt::FileError>([&] { clprompt::read_config_file(dir.file("overflow.json")); }),
             Catch::Contains("overflow.json") && Catch::Contains("not valid JSON"));
  write_bytes(dir.file("huge.json"), "{\"x\": \"" + std::string(17u << 20, 'a') + "\"}");
  CHECK_THAT(error_message<clprompt::FileError>([&] { clprompt::read_config_file(dir.file("huge.json")); }),
             Catch::Contains("larger than any configuration"));
  write_bytes(dir.file("ok.json"), "{\"train\": {\"lr\": 0.01}}");
  CHECK(clprompt::read_config_file(dir.file("ok.json"))["train"]["lr"] == 0.01);
}

TEST_CASE("overrides (--set): malformed paths end, deep paths are refused, values are bounded", "[io][limits][cli]") {
  // ".a=1" looped forever in the old path splitter.
  CHECK_THAT(error_message<clprompt::ConfigError>([] { clprompt::parse_override(".a=1"); }),
             Catch::Contains("empty field name"));
  CHECK_THROWS_AS(clprompt::parse_override("a..b=1"), clprompt::ConfigError);
  CHECK_THROWS_AS(clprompt::parse_override("a.=1"), clprompt::ConfigError);
  std::string deep = "a";
  for (int i = 0; i < 100000; ++i) deep += ".a";
  CHECK_THAT(error_message<clprompt::ConfigError>([&] { clprompt::parse_override(deep + "=1"); }),
             Catch::Contains("nest at most 32"));
  CHECK_THAT(error_message<clprompt::ConfigError>([] { clprompt::parse_override("x=" + nested_arrays(1000)); }),
             Catch::Contains("deeper than 64"));
  CHECK(clprompt::parse_override("train.lr=0.5") == clprompt::Json::parse(R"({"train": {"lr": 0.5}})"));
  CHECK(clprompt::parse_override("data.root=/data/x") == clprompt::Json::parse(R"({"data": {"root": "/data/x"}})"));
  // Bytes that are not UTF-8 (found by fuzz/override_fuzzer.cpp): a named error now, not nlohmann's
  // type_error when the configuration is next written out.
  CHECK_THAT(error_message<clprompt::ConfigError>([] { clprompt::parse_override("transform={\"size\": \xcd\xcd}"); }),
             Catch::Contains("not valid UTF-8"));
  CHECK_THAT(error_message<clprompt::ConfigError>([] { clprompt::parse_override("data.root=/data/\xff"); }),
             Catch::Contains("not valid UTF-8"));
}

namespace {
struct Counts {
  int64_t threads = 0;
  int small = 0;
  std::string name;
  static constexpr auto fields() {
    return std::tuple{clprompt::field("threads", &Counts::threads), clprompt::field("small", &Counts::small),
                      clprompt::field("name", &Counts::name)};
  }
};
}  // namespace

TEST_CASE("options: integers out of their type's range are refused, echoed values are shortened", "[io][limits][options]") {
  using clprompt::Json;
  // 4294967297 used to wrap to 1 when narrowed to int.
  CHECK_THAT(error_message<clprompt::ConfigError>(
                 [] { (void)clprompt::options_from_json<Counts>(Json{{"small", 4294967297LL}}, "c"); }),
             Catch::Contains("c.small") && Catch::Contains("out of range"));
  CHECK(clprompt::options_from_json<Counts>(Json{{"small", -5}}).small == -5);
  CHECK_THAT(error_message<clprompt::ConfigError>(
                 [] { (void)clprompt::options_from_json<Counts>(Json{{"threads", 18446744073709551615ULL}}); }),
             Catch::Contains("out of range"));
  const std::string huge(50000, 'x');
  const auto message = error_message<clprompt::ConfigError>(
      [&] { (void)clprompt::options_from_json<Counts>(Json{{"threads", huge}}); });
  CHECK_THAT(message, Catch::Contains("(50002 characters)"));
  CHECK(message.size() < 400);
  CHECK(clprompt::brief("short") == "short");
}

TEST_CASE("the run configuration bounds the thread count", "[io][limits][cli]") {
  auto resolve = [](const std::string& set) {
    return clprompt::resolve_config(clprompt::builtin_methods(), "finetune", clprompt::parse_override(set));
  };
  CHECK_THAT(error_message<clprompt::ConfigError>([&] { resolve("threads=100000"); }),
             Catch::Contains("threads") && Catch::Contains("[0, 1024]"));
  CHECK_THAT(error_message<clprompt::ConfigError>([&] { resolve("threads=4294967297"); }), Catch::Contains("threads"));
  CHECK(resolve("threads=2").threads == 2);
}

TEST_CASE("safetensors headers nested deeply are refused while parsing", "[io][limits][safetensors]") {
  TempDir dir;
  write_raw_safetensors(dir.file("deep_meta.safetensors"), "{\"__metadata__\": " + nested_arrays(100000) + "}");
  CHECK_THAT(error_message<clprompt::FileError>([&] { clprompt::read_safetensors(dir.file("deep_meta.safetensors")); }),
             Catch::Contains("deep_meta.safetensors") && Catch::Contains("deeper than 8"));
  write_raw_safetensors(dir.file("deep_entry.safetensors"), "{\"w\": {\"shape\": " + nested_arrays(100000) + "}}");
  CHECK_THROWS_AS(clprompt::read_safetensors_header(dir.file("deep_entry.safetensors")), clprompt::FileError);
}

TEST_CASE("a CLIP vocab.json nested deeply is a tokenizer error", "[io][limits][text]") {
  TempDir dir;
  write_bytes(dir.file("vocab.json"), "{\"a\": " + nested_arrays(100000) + "}");
  clprompt::test::write_text(dir.file("merges.txt"), clprompt::test::merges_text(clprompt::test::kTinyMerges));
  CHECK_THAT(error_message<clprompt::TokenizerError>(
                 [&] { clprompt::ClipTokenizer::from_hf_files(dir.file("vocab.json"), dir.file("merges.txt")); }),
             Catch::Contains("vocab.json") && Catch::Contains("deeper than 4"));
}

TEST_CASE("gzip that inflates beyond what its trailer claims is refused before it fills memory", "[io][limits][gzip]") {
  // 300 MiB of zeros (~300 KB compressed) whose trailer is rewritten to claim 1000 bytes: the
  // reader stops at 256 MiB instead of inflating everything.
  std::vector<uint8_t> zeros(size_t{300} << 20, 0);
  auto gz = clprompt::detail::gzip_compress(zeros);
  zeros = {};
  const auto n = gz.size();
  gz[n - 4] = 0xe8, gz[n - 3] = 0x03, gz[n - 2] = 0, gz[n - 1] = 0;  // ISIZE = 1000
  CHECK_THAT(error_message<clprompt::FileError>([&] { clprompt::detail::gunzip(gz, "bomb.gz"); }),
             Catch::Contains("bomb.gz") && Catch::Contains("decompression bomb"));
  // An honest file still reads, concatenated members included.
  const std::vector<uint8_t> text{'a', 'b', 'c'};
  auto one = clprompt::detail::gzip_compress(text);
  auto two = one;
  two.insert(two.end(), one.begin(), one.end());
  CHECK(clprompt::detail::gunzip(two, "two.gz") == std::vector<uint8_t>{'a', 'b', 'c', 'a', 'b', 'c'});
}

TEST_CASE("IDX headers whose sizes overflow, and empty IDX splits, are named errors", "[io][limits][data]") {
  TempDir dir;
  auto be32 = [](std::string& v, uint32_t x) {
    for (int s = 24; s >= 0; s -= 8) v.push_back(static_cast<char>(x >> s));
  };
  std::string images{0, 0, 8, 3}, labels{0, 0, 8, 1};
  be32(images, 4), be32(images, 0x80000000u), be32(images, 0x80000000u);
  be32(labels, 4);
  labels += std::string(4, '\0');
  write_bytes(dir.file("images"), images);
  write_bytes(dir.file("labels"), labels);
  CHECK_THAT(error_message<clprompt::FileError>([&] { clprompt::read_idx(dir.file("images"), dir.file("labels")); }),
             Catch::Contains("more than 2^64 bytes"));
  std::string empty_images{0, 0, 8, 3}, empty_labels{0, 0, 8, 1};
  be32(empty_images, 0), be32(empty_images, 28), be32(empty_images, 28);
  be32(empty_labels, 0);
  write_bytes(dir.file("empty_images"), empty_images);
  write_bytes(dir.file("empty_labels"), empty_labels);
  CHECK_THAT(error_message<clprompt::FileError>(
                 [&] { clprompt::read_idx(dir.file("empty_images"), dir.file("empty_labels")); }),
             Catch::Contains("empty_images") && Catch::Contains("has no images"));
}

TEST_CASE("a class missing from a split is named with its task", "[data][scenario][limits]") {
  // Test set without class 3: task 2 (classes 2-3) could not be evaluated on class 3.
  auto train = std::make_shared<clprompt::TensorDataset>(at::zeros({8, 1, 4, 4}, at::kByte),
                                                         at::arange(4, at::kLong).repeat_interleave(2));
  auto test = std::make_shared<clprompt::TensorDataset>(at::zeros({3, 1, 4, 4}, at::kByte),
                                                        at::tensor({0, 1, 2}, at::kLong),
                                                        std::vector<std::string>{"zero", "one", "two", "three"});
  clprompt::ScenarioOptions o;
  o.num_tasks = 2;
  o.order = clprompt::ClassOrderRule::natural;
  CHECK_THAT(error_message<clprompt::ShapeError>([&] { clprompt::Scenario(train, test, o, 1); }),
             Catch::Contains("class 3 ('three') (task 2) has no test images"));
  CHECK_NOTHROW(clprompt::Scenario(train, train, o, 1));
}
