// Compiled part of include/clprompt/data/transforms.hpp: the per-image pipelines.
#include "clprompt/data/transforms.hpp"

#include <cmath>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>

namespace clprompt {

void TransformOptions::validate(const std::string& path) const {
  require_option(size >= 0, path, "size", fmt::format("expected 0 (the images' own) or a positive size, got {}", size));
  require_option(train_resize >= 0, path, "train_resize", fmt::format("expected >= 0, got {}", train_resize));
  require_option(crop_padding >= 0, path, "crop_padding", fmt::format("expected >= 0, got {}", crop_padding));
  require_option(train_crop == TrainCrop::none || size > 0, path, "train_crop",
                 "a random crop needs the output size: set size");
  require_option(crop_padding == 0 || train_crop == TrainCrop::random, path, "crop_padding",
                 "only pads before a RandomCrop; set train_crop = random or crop_padding = 0");
  random_resized_crop.validate(detail::join_path(path, "random_resized_crop"));
  require_option(brightness >= 0 && std::isfinite(brightness), path, "brightness",
                 fmt::format("expected a finite number >= 0, got {}", brightness));
  require_option(test_resize >= 0, path, "test_resize", fmt::format("expected >= 0, got {}", test_resize));
  require_option(test_resize == 0 || size > 0, path, "test_resize", "a centre crop needs the output size: set size");
  require_option(mean.empty() || mean.size() == 3, path, "mean",
                 fmt::format("expected 3 values (R, G, B) or none, got {}", mean.size()));
  require_option(std.size() == mean.size(), path, "std",
                 fmt::format("expected as many values as mean ({}), got {}", mean.size(), std.size()));
  for (size_t i = 0; i < std.size(); ++i)
    require_option(std[i] > 0, path, fmt::format("std[{}]", i), fmt::format("expected > 0, got {}", std[i]));
}

TransformOptions TransformOptions::scaled_reference(int64_t side, double scale_min) {
  TransformOptions t;
  t.size = side;
  t.train_crop = TrainCrop::random_resized;
  t.random_resized_crop.scale_min = scale_min;
  t.horizontal_flip = true;
  t.test_resize = static_cast<int64_t>(std::lround(static_cast<double>(side) * 256.0 / 224.0));
  return t;
}

Transform::Transform(TransformOptions options) : options_(std::move(options)) { options_.validate(""); }

namespace {

at::Tensor resize_square(const at::Tensor& image, int64_t side, Interpolation interpolation) {
  if (image.size(-2) == side && image.size(-1) == side) return image;
  return pil_resize(image, side, side, interpolation);
}

}  // namespace

at::Tensor Transform::one(const at::Tensor& image_u8, bool train, RandomSource& source) const {
  if (!image_u8.defined() || image_u8.scalar_type() != at::kByte || image_u8.dim() != 3 ||
      (image_u8.size(0) != 1 && image_u8.size(0) != 3))
    throw ShapeError(fmt::format("Transform: expected uint8 [C, H, W] images with C = 1 or 3, got {} {}",
                                 image_u8.defined() ? std::string(c10::toString(image_u8.scalar_type())) : "undefined",
                                 image_u8.defined() ? c10::str(image_u8.sizes()) : "[]"));
  const auto& o = options_;
  at::Tensor x = image_u8;
  if (train) {
    if (o.train_resize > 0) x = resize_square(x, o.train_resize, o.train_interpolation);
    switch (o.train_crop) {
      case TrainCrop::random_resized:
        x = random_resized_crop(x, o.size, o.random_resized_crop, o.train_interpolation, source);
        break;
      case TrainCrop::random: {
        // torchvision RandomCrop(size, padding): pad, then i = randint(h - size + 1), j = randint(w - size + 1).
        if (o.crop_padding > 0) x = at::constant_pad_nd(x, {o.crop_padding, o.crop_padding, o.crop_padding, o.crop_padding}, 0);
        const int64_t h = x.size(1), w = x.size(2);
        if (o.size > h || o.size > w)
          throw ShapeError(fmt::format("Transform: a RandomCrop of {} does not fit the {}x{} image", o.size, w, h));
        const int64_t top = source.below(h - o.size + 1), left = source.below(w - o.size + 1);
        x = crop(x, {top, left, o.size, o.size});
        break;
      }
      case TrainCrop::none:
        if (o.size > 0) x = resize_square(x, o.size, o.train_interpolation);
        break;
    }
    if (o.horizontal_flip && source.uniform(0.0f, 1.0f) < 0.5f) x = x.flip({2});  // torch.rand(1) < p
    if (o.brightness > 0) x = adjust_brightness(x, color_jitter_brightness(o.brightness, source));
  } else if (o.test_resize > 0) {
    x = o.test_resize_square ? resize_square(x, o.test_resize, o.test_interpolation)
                             : resize_shorter_side(x, o.test_resize, o.test_interpolation);
    x = center_crop(x, o.size, o.size);
  } else if (o.size > 0) {
    x = resize_square(x, o.size, o.test_interpolation);
  }
  return x;
}

at::Tensor Transform::operator()(const std::vector<at::Tensor>& images_u8, bool train, at::Generator& generator) const {
  TorchGeneratorSource source(generator);
  std::vector<at::Tensor> out;
  out.reserve(images_u8.size());
  for (const auto& image : images_u8) {
    auto x = one(image, train, source);
    if (!out.empty() && (x.size(1) != out.front().size(1) || x.size(2) != out.front().size(2)))
      throw ShapeError(fmt::format("Transform: images come out at {} and {}; set size to feed the model one size",
                                   c10::str(out.front().sizes()), c10::str(x.sizes())));
    out.push_back(x);
  }
  if (out.empty()) {
    const int64_t side = options_.size;
    return at::empty({0, 3, side, side}, at::kFloat);
  }
  at::Tensor x = at::stack(out).to(at::kFloat).div_(255.0);
  if (x.size(1) == 1) x = x.expand({x.size(0), 3, x.size(2), x.size(3)});
  if (!options_.mean.empty()) {
    const at::Tensor mean = at::tensor(options_.mean, at::kDouble).to(at::kFloat).view({1, 3, 1, 1});
    const at::Tensor std = at::tensor(options_.std, at::kDouble).to(at::kFloat).view({1, 3, 1, 1});
    x = (x - mean).div_(std);
  }
  return x.contiguous();
}

at::Tensor Transform::operator()(const at::Tensor& images_u8, bool train, at::Generator& generator) const {
  if (!images_u8.defined() || images_u8.dim() != 4)
    throw ShapeError(fmt::format("Transform: expected uint8 [B, C, H, W] images, got {}",
                                 images_u8.defined() ? c10::str(images_u8.sizes()) : "undefined"));
  std::vector<at::Tensor> images;
  images.reserve(static_cast<size_t>(images_u8.size(0)));
  for (int64_t b = 0; b < images_u8.size(0); ++b) images.push_back(images_u8[b]);
  return (*this)(images, train, generator);
}

}  // namespace clprompt
