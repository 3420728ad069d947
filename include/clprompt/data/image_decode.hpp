#pragma once
// Bounded JPEG / PNG (and BMP) decoding with stb_image into uint8 [3, H, W].
//
//   at::Tensor rgb = decode_image_file("imagenet-r/n01443537/art_0.jpg");   // uint8 [3, H, W]
//
// The header is read first (stbi_info_from_memory / stbi_info_from_file) and an image whose
// width x height x channels (x 2 for 16-bit PNGs: the bytes stb_image allocates for the decoded
// pixels) exceeds `max_values` is refused before any pixel buffer exists; the file size is
// checked before the file is read. Only the JPEG, PNG and BMP decoders of stb_image are compiled
// in; the format is taken from the magic bytes, never from the file name.
//
// Colour conversion is what the references get from PIL's `Image.open(path).convert('RGB')`
// (CODA-Prompt dataloaders/dataloader.py:368-377, SLCA and torchvision's pil_loader): grey is
// replicated to R = G = B, alpha is dropped (not composited), palettes are expanded; 16-bit PNG
// channels keep their high byte.
// Not bit-identical to PIL: JPEG pixels come from stb_image's IDCT and chroma upsampling, not
// libjpeg(-turbo)'s, so they can differ by a few levels; 16-bit grey PNGs (PIL mode "I;16",
// which PIL's convert clips instead of shifting) and CMYK JPEGs (slightly different rounding).
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>

#include <ATen/ATen.h>

#include "clprompt/core/options.hpp"

namespace clprompt {

struct ImageDecodeOptions {
  /// Largest file read, in bytes (stb_image takes an int length, so at most 2^31 - 1).
  int64_t max_file_bytes = int64_t{256} << 20;
  /// Largest width x height x channels (x 2 for 16-bit PNGs) of an image to decode: by default
  /// an 8192 x 8192 RGB image.
  int64_t max_values = int64_t{8192} * 8192 * 3;

  static constexpr auto fields() {
    return std::tuple{field("max_file_bytes", &ImageDecodeOptions::max_file_bytes),
                      field("max_values", &ImageDecodeOptions::max_values)};
  }
  /// Throws ConfigError for a limit outside (0, 2^31 - 1] (file bytes) or <= 0 (values).
  void validate(const std::string& path) const;
};

enum class ImageFormat { jpeg, png, bmp };
constexpr auto enum_names(ImageFormat) {
  return std::array{std::pair{ImageFormat::jpeg, "jpeg"}, std::pair{ImageFormat::png, "png"},
                    std::pair{ImageFormat::bmp, "bmp"}};
}

/// What an image header says.
struct ImageInfo {
  ImageFormat format = ImageFormat::jpeg;
  int64_t width = 0;
  int64_t height = 0;
  int64_t channels = 0;        ///< in the file: 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA (or CMYK)
  int64_t bits_per_channel = 8;  ///< 16 for 16-bit PNGs
  /// The bytes stb_image allocates for the decoded pixels: width x height x channels x bits / 8.
  int64_t decoded_values() const { return width * height * channels * (bits_per_channel / 8); }
};

/// Reads only the header of `path`. Throws FileError naming the path when it is missing, larger
/// than max_file_bytes, not a JPEG / PNG / BMP file (the first bytes are named), or its header is
/// corrupt; ConfigError for invalid options.
ImageInfo read_image_info(const std::string& path, const ImageDecodeOptions& options = {});

/// Decodes `path` to uint8 [3, H, W] (see the file comment for the conversions). Throws FileError
/// naming the path and what was found when the file is missing, too large, not a JPEG / PNG /
/// BMP, larger than max_values once decoded, or cannot be decoded.
at::Tensor decode_image_file(const std::string& path, const ImageDecodeOptions& options = {});

/// As decode_image_file for bytes in memory; `name` stands for the file in error messages.
at::Tensor decode_image_memory(const uint8_t* data, size_t size, const std::string& name,
                               const ImageDecodeOptions& options = {});

}  // namespace clprompt
