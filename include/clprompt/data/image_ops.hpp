#pragma once
// The image operations of the references' torchvision pipelines, with the rules of torchvision
// 0.13 (the version SLCA pins; l2p/dualprompt/CODA-Prompt use the same rules) applied to PIL
// images by Pillow 9.2 (l2p-pytorch requirements.txt):
//
//   train (L2P, DualPrompt: scale (0.05, 1); CODA-Prompt, SLCA, mammoth: (0.08, 1)):
//     RandomResizedCrop(224[, interpolation]) -> RandomHorizontalFlip -> [SLCA: ColorJitter(63/255)]
//   test: Resize(256[, bicubic]) -> CenterCrop(224)      (CODA-Prompt on CIFAR: Resize(224) only)
// SLCA's order (utils/data.py:56-65, composed by utils/data_manager.py:38 as train_trsf then
// common_trsf): on CIFAR-224 RandomResizedCrop(224, bicubic), RandomHorizontalFlip(),
// ColorJitter(brightness=63/255), then ToTensor and Normalize - the brightness blend acts on the
// resized, flipped uint8 image (PIL), before the division by 255 and the normalisation. Its
// ImageNet-R pipeline has no ColorJitter (:124-137).
//
// The random draws come from a RandomSource; TorchGeneratorSource draws from an at::Generator as
// torch's CPU kernels do, so a generator in the same state as torch's gives the same boxes and
// factors (RandomHorizontalFlip draws torch.rand(1) < p, transforms.py:707, which is
// uniform(0, 1) here).
//
//   CropBox box = random_resized_crop_box(h, w, RandomResizedCropOptions{}, source);
//   at::Tensor x = pil_resize(crop(image, box), 224, 224, Interpolation::bicubic);   // uint8
//
// Sources: torchvision 0.13 transforms/transforms.py (RandomResizedCrop.get_params :902-943,
// ColorJitter :1141-1247 with _check_input :1174 and get_params :1194-1223),
// transforms/functional.py (center_crop :509-547), transforms/functional_pil.py (resize
// :241-283, adjust_brightness :70-76); Pillow 9.2
// src/libImaging/Resample.c (filters :20-62, precompute_coeffs :181-266, normalize :268-282,
// 8-bit passes :285-459, ImagingResampleInner :615-708), Blend.c :49-76, PIL/ImageEnhance.py
// :25-36 and :74-87;
// LibTorch's CPU sampling: ATen/core/TransformationHelper.h uniform_real,
// DistributionsHelper.h uniform_int_from_to_distribution, native TensorFactories.cpp randperm_cpu.
#include <array>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "clprompt/core/options.hpp"

namespace clprompt {

/// PIL's BILINEAR (triangle filter, support 1) and BICUBIC (a = -0.5, support 2); both widen
/// the filter by the scale factor when downscaling (antialiasing), as Pillow does.
enum class Interpolation { bilinear, bicubic };
constexpr auto enum_names(Interpolation) {
  return std::array{std::pair{Interpolation::bilinear, "bilinear"}, std::pair{Interpolation::bicubic, "bicubic"}};
}

/// A crop in pixels: torchvision's (i, j, h, w).
struct CropBox {
  int64_t top = 0;
  int64_t left = 0;
  int64_t height = 0;
  int64_t width = 0;
  bool operator==(const CropBox&) const = default;
};

/// The random draws torchvision's transforms make, each as the torch call named.
class RandomSource {
 public:
  virtual ~RandomSource() = default;
  /// `torch.empty(1).uniform_(from, to).item()`: a float32 value in [from, to].
  virtual float uniform(float from, float to) = 0;
  /// `torch.randint(0, n, (1,)).item()` for n >= 1.
  virtual int64_t below(int64_t n) = 0;
  /// `torch.randperm(n)`.
  virtual std::vector<int64_t> permutation(int64_t n) = 0;
};

/// Draws from a CPU generator as LibTorch / PyTorch CPU kernels do: uniform_ on float32 takes the
/// low 24 bits of one 32-bit output, x * 2^-24 * (to - from) + from in float; randint takes one
/// 32-bit output modulo n (a 64-bit output when n >= 2^32); randperm(n) is the forward
/// Fisher-Yates swap of i with i + (32-bit output mod (n - i)). Holds a reference to the generator.
class TorchGeneratorSource final : public RandomSource {
 public:
  /// Throws Error unless `generator` is a CPU generator.
  explicit TorchGeneratorSource(at::Generator& generator);
  float uniform(float from, float to) override;
  int64_t below(int64_t n) override;
  std::vector<int64_t> permutation(int64_t n) override;

 private:
  at::Generator* generator_;
};

struct RandomResizedCropOptions {
  double scale_min = 0.08;  ///< torchvision's default scale (0.08, 1.0); L2P / DualPrompt use 0.05
  double scale_max = 1.0;
  double ratio_min = 3.0 / 4.0;
  double ratio_max = 4.0 / 3.0;

  /// l2p-pytorch / dualprompt-pytorch datasets.py:198-201: scale (0.05, 1.0).
  static RandomResizedCropOptions l2p() { return {.scale_min = 0.05}; }

  static constexpr auto fields() {
    return std::tuple{field("scale_min", &RandomResizedCropOptions::scale_min),
                      field("scale_max", &RandomResizedCropOptions::scale_max),
                      field("ratio_min", &RandomResizedCropOptions::ratio_min),
                      field("ratio_max", &RandomResizedCropOptions::ratio_max)};
  }
  /// Throws ConfigError unless 0 < scale_min <= scale_max and 0 < ratio_min <= ratio_max.
  void validate(const std::string& path) const;
};

/// torchvision's RandomResizedCrop.get_params for an image of height x width: up to 10 attempts
/// of target area = area * uniform(scale) and aspect = exp(uniform(log ratio)) (both draws
/// float32, log and exp in float32), w = round(sqrt(area * aspect)), h = round(sqrt(area /
/// aspect)) (half to even); the first attempt with 0 < w <= width and 0 < h <= height draws
/// top = randint(height - h + 1) and left = randint(width - w + 1). After 10 failures, the
/// fallback below. Throws ShapeError for an empty image, ConfigError for invalid options.
CropBox random_resized_crop_box(int64_t height, int64_t width, const RandomResizedCropOptions& options,
                                RandomSource& source);

/// The fallback of get_params (transforms.py:930-943): the whole image when its aspect ratio
/// width / height lies in [ratio_min, ratio_max], else the largest centred crop at the nearest
/// ratio limit (h = round(width / ratio_min) or w = round(height * ratio_max)), centred with
/// floor division.
CropBox random_resized_crop_fallback(int64_t height, int64_t width, double ratio_min, double ratio_max);

/// torchvision Resize(size) with an int size on a PIL image (functional_pil.py:258-271): the
/// shorter side becomes `size`, the longer int(size * long / short) (truncated). Returns
/// {height, width}. Throws ShapeError for sizes below 1.
std::array<int64_t, 2> resize_shorter_side_size(int64_t height, int64_t width, int64_t size);

/// torchvision CenterCrop's box when the crop fits (functional.py:545-547): top =
/// int(round((height - crop_height) / 2)), left likewise (half to even). Throws ShapeError when
/// the crop is larger than the image (center_crop() pads in that case).
CropBox center_crop_box(int64_t height, int64_t width, int64_t crop_height, int64_t crop_width);

/// `images`[..., top:top+height, left:left+width] (a view). Throws ShapeError when the box leaves
/// the image.
at::Tensor crop(const at::Tensor& images, const CropBox& box);

/// Pillow's Image.resize(size, BILINEAR or BICUBIC) of 8-bit images, bit for bit: coefficients
/// in double normalised to 22-bit fixed point, a horizontal pass (only over the rows the vertical
/// pass reads) rounded and clipped to uint8, then a vertical pass; a pass is skipped when its
/// size does not change. `images` is uint8 [C, H, W] or [B, C, H, W] (any C; each channel is
/// resized alone, as Pillow does per band). Throws ShapeError for another dtype or rank, or an
/// output size below 1.
at::Tensor pil_resize(const at::Tensor& images, int64_t height, int64_t width, Interpolation interpolation);

/// ATen's antialiased resize (at::_upsample_bilinear2d_aa / _upsample_bicubic2d_aa,
/// align_corners = false) of float [C, H, W] or [B, C, H, W] images: the same filters as Pillow
/// in floating point, without the 22-bit coefficients and the uint8 rounding between the two
/// passes; the output is not clamped. Throws ShapeError for a non-float input.
at::Tensor aa_resize(const at::Tensor& images, int64_t height, int64_t width, Interpolation interpolation);

/// torchvision Resize(size) on a PIL image: pil_resize to resize_shorter_side_size, or the image
/// itself when the size does not change.
at::Tensor resize_shorter_side(const at::Tensor& images_u8, int64_t size, Interpolation interpolation);

/// torchvision CenterCrop((crop_height, crop_width)) on [..., H, W] of any dtype: zero padding
/// first when the crop is larger than the image (left/top (crop - size) // 2, right/bottom
/// (crop - size + 1) // 2, functional.py:533-543), then center_crop_box.
at::Tensor center_crop(const at::Tensor& images, int64_t crop_height, int64_t crop_width);

/// torchvision RandomResizedCrop(size, scale, ratio, interpolation) on one uint8 [C, H, W]
/// image: random_resized_crop_box, crop, pil_resize to size x size.
at::Tensor random_resized_crop(const at::Tensor& image_u8, int64_t size, const RandomResizedCropOptions& options,
                               Interpolation interpolation, RandomSource& source);

/// ColorJitter(brightness=b)'s factor range [max(0, 1 - b), 1 + b] (transforms.py _check_input).
/// Throws ConfigError for b < 0.
std::array<double, 2> brightness_range(double brightness);

/// What ColorJitter(brightness=b).get_params draws: first torch.randperm(4) (the order of the
/// four adjustments, drawn even when only brightness is set), then the brightness factor as a
/// float32 uniform over brightness_range(b). Returns the factor.
float color_jitter_brightness(double brightness, RandomSource& source);

/// adjust_brightness as torchvision applies it. uint8 images: PIL's ImageEnhance.Brightness, a
/// blend with black in float32: trunc(factor * v), clipped to 255 when factor > 1 (Blend.c:49-76;
/// torchvision's tensor path gives the same values). Float images: clamp(factor * x, 0, 1).
/// Throws ShapeError for other dtypes, ConfigError for factor < 0.
at::Tensor adjust_brightness(const at::Tensor& images, float factor);

}  // namespace clprompt
