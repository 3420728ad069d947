// Compiled part of include/clprompt/data/transforms.hpp: batch transforms.
#include <cmath>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <ATen/CPUGeneratorImpl.h>

#include "clprompt/data/transforms.hpp"

namespace clprompt {

void TransformOptions::validate(const std::string& path) const {
  require_option(resize >= 0, path, "resize", fmt::format("expected 0 (keep) or a positive size, got {}", resize));
  require_option(crop_size >= 0, path, "crop_size", fmt::format("expected 0 (no crop) or a positive size, got {}", crop_size));
  require_option(crop_padding >= 0, path, "crop_padding", fmt::format("expected >= 0, got {}", crop_padding));
  require_option(!random_crop || crop_size > 0, path, "random_crop", "needs crop_size > 0");
  require_option(crop_padding == 0 || random_crop, path, "crop_padding",
                 "only pads before a random crop; set random_crop = true or crop_padding = 0");
  require_option(mean.empty() || mean.size() == 3, path, "mean",
                 fmt::format("expected 3 values (R, G, B) or none, got {}", mean.size()));
  require_option(std.size() == mean.size(), path, "std",
                 fmt::format("expected as many values as mean ({}), got {}", mean.size(), std.size()));
  for (size_t i = 0; i < std.size(); ++i)
    require_option(std[i] > 0, path, fmt::format("std[{}]", i), fmt::format("expected > 0, got {}", std[i]));
}

namespace detail {

int64_t uniform_index(at::Generator& generator, int64_t n) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  auto* impl = at::check_generator<at::CPUGeneratorImpl>(generator);
  // Modulo bias is below 2^-40 for any image-sized n.
  return static_cast<int64_t>(impl->random64() % static_cast<uint64_t>(n));
}

}  // namespace detail

Transform::Transform(TransformOptions options) : options_(std::move(options)) { options_.validate(""); }

int64_t Transform::output_size(int64_t input_size) const {
  const int64_t resized = options_.resize > 0 ? options_.resize : input_size;
  return options_.crop_size > 0 ? options_.crop_size : resized;
}

at::Tensor Transform::operator()(const at::Tensor& images_u8, bool train, at::Generator& generator) const {
  if (!images_u8.defined() || images_u8.scalar_type() != at::kByte || images_u8.dim() != 4 ||
      (images_u8.size(1) != 1 && images_u8.size(1) != 3))
    throw ShapeError(fmt::format("Transform: expected uint8 [B, C, H, W] images with C = 1 or 3, got {} {}",
                                 images_u8.defined() ? std::string(c10::toString(images_u8.scalar_type())) : "undefined",
                                 images_u8.defined() ? c10::str(images_u8.sizes()) : "[]"));
  const int64_t batch = images_u8.size(0);
  at::Tensor x = images_u8;
  // Resizing needs floats; cropping and flipping only move bytes, so they stay uint8 otherwise.
  if (options_.resize > 0 && (x.size(2) != options_.resize || x.size(3) != options_.resize))
    x = at::upsample_bilinear2d(x.to(at::kFloat).div_(255.0), {options_.resize, options_.resize}, false);

  const int64_t crop = options_.crop_size;
  if (crop > 0) {
    const bool random = train && options_.random_crop;
    const int64_t pad = random ? options_.crop_padding : 0;
    if (pad > 0) x = at::constant_pad_nd(x, {pad, pad, pad, pad}, 0);
    const int64_t h = x.size(2), w = x.size(3);
    if (crop > h || crop > w)
      throw ShapeError(fmt::format("Transform: crop_size {} is larger than the {}x{} image{}", crop, w, h,
                                   options_.resize > 0 || pad > 0 ? " (after resize and padding)" : ""));
    if (random) {
      std::vector<at::Tensor> crops;
      crops.reserve(static_cast<size_t>(batch));
      for (int64_t b = 0; b < batch; ++b) {
        const int64_t top = detail::uniform_index(generator, h - crop + 1);
        const int64_t left = detail::uniform_index(generator, w - crop + 1);
        crops.push_back(x[b].narrow(1, top, crop).narrow(2, left, crop));
      }
      x = batch > 0 ? at::stack(crops) : x.narrow(2, 0, crop).narrow(3, 0, crop);
    } else {
      // Same rounding as torchvision's center_crop: round((h - crop) / 2), half to even.
      const auto top = static_cast<int64_t>(std::nearbyint(static_cast<double>(h - crop) / 2.0));
      const auto left = static_cast<int64_t>(std::nearbyint(static_cast<double>(w - crop) / 2.0));
      x = x.narrow(2, top, crop).narrow(3, left, crop);
    }
  }

  if (train && options_.horizontal_flip) {
    std::vector<int64_t> flipped;
    for (int64_t b = 0; b < batch; ++b)
      if (detail::uniform_index(generator, 2) == 1) flipped.push_back(b);
    if (!flipped.empty()) {
      const at::Tensor index = at::tensor(flipped, at::kLong);
      // Out of place: x may still be the caller's tensor.
      x = x.index_copy(0, index, x.index_select(0, index).flip({3}));
    }
  }

  if (x.scalar_type() == at::kByte) x = x.to(at::kFloat).div_(255.0);
  if (x.size(1) == 1) x = x.expand({x.size(0), 3, x.size(2), x.size(3)});
  if (!options_.mean.empty()) {
    const at::Tensor mean = at::tensor(options_.mean, at::kDouble).to(at::kFloat).view({1, 3, 1, 1});
    const at::Tensor std = at::tensor(options_.std, at::kDouble).to(at::kFloat).view({1, 3, 1, 1});
    x = (x - mean).div_(std);
  }
  return x.contiguous();
}


}  // namespace clprompt
