// Bounded image decoding (include/clprompt/data/image_decode.hpp).
#include "clprompt/data/image_decode.hpp"

#include <climits>
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

ImageInfo info_from_memory(const uint8_t* data, size_t size, const std::string& name) {
  ImageInfo info;
  info.format = sniff(data, size, name);
  int w = 0, h = 0, c = 0;
  if (stbi_info_from_memory(data, static_cast<int>(size), &w, &h, &c) == 0)
    throw FileError(name, fmt::format("has a corrupt {} header ({})", to_string(info.format), stbi_failure_reason()));
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
  std::rewind(file.get());
  int w = 0, h = 0, c = 0;
  if (stbi_info_from_file(file.get(), &w, &h, &c) == 0)
    throw FileError(path, fmt::format("has a corrupt {} header ({})", to_string(info.format), stbi_failure_reason()));
  info.width = w;
  info.height = h;
  info.channels = c;
  info.bits_per_channel = stbi_is_16_bit_from_file(file.get()) != 0 ? 16 : 8;
  return info;
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
