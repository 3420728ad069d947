// Compiled part of include/clprompt/data/image_folder.hpp: image folders (root/<class>/*.jpg).
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "clprompt/data/image_decode.hpp"
#include "clprompt/data/image_folder.hpp"
#include "clprompt/io/file_bytes.hpp"

namespace fs = std::filesystem;

namespace clprompt {

namespace detail {

at::Tensor resize_u8(const at::Tensor& images, int64_t height, int64_t width) {
  const bool single = images.dim() == 3;
  if (images.size(-2) == height && images.size(-1) == width) return images;
  at::Tensor x = (single ? images.unsqueeze(0) : images).to(at::kFloat);
  x = at::upsample_bilinear2d(x, {height, width}, /*align_corners=*/false);
  x = x.round_().clamp_(0, 255).to(at::kByte);
  return single ? x.squeeze(0) : x;
}

}  // namespace detail

namespace {

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp";
}

bool is_hidden(const fs::path& p) { return p.filename().string().rfind('.', 0) == 0; }

}  // namespace

ImageFolderDataset::ImageFolderDataset(const std::string& root, ImageFolderOptions options)
    : root_(root), options_(options) {
  options_.validate("");
  std::error_code ec;
  if (!fs::exists(root, ec)) throw FileError(root, "not found; expected a directory with one sub-folder per class");
  if (!fs::is_directory(root, ec))
    throw FileError(root, "is not a directory; expected a directory with one sub-folder per class");
  try {
    scan();
  } catch (const fs::filesystem_error& e) {
    throw FileError(e.path1().empty() ? root : e.path1().string(),
                    fmt::format("cannot be listed ({})", e.code().message()));
  }
  if (options_.decode_size > 0) {
    height_ = width_ = options_.decode_size;
  } else {
    // Only the header is read: listing stays cheap.
    const auto info = read_image_info(files_.front());
    height_ = info.height;
    width_ = info.width;
  }
}

void ImageFolderDataset::scan() {
  std::vector<fs::path> class_dirs;
  for (const auto& entry : fs::directory_iterator(root_))
    if (entry.is_directory() && !is_hidden(entry.path())) class_dirs.push_back(entry.path());
  std::sort(class_dirs.begin(), class_dirs.end());
  if (class_dirs.empty()) throw FileError(root_, "has no class sub-folders; expected one sub-folder per class");
  for (size_t c = 0; c < class_dirs.size(); ++c) {
    std::vector<std::string> found;
    for (const auto& entry : fs::recursive_directory_iterator(class_dirs[c], fs::directory_options::follow_directory_symlink))
      if (entry.is_regular_file() && is_image_file(entry.path()) && !is_hidden(entry.path()))
        found.push_back(entry.path().string());
    if (found.empty())
      throw FileError(class_dirs[c].string(), "class folder has no images; expected .jpg, .jpeg, .png or .bmp files");
    std::sort(found.begin(), found.end());
    class_names_.push_back(class_dirs[c].filename().string());
    for (auto& f : found) {
      files_.push_back(std::move(f));
      labels_.push_back(static_cast<int64_t>(c));
    }
  }
}

int64_t ImageFolderDataset::label(int64_t index) const {
  if (index < 0 || index >= size())
    throw ShapeError(fmt::format("{}: index {} is outside [0, {})", description(), index, size()));
  return labels_[static_cast<size_t>(index)];
}

at::Tensor ImageFolderDataset::images(const std::vector<int64_t>& indices) const {
  detail::check_indices(indices, size(), description());
  const auto batch = static_cast<int64_t>(indices.size());
  at::Tensor out = at::empty({batch, 3, height_, width_}, at::kByte);
  uint8_t* dst = out.data_ptr<uint8_t>();
  const int64_t image_bytes = 3 * height_ * width_;
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const std::string& file = files_[static_cast<size_t>(indices[static_cast<size_t>(i)])];
      at::Tensor image = decode_image_file(file);  // bounded: size limits checked before decoding
      if (options_.decode_size > 0) {
        image = detail::resize_u8(image, height_, width_).contiguous();
      } else if (image.size(1) != height_ || image.size(2) != width_) {
        throw FileError(file, fmt::format("is {}x{} but decode_size = 0 needs every image to be {}x{} like {}",
                                          image.size(2), image.size(1), width_, height_, files_.front()));
      }
      std::memcpy(dst + i * image_bytes, image.data_ptr<uint8_t>(), static_cast<size_t>(image_bytes));
    }
  });
  return out;
}

std::vector<at::Tensor> ImageFolderDataset::stored_images(const std::vector<int64_t>& indices) const {
  if (options_.decode_size > 0) return Dataset::stored_images(indices);  // resized as decode_size asks
  detail::check_indices(indices, size(), description());
  std::vector<at::Tensor> out(indices.size());
  at::parallel_for(0, static_cast<int64_t>(indices.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[static_cast<size_t>(i)] = decode_image_file(files_[static_cast<size_t>(indices[static_cast<size_t>(i)])]);
  });
  return out;
}

std::string ImageFolderDataset::description() const {
  return fmt::format("image folder {} ({} images, {} classes, {} {}x{}x3)", root_, files_.size(), class_names_.size(),
                     options_.decode_size > 0 ? "decoded to" : "all", width_, height_);
}


}  // namespace clprompt
