#pragma once
// Batch transforms from uint8 [B, C, H, W] (C = 1 or 3) to normalised float [B, 3, S, S], with
// the augmentations of the reference L2P / DualPrompt / CODA-Prompt pipelines that matter for
// a fixed input size: resize, (padded) random or centre crop, horizontal flip.
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>

#include "clprompt/core/options.hpp"

namespace clprompt {

struct TransformOptions {
  int64_t resize = 0;          ///< bilinear resize to resize x resize first; 0 keeps the size
  int64_t crop_size = 0;       ///< 0 = no crop
  int64_t crop_padding = 0;    ///< zero padding before the random crop (CIFAR style); train only
  bool random_crop = false;    ///< train only; at test (or when false) a centre crop if crop_size > 0
  bool horizontal_flip = false;  ///< train only, p = 0.5 per sample
  std::vector<double> mean{0.485, 0.456, 0.406};  ///< ImageNet statistics; empty = no normalisation
  std::vector<double> std{0.229, 0.224, 0.225};

  static constexpr auto fields() {
    return std::tuple{field("resize", &TransformOptions::resize),
                      field("crop_size", &TransformOptions::crop_size),
                      field("crop_padding", &TransformOptions::crop_padding),
                      field("random_crop", &TransformOptions::random_crop),
                      field("horizontal_flip", &TransformOptions::horizontal_flip),
                      field("mean", &TransformOptions::mean),
                      field("std", &TransformOptions::std)};
  }
  void validate(const std::string& path) const;
};

/// Applies TransformOptions to a batch. Stateless apart from the options: randomness comes
/// from the generator passed in, so results depend only on the seed.
class Transform {
 public:
  /// Throws ConfigError for invalid options.
  explicit Transform(TransformOptions options = {});

  /// uint8 [B, C, H, W] -> float [B, 3, S, S]: grayscale expanded to 3 channels, scaled to
  /// [0, 1], resized, cropped, flipped, normalised. `train` enables the random crop and flip.
  /// Throws ShapeError for a wrong dtype or rank, or an image smaller than the crop.
  at::Tensor operator()(const at::Tensor& images_u8, bool train, at::Generator& generator) const;

  /// The output side for square inputs of side `input_size`.
  int64_t output_size(int64_t input_size) const;
  const TransformOptions& options() const { return options_; }

 private:
  TransformOptions options_;
};

namespace detail {

/// A uniform integer in [0, n) from a CPU generator (thread-safe).
int64_t uniform_index(at::Generator& generator, int64_t n);

}  // namespace detail

}  // namespace clprompt
