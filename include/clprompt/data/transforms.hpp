#pragma once
// The input pipelines of the references, per image, as torchvision applies them to PIL images
// (data/image_ops.hpp has each operation with its source):
//
//   training:   [Resize((r, r))] -> crop -> [RandomHorizontalFlip] -> [ColorJitter(brightness)]
//               crop: RandomResizedCrop(size, scale, ratio)  (L2P, DualPrompt, CODA-Prompt, SLCA, STAR)
//                     RandomCrop(size, padding)               (CIFAR style; SLCA's CUB/Cars after Resize(300))
//                     none: Resize to size x size
//   evaluation: Resize(test_resize) (the shorter side, aspect kept; or square) -> CenterCrop(size)
//               or, with test_resize 0, Resize to size x size
//   then ToTensor (/255, grey -> 3 channels) and Normalize(mean, std) (none when mean is empty:
//   L2P, DualPrompt and CODA-Prompt feed [0, 1] images).
//
//   TransformOptions t{.size = 224, .train_crop = TrainCrop::random_resized, .horizontal_flip = true,
//                      .test_resize = 256, .test_interpolation = Interpolation::bicubic, .mean = {}, .std = {}};
// Random draws (crop boxes, flips, jitter factors) come from the generator handed in, as torch's
// CPU kernels draw them (TorchGeneratorSource), image after image.
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>

#include "clprompt/core/options.hpp"
#include "clprompt/data/image_ops.hpp"

namespace clprompt {

enum class TrainCrop { none, random_resized, random };
constexpr auto enum_names(TrainCrop) {
  return std::array{std::pair{TrainCrop::none, "none"}, std::pair{TrainCrop::random_resized, "random_resized"},
                    std::pair{TrainCrop::random, "random"}};
}

struct TransformOptions {
  int64_t size = 0;  ///< the side fed to the model; 0: the images' own (square images only)
  // --- training ---
  int64_t train_resize = 0;  ///< square Resize((r, r)) before the crop (SLCA CUB/Cars: 300); 0: none
  TrainCrop train_crop = TrainCrop::none;
  RandomResizedCropOptions random_resized_crop;  ///< scale and ratio of the RandomResizedCrop
  int64_t crop_padding = 0;                      ///< zero padding before a RandomCrop (CIFAR style)
  bool horizontal_flip = false;                  ///< p = 0.5 per image
  double brightness = 0.0;  ///< ColorJitter(brightness = b) after the flip (SLCA on CIFAR: 63/255); 0: off
  Interpolation train_interpolation = Interpolation::bilinear;  ///< of the crop's and train_resize's resize
  // --- evaluation ---
  /// Resize before CenterCrop(size): the shorter side to test_resize (torchvision Resize(int)),
  /// or a square with test_resize_square; 0: a square Resize to size (no crop).
  int64_t test_resize = 0;
  bool test_resize_square = false;
  Interpolation test_interpolation = Interpolation::bilinear;
  // --- both ---
  std::vector<double> mean{0.485, 0.456, 0.406};  ///< ImageNet statistics; empty = no normalisation
  std::vector<double> std{0.229, 0.224, 0.225};

  static constexpr auto fields() {
    using O = TransformOptions;
    return std::tuple{field("size", &O::size), field("train_resize", &O::train_resize),
                      field("train_crop", &O::train_crop), field("random_resized_crop", &O::random_resized_crop),
                      field("crop_padding", &O::crop_padding), field("horizontal_flip", &O::horizontal_flip),
                      field("brightness", &O::brightness), field("train_interpolation", &O::train_interpolation),
                      field("test_resize", &O::test_resize), field("test_resize_square", &O::test_resize_square),
                      field("test_interpolation", &O::test_interpolation), field("mean", &O::mean),
                      field("std", &O::std)};
  }
  void validate(const std::string& path) const;

  /// The training and evaluation pipelines scaled from a reference's 224 px to `side` (e.g. the
  /// embedded default's 28 px): RandomResizedCrop(side) and Resize(round(side · 256 / 224)) +
  /// CenterCrop(side), the same ratios.
  static TransformOptions scaled_reference(int64_t side, double scale_min = 0.08);
};

/// Applies TransformOptions image by image. Stateless apart from the options: randomness comes
/// from the generator passed in, so results depend only on the seed.
class Transform {
 public:
  /// Throws ConfigError for invalid options.
  explicit Transform(TransformOptions options = {});

  /// uint8 [C, H, W] images (C = 1 or 3, sizes may differ) -> float [B, 3, S, S]. `train`
  /// selects the training pipeline. Throws ShapeError for a wrong dtype or rank, images of
  /// different sizes with size 0, or an image smaller than a crop that needs it.
  at::Tensor operator()(const std::vector<at::Tensor>& images_u8, bool train, at::Generator& generator) const;
  /// The same for a batch uint8 [B, C, H, W].
  at::Tensor operator()(const at::Tensor& images_u8, bool train, at::Generator& generator) const;

  /// The output side for square inputs of side `input_size`.
  int64_t output_size(int64_t input_size) const { return options_.size > 0 ? options_.size : input_size; }
  const TransformOptions& options() const { return options_; }

 private:
  at::Tensor one(const at::Tensor& image_u8, bool train, RandomSource& source) const;
  TransformOptions options_;
};

}  // namespace clprompt
