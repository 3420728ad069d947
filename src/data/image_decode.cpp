// Bounded image decoding (include/clprompt/data/image_decode.hpp).
#include "clprompt/data/image_decode.hpp"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

// Only the decoders this library needs: less code that untrusted files can reach.
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_NO_HDR
#define STBI_NO_LINEAR
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

#include "clprompt/core/error.hpp"

namespace fs = std::filesystem;

namespace clprompt {

void ImageDecodeOptions::validate(const std::string& path) const {
  require_option(max_file_bytes > 0 && max_file_bytes <= INT_MAX, path, "max_file_bytes",
                 fmt::format("expected a limit in (0, {}] (stb_image takes an int length), got {}", INT_MAX,
                             max_file_bytes));
  require_option(max_values > 0, path, "max_values", fmt::format("expected a positive limit, got {}", max_values));
}

namespace {

constexpr uint8_t kPng[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};

// The format from the magic bytes, or an error naming what the file seems to be.
ImageFormat sniff(const uint8_t* p, size_t n, const std::string& name) {
  if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) return ImageFormat::jpeg;
  if (n >= 8 && std::memcmp(p, kPng, 8) == 0) return ImageFormat::png;
  if (n >= 2 && p[0] == 'B' && p[1] == 'M') return ImageFormat::bmp;
  std::string seems;
  if (n >= 4 && std::memcmp(p, "GIF8", 4) == 0) seems = " (a GIF)";
  else if (n >= 12 && std::memcmp(p, "RIFF", 4) == 0 && std::memcmp(p + 8, "WEBP", 4) == 0) seems = " (a WebP)";
  else if (n >= 4 && (std::memcmp(p, "II*\0", 4) == 0 || std::memcmp(p, "MM\0*", 4) == 0)) seems = " (a TIFF)";
  std::string head;
  for (size_t i = 0; i < std::min<size_t>(n, 8); ++i) head += fmt::format("{}{:02x}", i == 0 ? "" : " ", p[i]);
  if (n == 0) throw FileError(name, "is empty; expected a JPEG, PNG or BMP file");
  throw FileError(name, fmt::format("is not a JPEG, PNG or BMP file: it starts with bytes {}{}", head, seems));
}

void check_size(const ImageInfo& info, const std::string& name, const ImageDecodeOptions& options) {
  // Each factor is below 2^24 (stb's STBI_MAX_DIMENSIONS) or tiny, so the product fits 64 bits.
  if (info.decoded_values() > options.max_values)
    throw FileError(name, fmt::format("is a {} image of {}x{} with {} channel{}{} ({} values decoded), more than the "
                                      "limit of {} (max_values)",
                                      to_string(info.format), info.width, info.height, info.channels,
                                      info.channels == 1 ? "" : "s", info.bits_per_channel == 16 ? " of 16 bits" : "",
                                      info.decoded_values(), options.max_values));
}

void check_file_size(const std::string& path, const ImageDecodeOptions& options, uintmax_t* size) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw FileError(path, "not found; expected a JPEG, PNG or BMP image");
  if (fs::is_directory(path, ec)) throw FileError(path, "is a directory; expected a JPEG, PNG or BMP image");
  *size = fs::file_size(path, ec);
  if (ec) throw FileError(path, fmt::format("cannot read the file size ({})", ec.message()));
  if (*size > static_cast<uintmax_t>(options.max_file_bytes))
    throw FileError(path, fmt::format("has {} bytes, more than the limit of {} (max_file_bytes)", *size,
                                      options.max_file_bytes));
}

// stb_image's BMP reader accepts a width or height of 0 and "decodes" an empty image, which no
// transform can use (found by fuzz/image_decode_fuzzer.cpp).
void check_not_empty(int width, int height, ImageFormat format, const std::string& name) {
  if (width < 1 || height < 1)
    throw FileError(name, fmt::format("has a corrupt {} header: an image of {}x{} pixels", to_string(format), width, height));
}

// Debian 12's stb_image (a 2022-09 snapshot; later versions refuse such a table themselves) builds
// each Huffman table of a JPEG's DHT segments from 16 code counts without checking that they sum
// to at most 256, the size of its table arrays: a larger sum writes past them, into the decoder's
// heap state (found by fuzz/image_decode_fuzzer.cpp). This walks the markers as stb_image does (segments skipped by
// their length, entropy-coded data and fill bytes byte by byte, DHT tables read on past a
// segment's end as stb_image reads them) and refuses such a table before stb_image sees the file.
void check_jpeg_huffman_tables(const uint8_t* data, size_t size, const std::string& name) {
  auto byte = [&](size_t at) -> size_t { return at < size ? data[at] : 0; };  // stb_image reads 0 past the end
  for (size_t at = 2; at + 1 < size;) {
    const size_t marker = data[at + 1];
    if (data[at] != 0xff || marker == 0xff) {  // entropy-coded data, or a fill byte before a marker
      ++at;
      continue;
    }
    if (marker == 0x00 || marker == 0x01 || (marker >= 0xd0 && marker <= 0xd8)) {  // stuffed 0xff, TEM, RSTn, SOI
      at += 2;
      continue;
    }
    if (marker == 0xd9) return;  // EOI
    const size_t length = byte(at + 2) << 8 | byte(at + 3);
    if (marker != 0xc4) {
      at += 2 + std::max<size_t>(length, 2);
      continue;
    }
    // As stb_image's DHT loop: tables until the segment's length is used up.
    size_t table = at + 4;
    for (int64_t left = static_cast<int64_t>(length) - 2; left > 0;) {
      size_t codes = 0;
      for (size_t i = 1; i <= 16; ++i) codes += byte(table + i);
      if (codes > 256)
        throw FileError(name, fmt::format("is a corrupt JPEG: the Huffman table at byte {} declares {} codes, more "
                                          "than the 256 a table can hold",
                                          table, codes));
      left -= static_cast<int64_t>(17 + codes);
      table += 17 + codes;
    }
    at = table;
  }
}

ImageInfo info_from_memory(const uint8_t* data, size_t size, const std::string& name) {
  ImageInfo info;
  info.format = sniff(data, size, name);
  if (info.format == ImageFormat::jpeg) check_jpeg_huffman_tables(data, size, name);
  int w = 0, h = 0, c = 0;
  if (stbi_info_from_memory(data, static_cast<int>(size), &w, &h, &c) == 0)
    throw FileError(name, fmt::format("has a corrupt {} header ({})", to_string(info.format), stbi_failure_reason()));
  check_not_empty(w, h, info.format, name);
  info.width = w;
  info.height = h;
  info.channels = c;
  info.bits_per_channel = stbi_is_16_bit_from_memory(data, static_cast<int>(size)) != 0 ? 16 : 8;
  return info;
}

}  // namespace

ImageInfo read_image_info(const std::string& path, const ImageDecodeOptions& options) {
  options.validate("");
  uintmax_t size = 0;
  check_file_size(path, options, &size);
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) throw FileError(path, "cannot be opened for reading");
  uint8_t head[12] = {};
  const size_t got = std::fread(head, 1, sizeof(head), file.get());
  ImageInfo info;
  info.format = sniff(head, got, path);
  if (info.format == ImageFormat::jpeg) {
    // The Huffman tables before the frame header are read too, and are checked first (above).
    file.reset();
    std::ifstream in(path, std::ios::binary);
    std::vector<uint8_t> bytes(static_cast<size_t>(size));
    if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size)))
      throw FileError(path, fmt::format("read failed after {} of {} bytes", in.gcount(), size));
    return info_from_memory(bytes.data(), bytes.size(), path);
  }
  std::rewind(file.get());
  int w = 0, h = 0, c = 0;
  if (stbi_info_from_file(file.get(), &w, &h, &c) == 0)
    throw FileError(path, fmt::format("has a corrupt {} header ({})", to_string(info.format), stbi_failure_reason()));
  check_not_empty(w, h, info.format, path);
  info.width = w;
  info.height = h;
  info.channels = c;
  info.bits_per_channel = stbi_is_16_bit_from_file(file.get()) != 0 ? 16 : 8;
  return info;
}

/// The PNG without its zero-length IDAT chunks (empty when it has none). They carry no data, but
/// stb_image copies a first one into its not yet allocated buffer: memcpy(NULL, ..., 0), undefined
/// behaviour (found by fuzz/image_decode_fuzzer.cpp). Chunks: length (4, big-endian), type (4),
/// data, CRC (4); a malformed tail is left to stb_image, which refuses it.
std::vector<uint8_t> png_without_empty_idat(const uint8_t* data, size_t size) {
  std::vector<uint8_t> out;
  size_t copied_until = 0;  // data[copied_until, at) is still to be copied
  bool found = false;
  for (size_t at = 8; at + 12 <= size;) {  // after the 8-byte signature
    const size_t length = size_t{data[at]} << 24 | size_t{data[at + 1]} << 16 | size_t{data[at + 2]} << 8 | data[at + 3];
    if (length > size - at - 12) break;
    if (length == 0 && std::memcmp(data + at + 4, "IDAT", 4) == 0) {
      found = true;
      out.insert(out.end(), data + copied_until, data + at);
      copied_until = at + 12;
    }
    at += 12 + length;
  }
  if (found) out.insert(out.end(), data + copied_until, data + size);
  return out;
}

at::Tensor decode_image_memory(const uint8_t* data, size_t size, const std::string& name,
                               const ImageDecodeOptions& options) {
  options.validate("");
  if (size > static_cast<size_t>(options.max_file_bytes))
    throw FileError(name, fmt::format("has {} bytes, more than the limit of {} (max_file_bytes)", size,
                                      options.max_file_bytes));
  const ImageInfo info = info_from_memory(data, size, name);
  check_size(info, name, options);
  int w = 0, h = 0, c = 0;
  std::vector<uint8_t> cleaned;
  if (info.format == ImageFormat::png) cleaned = png_without_empty_idat(data, size);
  if (!cleaned.empty()) {
    data = cleaned.data();
    size = cleaned.size();
  }
  // stb_image keeps its failure reason per thread, so decoding in parallel is safe.
  stbi_uc* pixels = stbi_load_from_memory(data, static_cast<int>(size), &w, &h, &c, 3);
  if (pixels == nullptr)
    throw FileError(name, fmt::format("cannot decode the {} image of {}x{} ({})", to_string(info.format), info.width,
                                      info.height, stbi_failure_reason()));
  std::unique_ptr<stbi_uc, void (*)(void*)> owned(pixels, &stbi_image_free);
  if (w != info.width || h != info.height)
    throw FileError(name, fmt::format("decoded to {}x{} but its header says {}x{}", w, h, info.width, info.height));
  const at::Tensor hwc = at::from_blob(pixels, {h, w, 3}, at::kByte);
  return hwc.permute({2, 0, 1}).contiguous();  // copies before `owned` frees the pixels
}

at::Tensor decode_image_file(const std::string& path, const ImageDecodeOptions& options) {
  options.validate("");
  uintmax_t size = 0;
  check_file_size(path, options, &size);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError(path, "cannot be opened for reading");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size)))
    throw FileError(path, fmt::format("read failed after {} of {} bytes", in.gcount(), size));
  return decode_image_memory(bytes.data(), bytes.size(), path, options);
}

}  // namespace clprompt
