// Bounded JPEG / PNG / BMP decoding: exact pixels for lossless formats, RGB conversions, and
// refusals (size limits, other formats, corrupt files) that name the file and what was found.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <zlib.h>

#include "stb_write.hpp"

#include "clprompt/data/image_decode.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which must not replace Catch's.
#include <catch2/catch.hpp>

namespace fs = std::filesystem;

namespace {

using clprompt::test::Bytes;
using clprompt::test::file_error;
using clprompt::test::put_be32;
using clprompt::test::write_file;

// Interleaved pixels of a w x h image with `channels` channels; channel k of (y, x) is distinct.
Bytes pixels(int w, int h, int channels) {
  Bytes p;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < channels; ++k) p.push_back(static_cast<uint8_t>(40 + 13 * x + 29 * y + 70 * k));
  return p;
}

// uint8 [3, H, W] expected from interleaved pixels: grey (1, 2 channels) replicated, alpha dropped.
at::Tensor expected_rgb(const Bytes& p, int w, int h, int channels) {
  at::Tensor t = at::empty({3, h, w}, at::kByte);
  auto a = t.accessor<uint8_t, 3>();
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < 3; ++k) {
        const int source = channels <= 2 ? 0 : k;
        a[k][y][x] = p[static_cast<size_t>((y * w + x) * channels + source)];
      }
  return t;
}

void png_chunk(Bytes& png, const char* type, const Bytes& data) {
  put_be32(png, static_cast<uint32_t>(data.size()));
  Bytes body(type, type + 4);
  body.insert(body.end(), data.begin(), data.end());
  png.insert(png.end(), body.begin(), body.end());
  put_be32(png, static_cast<uint32_t>(crc32(0, body.data(), static_cast<uInt>(body.size()))));
}

// A PNG with the given header and `rows` (filter byte 0 per row, already included) deflated.
Bytes png(uint32_t w, uint32_t h, uint8_t bit_depth, uint8_t color_type, const Bytes& rows) {
  Bytes out{0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  Bytes ihdr;
  put_be32(ihdr, w);
  put_be32(ihdr, h);
  ihdr.insert(ihdr.end(), {bit_depth, color_type, 0, 0, 0});
  png_chunk(out, "IHDR", ihdr);
  uLongf size = compressBound(static_cast<uLong>(rows.size()));
  Bytes z(size);
  REQUIRE(compress2(z.data(), &size, rows.data(), static_cast<uLong>(rows.size()), 6) == Z_OK);
  z.resize(size);
  png_chunk(out, "IDAT", z);
  png_chunk(out, "IEND", {});
  return out;
}

// A 16-bit RGB PNG whose sample (y, x, k) has `value` as its high byte and noise below it
// (big-endian in the file).
Bytes png16_rgb(int w, int h, const Bytes& values) {
  Bytes rows;
  for (int y = 0; y < h; ++y) {
    rows.push_back(0);
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < 3; ++k) {
        const int v = values[static_cast<size_t>((y * w + x) * 3 + k)];
        const auto s = static_cast<uint16_t>((v << 8) | ((v * 7 + 3 * k + x) & 0xff));
        rows.push_back(static_cast<uint8_t>(s >> 8));
        rows.push_back(static_cast<uint8_t>(s & 0xff));
      }
  }
  return png(static_cast<uint32_t>(w), static_cast<uint32_t>(h), 16, 2, rows);
}


}  // namespace

TEST_CASE("PNG, BMP and JPEG decode to uint8 [3, H, W] with PIL's RGB conversions", "[data][image_decode]") {
  clprompt::test::TempDir dir;
  const int w = 7, h = 5;
  for (int channels : {1, 2, 3, 4}) {
    INFO(channels << " channels");
    const Bytes p = pixels(w, h, channels);
    const std::string file = dir / ("c" + std::to_string(channels) + ".png");
    REQUIRE(stbi_write_png(file.c_str(), w, h, channels, p.data(), w * channels) != 0);
    const at::Tensor image = clprompt::decode_image_file(file);
    CHECK(image.sizes() == at::IntArrayRef{3, h, w});
    CHECK(image.is_contiguous());
    CHECK(at::equal(image, expected_rgb(p, w, h, channels)));
    const clprompt::ImageInfo info = clprompt::read_image_info(file);
    CHECK(info.format == clprompt::ImageFormat::png);
    CHECK(info.width == w);
    CHECK(info.height == h);
    CHECK(info.channels == channels);
    CHECK(info.bits_per_channel == 8);
  }
  const Bytes rgb = pixels(w, h, 3);
  REQUIRE(stbi_write_bmp((dir / "x.bmp").c_str(), w, h, 3, rgb.data()) != 0);
  CHECK(at::equal(clprompt::decode_image_file(dir / "x.bmp"), expected_rgb(rgb, w, h, 3)));
  CHECK(clprompt::read_image_info(dir / "x.bmp").format == clprompt::ImageFormat::bmp);

  // JPEG is lossy: close to the source; grey JPEGs give three equal channels.
  const int jw = 16, jh = 16;
  Bytes smooth;
  for (int y = 0; y < jh; ++y)
    for (int x = 0; x < jw; ++x) smooth.insert(smooth.end(), {static_cast<uint8_t>(40 + 4 * x), static_cast<uint8_t>(60 + 3 * y),
                                                              static_cast<uint8_t>(200 - 2 * x - y)});
  REQUIRE(stbi_write_jpg((dir / "x.jpg").c_str(), jw, jh, 3, smooth.data(), 95) != 0);
  const at::Tensor jpg = clprompt::decode_image_file(dir / "x.jpg");
  CHECK(jpg.sizes() == at::IntArrayRef{3, jh, jw});
  CHECK((jpg.to(at::kFloat) - expected_rgb(smooth, jw, jh, 3).to(at::kFloat)).abs().mean().item<double>() < 3.0);
  const clprompt::ImageInfo jinfo = clprompt::read_image_info(dir / "x.jpg");
  CHECK(jinfo.format == clprompt::ImageFormat::jpeg);
  CHECK(jinfo.channels == 3);
  const Bytes grey = pixels(jw, jh, 1);
  REQUIRE(stbi_write_jpg((dir / "grey.jpg").c_str(), jw, jh, 1, grey.data(), 95) != 0);
  const at::Tensor g = clprompt::decode_image_file(dir / "grey.jpg");
  CHECK(at::equal(g[0], g[1]));
  CHECK(at::equal(g[1], g[2]));

  // 16-bit PNG: the high byte of each sample.
  write_file(dir / "deep.png", png16_rgb(w, h, rgb));
  CHECK(at::equal(clprompt::decode_image_file(dir / "deep.png"), expected_rgb(rgb, w, h, 3)));
  const clprompt::ImageInfo deep = clprompt::read_image_info(dir / "deep.png");
  CHECK(deep.bits_per_channel == 16);
  CHECK(deep.decoded_values() == w * h * 3 * 2);

  // From memory, under a name of our choosing.
  std::ifstream in(dir / "c3.png", std::ios::binary);
  const Bytes bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(at::equal(clprompt::decode_image_memory(bytes.data(), bytes.size(), "mem.png"), expected_rgb(rgb, w, h, 3)));
}

// Found by fuzz/image_decode_fuzzer.cpp: Debian 12's stb_image (a 2022-09 snapshot) wrote past its
// Huffman tables when a DHT segment's 16 code counts sum to more than 256.
TEST_CASE("a JPEG Huffman table of more than 256 codes is refused before stb_image reads it", "[data][image_decode]") {
  clprompt::test::TempDir dir;
  const Bytes grey = pixels(8, 8, 1);
  REQUIRE(stbi_write_jpg((dir / "ok.jpg").c_str(), 8, 8, 1, grey.data(), 90) != 0);
  const Bytes ok = clprompt::detail::read_file_bytes(dir / "ok.jpg");
  // After SOI: DHT, length 19, class/id 0, sixteen counts of 17 (272 codes).
  Bytes bad(ok.begin(), ok.begin() + 2);
  for (const uint8_t b : {0xff, 0xc4, 0x00, 0x13, 0x00}) bad.push_back(b);
  bad.insert(bad.end(), 16, 17);
  bad.insert(bad.end(), ok.begin() + 2, ok.end());
  write_file(dir / "bad.jpg", bad);
  const std::string expected = "is a corrupt JPEG: the Huffman table at byte 6 declares 272 codes";
  CHECK_THAT(file_error([&] { (void)clprompt::decode_image_memory(bad.data(), bad.size(), "bad.jpg"); }),
             Catch::Contains(expected));
  CHECK_THAT(file_error([&] { (void)clprompt::read_image_info(dir / "bad.jpg"); }), Catch::Contains(expected));
  CHECK(clprompt::read_image_info(dir / "ok.jpg").width == 8);
  CHECK(clprompt::decode_image_memory(ok.data(), ok.size(), "ok.jpg").size(2) == 8);
}

// Found by fuzz/image_decode_fuzzer.cpp: stb_image decoded a BMP of width 0 to an empty image.
TEST_CASE("empty IDAT chunks are dropped before stb_image copies one into a null buffer", "[data][image_decode]") {
  // Found by fuzz/image_decode_fuzzer.cpp (UBSan: memcpy(NULL, ..., 0) in stb_image's PNG reader).
  Bytes rows;
  for (int y = 0; y < 3; ++y) rows.insert(rows.end(), {0, static_cast<uint8_t>(40 * y), 7, 200, 90, 80, 70});
  const Bytes plain = png(2, 3, 8, 2, rows);
  Bytes with_empty(plain.begin(), plain.begin() + 33);  // signature + IHDR
  png_chunk(with_empty, "IDAT", {});
  with_empty.insert(with_empty.end(), plain.begin() + 33, plain.end());
  const auto expected = clprompt::decode_image_memory(plain.data(), plain.size(), "plain.png");
  const auto decoded = clprompt::decode_image_memory(with_empty.data(), with_empty.size(), "empty-idat.png");
  CHECK(decoded.equal(expected));
  CHECK(expected[0][2][0].item<int>() == 80);
}

TEST_CASE("an image of width or height 0 is refused as a corrupt header", "[data][image_decode]") {
  clprompt::test::TempDir dir;
  const Bytes rgb = pixels(4, 8, 3);
  REQUIRE(stbi_write_bmp((dir / "ok.bmp").c_str(), 4, 8, 3, rgb.data()) != 0);
  Bytes empty = clprompt::detail::read_file_bytes(dir / "ok.bmp");
  std::fill(empty.begin() + 18, empty.begin() + 22, uint8_t{0});  // BITMAPINFOHEADER width
  write_file(dir / "empty.bmp", empty);
  const std::string expected = "has a corrupt bmp header: an image of 0x8 pixels";
  CHECK_THAT(file_error([&] { (void)clprompt::decode_image_memory(empty.data(), empty.size(), "empty.bmp"); }),
             Catch::Contains(expected));
  CHECK_THAT(file_error([&] { (void)clprompt::read_image_info(dir / "empty.bmp"); }), Catch::Contains(expected));
}

TEST_CASE("decoding refuses large, foreign and corrupt files before decoding them", "[data][image_decode]") {
  clprompt::test::TempDir dir;
  const Bytes rgb = pixels(10, 10, 3);
  REQUIRE(stbi_write_png((dir / "rgb.png").c_str(), 10, 10, 3, rgb.data(), 30) != 0);
  const Bytes rgba = pixels(10, 10, 4);
  REQUIRE(stbi_write_png((dir / "rgba.png").c_str(), 10, 10, 4, rgba.data(), 40) != 0);
  write_file(dir / "deep.png", png16_rgb(10, 10, rgb));

  // width x height x channels (x 2 for 16 bits) against max_values.
  CHECK(clprompt::decode_image_file(dir / "rgb.png", {.max_values = 300}).size(1) == 10);
  CHECK_THAT(file_error([&] { (void)clprompt::decode_image_file(dir / "rgb.png", {.max_values = 299}); }),
             Catch::Equals(dir / "rgb.png" +
                           ": is a png image of 10x10 with 3 channels (300 values decoded), more than the limit of "
                           "299 (max_values)"));
  CHECK_THAT(file_error([&] { (void)clprompt::decode_image_file(dir / "rgba.png", {.max_values = 300}); }),
             Catch::Contains("10x10 with 4 channels (400 values decoded)"));
  CHECK_THAT(file_error([&] { (void)clprompt::decode_image_file(dir / "deep.png", {.max_values = 599}); }),
             Catch::Contains("10x10 with 3 channels of 16 bits (600 values decoded)"));
  // A header that claims 10000 x 10000 pixels in a tiny file is refused from the header alone
  // (stb_image itself refuses only images above 2^30 bytes).
  write_file(dir / "huge.png", png(10000, 10000, 8, 2, Bytes(100, 0)));
  CHECK_THAT(file_error([&] { (void)clprompt::decode_image_file(dir / "huge.png"); }),
             Catch::StartsWith(dir / "huge.png") &&
                 Catch::Contains("10000x10000 with 3 channels (300000000 values decoded), more than the limit of "
                                 "201326592 (max_values)"));
  CHECK(clprompt::read_image_info(dir / "huge.png").width == 10000);
  // File size.
  const auto size = fs::file_size(dir / "rgb.png");
  CHECK_THAT(file_error([&] {
               (void)clprompt::decode_image_file(dir / "rgb.png", {.max_file_bytes = static_cast<int64_t>(size) - 1});
             }),
             Catch::Contains(fmt::format("has {} bytes, more than the limit of {} (max_file_bytes)", size, size - 1)));
  CHECK_THROWS_AS(clprompt::decode_image_file(dir / "rgb.png", {.max_file_bytes = int64_t{1} << 32}),
                  clprompt::ConfigError);

  // Other formats, by their magic bytes; corrupt headers; truncated data.
  write_file(dir / "anim.jpg", Bytes{'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0});
  CHECK_THAT(file_error([&] { (void)clprompt::decode_image_file(dir / "anim.jpg"); }),
             Catch::Equals(dir / "anim.jpg" +
                           ": is not a JPEG, PNG or BMP file: it starts with bytes 47 49 46 38 39 61 01 00 (a GIF)"));
  write_file(dir / "notes.png", Bytes{'h', 'e', 'l', 'l', 'o'});
  CHECK_THAT(file_error([&] { (void)clprompt::read_image_info(dir / "notes.png"); }),
             Catch::Contains("it starts with bytes 68 65 6c 6c 6f"));
  write_file(dir / "empty.png", Bytes{});
  CHECK_THAT(file_error([&] { (void)clprompt::decode_image_file(dir / "empty.png"); }), Catch::Contains("is empty"));
  write_file(dir / "bad.jpg", Bytes{0xff, 0xd8, 0xff, 0x00, 1, 2, 3});
  CHECK_THAT(file_error([&] { (void)clprompt::decode_image_file(dir / "bad.jpg"); }),
             Catch::StartsWith(dir / "bad.jpg") && Catch::Contains("has a corrupt jpeg header"));
  std::ifstream in(dir / "rgb.png", std::ios::binary);
  Bytes truncated((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  truncated.resize(40);  // the IHDR survives, the pixel data does not
  write_file(dir / "cut.png", truncated);
  CHECK_THAT(file_error([&] { (void)clprompt::decode_image_file(dir / "cut.png"); }),
             Catch::StartsWith(dir / "cut.png") && Catch::Contains("cannot decode the png image of 10x10"));
  CHECK_THAT(file_error([&] { (void)clprompt::decode_image_file(dir / "none.jpg"); }),
             Catch::Equals(dir / "none.jpg" + ": not found; expected a JPEG, PNG or BMP image"));
  CHECK_THAT(file_error([&] { (void)clprompt::decode_image_file(dir.str()); }), Catch::Contains("is a directory"));
}
