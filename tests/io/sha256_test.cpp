// SHA-256 against the FIPS 180-4 examples, and the verification of the shipped weights.
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "clprompt/backbone/builtin_weights.hpp"
#include "clprompt/core/error.hpp"
#include "clprompt/io/sha256.hpp"
#include "test_util.hpp"

#include <catch2/catch.hpp>

namespace fs = std::filesystem;
using namespace clprompt;
using clprompt::test::error_message;
using clprompt::test::TempDir;

TEST_CASE("sha256 matches the FIPS 180-4 examples", "[io][sha256]") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string million(1000000, 'a');
  CHECK(sha256_hex(million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  TempDir dir;
  std::ofstream(dir / "a.bin", std::ios::binary) << million;
  CHECK(sha256_file_hex(dir / "a.bin") == sha256_hex(million));
  CHECK_THROWS_AS(sha256_file_hex(dir / "missing"), FileError);
}

TEST_CASE("shipped weights resolve only when their SHA-256 matches", "[io][sha256]") {
  CHECK(resolve_pretrained_path("/some/user/vit.safetensors") == "/some/user/vit.safetensors");
  CHECK_THAT(error_message<ConfigError>([] { resolve_pretrained_path("builtin:nope"); }),
             Catch::Contains("pretrained") && Catch::Contains("builtin:vit-glyph-d128"));
  // The copy in the source tree is the one the library was built with.
  const auto& weights = builtin_weights().front();
  const auto path = resolve_pretrained_path("builtin:" + weights.name);
  CHECK(sha256_file_hex(path) == weights.sha256);

  // A corrupted copy found first on the search path is refused, naming the file.
  TempDir dir;
  fs::copy_file(path, dir / weights.file);
  {
    std::fstream f(dir / weights.file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x7f');
  }
  ::setenv("CLPROMPT_MODELS_DIR", dir.str().c_str(), 1);
  const auto message = error_message<FileError>([&] { resolve_pretrained_path("builtin:" + weights.name); });
  ::unsetenv("CLPROMPT_MODELS_DIR");
  CHECK_THAT(message, Catch::Contains(dir / weights.file) && Catch::Contains("SHA-256") &&
                          Catch::Contains("scripts/pretrain.sh"));
}
