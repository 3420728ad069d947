#pragma once
// A folder of images with one sub-folder per class, as ImageNet-R is distributed:
//   root/<class name>/<any path>/<file>.{jpg,jpeg,png,bmp}
// Class ids follow the sorted sub-folder names; files are decoded only when a batch asks for
// them, so a 30000-image dataset costs a list of paths until it is used.
#include <array>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "clprompt/core/options.hpp"
#include "clprompt/data/dataset.hpp"

namespace clprompt {

struct ImageFolderOptions {
  /// Every image is resized (bilinear) to decode_size x decode_size after decoding so batches
  /// stack; 0 keeps the decoded size, and then every image must have the size of the first in a
  /// batch of images() while the loader hands each image at its own size to the transforms (what
  /// the references' RandomResizedCrop and shorter-side resize expect).
  int64_t decode_size = 224;

  static constexpr auto fields() {
    return std::tuple{field("decode_size", &ImageFolderOptions::decode_size)};
  }
  void validate(const std::string& path) const {
    require_option(decode_size >= 0, path, "decode_size",
                   fmt::format("expected 0 (keep size) or a positive size, got {}", decode_size));
  }
};

/// Images decoded with stb_image (JPEG, PNG, BMP), always as 3 channels.
class ImageFolderDataset final : public Dataset {
 public:
  /// Lists `root`; throws FileError when it is missing, has no class folders or a class folder
  /// has no images, and ConfigError for invalid options.
  explicit ImageFolderDataset(const std::string& root, ImageFolderOptions options = {});

  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  int64_t num_classes() const override { return static_cast<int64_t>(class_names_.size()); }
  int64_t label(int64_t index) const override;
  std::vector<int64_t> labels() const override { return labels_; }
  /// Decodes the files in parallel (at::parallel_for); throws FileError naming an undecodable
  /// file, or with decode_size = 0 one whose size differs from the first image's.
  at::Tensor images(const std::vector<int64_t>& indices) const override;
  /// With decode_size = 0 the files decoded in parallel at their own size (what the transforms
  /// crop and resize); otherwise as images() resizes them.
  std::vector<at::Tensor> stored_images(const std::vector<int64_t>& indices) const override;
  std::array<int64_t, 3> image_shape() const override { return {3, height_, width_}; }
  std::vector<std::string> class_names() const override { return class_names_; }
  std::string description() const override;

  const std::string& root() const { return root_; }
  const std::vector<std::string>& files() const { return files_; }
  const ImageFolderOptions& options() const { return options_; }

 private:
  void scan();  // fills class_names_, files_, labels_

  std::string root_;
  ImageFolderOptions options_;
  std::vector<std::string> class_names_;
  std::vector<std::string> files_;  // sorted by class, then by path
  std::vector<int64_t> labels_;
  int64_t height_ = 0, width_ = 0;  // of every decoded image
};

namespace detail {

/// Bilinear resize (align_corners = false, no antialiasing) of uint8 [C, H, W] or [B, C, H, W].
at::Tensor resize_u8(const at::Tensor& images, int64_t height, int64_t width);

}  // namespace detail

}  // namespace clprompt
