// torchvision / Pillow image operations (include/clprompt/data/image_ops.hpp).
#include "clprompt/data/image_ops.hpp"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <numeric>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include "clprompt/core/error.hpp"

namespace clprompt {

// ---- random draws -------------------------------------------------------------------------

TorchGeneratorSource::TorchGeneratorSource(at::Generator& generator) : generator_(&generator) {
  if (!generator.defined() || generator.device().type() != at::kCPU)
    throw Error("TorchGeneratorSource: expected a CPU generator");
}

float TorchGeneratorSource::uniform(float from, float to) {
  std::lock_guard<std::mutex> lock(generator_->mutex());
  auto* impl = at::check_generator<at::CPUGeneratorImpl>(*generator_);
  // TransformationHelper.h uniform_real<float>: 24 random bits, then x * (to - from) + from in
  // float, which the compiler contracts to one fused multiply-add in the AVX2 kernels that
  // LibTorch and PyTorch run on x86-64 (checked against at::Tensor::uniform_ in the tests).
  const float x = static_cast<float>(impl->random() & ((uint32_t{1} << 24) - 1)) * (1.0f / 16777216.0f);
  return std::fma(x, to - from, from);
}

int64_t TorchGeneratorSource::below(int64_t n) {
  if (n < 1) throw Error(fmt::format("TorchGeneratorSource::below: expected n >= 1, got {}", n));
  std::lock_guard<std::mutex> lock(generator_->mutex());
  auto* impl = at::check_generator<at::CPUGeneratorImpl>(*generator_);
  const auto range = static_cast<uint64_t>(n);
  // DistributionsHelper.h uniform_int_from_to_distribution: 64-bit draws only for ranges >= 2^32.
  const uint64_t v = range >= (uint64_t{1} << 32) ? impl->random64() : impl->random();
  return static_cast<int64_t>(v % range);
}

std::vector<int64_t> TorchGeneratorSource::permutation(int64_t n) {
  if (n < 0) throw Error(fmt::format("TorchGeneratorSource::permutation: expected n >= 0, got {}", n));
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  std::lock_guard<std::mutex> lock(generator_->mutex());
  auto* impl = at::check_generator<at::CPUGeneratorImpl>(*generator_);
  // TensorFactories.cpp randperm_cpu (n below 2^32 / 20 keeps this form in every torch version).
  for (int64_t i = 0; i < n - 1; ++i) {
    const auto z = static_cast<int64_t>(impl->random() % static_cast<uint64_t>(n - i));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(z + i)]);
  }
  return p;
}

// ---- geometry -------------------------------------------------------------------------------

void RandomResizedCropOptions::validate(const std::string& path) const {
  require_option(scale_min > 0 && scale_min <= scale_max, path, "scale_min",
                 fmt::format("expected 0 < scale_min <= scale_max, got {} and {}", scale_min, scale_max));
  require_option(scale_max <= 1.0, path, "scale_max", fmt::format("expected at most 1, got {}", scale_max));
  require_option(ratio_min > 0 && ratio_min <= ratio_max, path, "ratio_min",
                 fmt::format("expected 0 < ratio_min <= ratio_max, got {} and {}", ratio_min, ratio_max));
}

namespace {

// Python's int(round(x)) for the non-negative values here: round half to even.
int64_t round_half_even(double x) { return static_cast<int64_t>(std::nearbyint(x)); }

// Python's floor division a // b for b > 0.
int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

void check_image(const at::Tensor& images, const char* what, bool need_u8) {
  if (!images.defined() || images.dim() < 3 || images.dim() > 4 || (need_u8 && images.scalar_type() != at::kByte))
    throw ShapeError(fmt::format("{}: expected {}[C, H, W] or [B, C, H, W] images, got {} {}", what,
                                 need_u8 ? "uint8 " : "",
                                 images.defined() ? std::string(c10::toString(images.scalar_type())) : "undefined",
                                 images.defined() ? c10::str(images.sizes()) : "[]"));
}

}  // namespace

CropBox random_resized_crop_fallback(int64_t height, int64_t width, double ratio_min, double ratio_max) {
  const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
  int64_t w = width, h = height;
  if (in_ratio < ratio_min) {
    h = round_half_even(static_cast<double>(w) / ratio_min);
  } else if (in_ratio > ratio_max) {
    w = round_half_even(static_cast<double>(h) * ratio_max);
  }
  return {floor_div(height - h, 2), floor_div(width - w, 2), h, w};
}

CropBox random_resized_crop_box(int64_t height, int64_t width, const RandomResizedCropOptions& options,
                                RandomSource& source) {
  options.validate("");
  if (height < 1 || width < 1)
    throw ShapeError(fmt::format("random_resized_crop_box: the image is {}x{}; expected at least 1x1", width, height));
  const auto area = static_cast<double>(height * width);
  // torch.log(torch.tensor(ratio)): float32 values, float32 log.
  const float log_min = std::log(static_cast<float>(options.ratio_min));
  const float log_max = std::log(static_cast<float>(options.ratio_max));
  for (int attempt = 0; attempt < 10; ++attempt) {
    const float scale = source.uniform(static_cast<float>(options.scale_min), static_cast<float>(options.scale_max));
    const double target_area = area * static_cast<double>(scale);
    const auto aspect = static_cast<double>(std::exp(source.uniform(log_min, log_max)));
    const int64_t w = round_half_even(std::sqrt(target_area * aspect));
    const int64_t h = round_half_even(std::sqrt(target_area / aspect));
    if (0 < w && w <= width && 0 < h && h <= height) {
      const int64_t top = source.below(height - h + 1);
      const int64_t left = source.below(width - w + 1);
      return {top, left, h, w};
    }
  }
  return random_resized_crop_fallback(height, width, std::min(options.ratio_min, options.ratio_max),
                                      std::max(options.ratio_min, options.ratio_max));
}

std::array<int64_t, 2> resize_shorter_side_size(int64_t height, int64_t width, int64_t size) {
  if (size < 1 || height < 1 || width < 1)
    throw ShapeError(fmt::format("resize_shorter_side_size: expected positive sizes, got a {}x{} image and size {}",
                                 width, height, size));
  const int64_t shorter = std::min(width, height), longer = std::max(width, height);
  // int(size * long / short): Python evaluates size * long exactly, then a double division.
  const auto new_long = static_cast<int64_t>(static_cast<double>(size * longer) / static_cast<double>(shorter));
  return width <= height ? std::array<int64_t, 2>{new_long, size} : std::array<int64_t, 2>{size, new_long};
}

CropBox center_crop_box(int64_t height, int64_t width, int64_t crop_height, int64_t crop_width) {
  if (crop_height < 1 || crop_width < 1 || crop_height > height || crop_width > width)
    throw ShapeError(fmt::format("center_crop_box: a {}x{} crop does not fit a {}x{} image (center_crop pads instead)",
                                 crop_width, crop_height, width, height));
  return {round_half_even(static_cast<double>(height - crop_height) / 2.0),
          round_half_even(static_cast<double>(width - crop_width) / 2.0), crop_height, crop_width};
}

at::Tensor crop(const at::Tensor& images, const CropBox& box) {
  if (!images.defined() || images.dim() < 2)
    throw ShapeError("crop: expected images [..., H, W]");
  const int64_t h = images.size(-2), w = images.size(-1);
  if (box.top < 0 || box.left < 0 || box.height < 1 || box.width < 1 || box.top + box.height > h ||
      box.left + box.width > w)
    throw ShapeError(fmt::format("crop: the box (top {}, left {}, {}x{}) leaves the {}x{} image", box.top, box.left,
                                 box.width, box.height, w, h));
  return images.narrow(-2, box.top, box.height).narrow(-1, box.left, box.width);
}

// ---- Pillow's resampling --------------------------------------------------------------------

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Resample.c PRECISION_BITS

double bilinear_filter(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// One axis: per output pixel the first input index, the tap count and 22-bit coefficients.
struct Taps {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> k;  // out_size * ksize
};

// Resample.c precompute_coeffs + normalize_coeffs_8bpc for the box [0, in_size).
Taps precompute(int in_size, int out_size, Interpolation interpolation) {
  const double support_1 = interpolation == Interpolation::bilinear ? 1.0 : 2.0;
  double (*filter)(double) = interpolation == Interpolation::bilinear ? &bilinear_filter : &bicubic_filter;
  const float in0 = 0.0f, in1 = static_cast<float>(in_size);
  const double scale = static_cast<double>(in1 - in0) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = support_1 * filterscale;
  Taps t;
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(static_cast<size_t>(out_size));
  t.count.resize(static_cast<size_t>(out_size));
  t.k.assign(static_cast<size_t>(out_size) * static_cast<size_t>(t.ksize), 0);
  std::vector<double> w(static_cast<size_t>(t.ksize));
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      w[static_cast<size_t>(x)] = filter((x + xmin - center + 0.5) * ss);
      ww += w[static_cast<size_t>(x)];
    }
    for (int x = 0; x < xmax; ++x) {
      double v = w[static_cast<size_t>(x)];
      if (ww != 0.0) v /= ww;
      const double fixed = v * (1 << kPrecisionBits);
      t.k[static_cast<size_t>(xx) * t.ksize + x] = static_cast<int32_t>(v < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    t.first[static_cast<size_t>(xx)] = xmin;
    t.count[static_cast<size_t>(xx)] = xmax;
  }
  return t;
}

// Resample.c clip8: the rounded fixed-point sum, arithmetic shift, clamped to [0, 255].
inline uint8_t clip8(int32_t ss) {
  const int32_t v = ss >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// One channel plane [h, w] (row stride `in_stride`) -> [out_h, out_w].
void resample_plane(const uint8_t* in, int64_t in_stride, int in_w, uint8_t* out, int out_h, int out_w,
                    const Taps& horizontal, const Taps& vertical, bool need_h, bool need_v) {
  // ImagingResampleInner: the horizontal pass covers only rows [first_row, last_row) that the
  // vertical pass reads, into a uint8 buffer.
  std::vector<uint8_t> temp;
  const uint8_t* src = in;
  int64_t src_stride = in_stride;
  int row_offset = 0;
  if (need_h) {
    const int first_row = vertical.first.front();
    const int last_row = vertical.first.back() + vertical.count.back();
    temp.resize(static_cast<size_t>(last_row - first_row) * static_cast<size_t>(out_w));
    for (int yy = 0; yy < last_row - first_row; ++yy) {
      const uint8_t* row = in + (yy + first_row) * in_stride;
      for (int xx = 0; xx < out_w; ++xx) {
        const int32_t* k = &horizontal.k[static_cast<size_t>(xx) * horizontal.ksize];
        const int xmin = horizontal.first[static_cast<size_t>(xx)], xmax = horizontal.count[static_cast<size_t>(xx)];
        int32_t ss = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < xmax; ++x) ss += static_cast<int32_t>(row[x + xmin]) * k[x];
        temp[static_cast<size_t>(yy) * out_w + xx] = clip8(ss);
      }
    }
    src = temp.data();
    src_stride = out_w;
    row_offset = first_row;
  }
  const int width = need_h ? out_w : in_w;
  if (need_v) {
    for (int yy = 0; yy < out_h; ++yy) {
      const int32_t* k = &vertical.k[static_cast<size_t>(yy) * vertical.ksize];
      const int ymin = vertical.first[static_cast<size_t>(yy)] - row_offset, ymax = vertical.count[static_cast<size_t>(yy)];
      for (int xx = 0; xx < width; ++xx) {
        int32_t ss = 1 << (kPrecisionBits - 1);
        for (int y = 0; y < ymax; ++y) ss += static_cast<int32_t>(src[(y + ymin) * src_stride + xx]) * k[y];
        out[static_cast<int64_t>(yy) * out_w + xx] = clip8(ss);
      }
    }
  } else {
    for (int yy = 0; yy < out_h; ++yy)
      std::copy_n(src + yy * src_stride, width, out + static_cast<int64_t>(yy) * out_w);
  }
}

}  // namespace

at::Tensor pil_resize(const at::Tensor& images, int64_t height, int64_t width, Interpolation interpolation) {
  check_image(images, "pil_resize", /*need_u8=*/true);
  if (height < 1 || width < 1)
    throw ShapeError(fmt::format("pil_resize: expected an output size of at least 1x1, got {}x{}", width, height));
  const bool single = images.dim() == 3;
  const at::Tensor x = (single ? images.unsqueeze(0) : images).contiguous();
  const int64_t batch = x.size(0), channels = x.size(1), in_h = x.size(2), in_w = x.size(3);
  if (in_h < 1 || in_w < 1) throw ShapeError("pil_resize: the input image is empty");
  if (in_h > INT32_MAX / 4 || in_w > INT32_MAX / 4 || height > INT32_MAX / 4 || width > INT32_MAX / 4)
    throw ShapeError("pil_resize: image sides must stay below 2^29");
  // Image.resize returns a copy when nothing changes (Image.py resize).
  if (in_h == height && in_w == width) return images.clone();
  const bool need_h = in_w != width, need_v = in_h != height;
  const Taps horizontal = precompute(static_cast<int>(in_w), static_cast<int>(width), interpolation);
  const Taps vertical = precompute(static_cast<int>(in_h), static_cast<int>(height), interpolation);
  at::Tensor out = at::empty({batch, channels, height, width}, at::kByte);
  const uint8_t* src = x.data_ptr<uint8_t>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  at::parallel_for(0, batch * channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p)
      resample_plane(src + p * in_h * in_w, in_w, static_cast<int>(in_w),
                     dst + p * height * width, static_cast<int>(height), static_cast<int>(width), horizontal, vertical,
                     need_h, need_v);
  });
  return single ? out.squeeze(0) : out;
}

at::Tensor aa_resize(const at::Tensor& images, int64_t height, int64_t width, Interpolation interpolation) {
  check_image(images, "aa_resize", /*need_u8=*/false);
  if (!at::isFloatingType(images.scalar_type()))
    throw ShapeError(fmt::format("aa_resize: expected float images, got {}", images.scalar_type()));
  if (height < 1 || width < 1)
    throw ShapeError(fmt::format("aa_resize: expected an output size of at least 1x1, got {}x{}", width, height));
  const bool single = images.dim() == 3;
  const at::Tensor x = single ? images.unsqueeze(0) : images;
  at::Tensor y = interpolation == Interpolation::bilinear
                     ? at::_upsample_bilinear2d_aa(x, {height, width}, /*align_corners=*/false)
                     : at::_upsample_bicubic2d_aa(x, {height, width}, /*align_corners=*/false);
  return single ? y.squeeze(0) : y;
}

at::Tensor resize_shorter_side(const at::Tensor& images_u8, int64_t size, Interpolation interpolation) {
  check_image(images_u8, "resize_shorter_side", /*need_u8=*/true);
  const auto [h, w] = resize_shorter_side_size(images_u8.size(-2), images_u8.size(-1), size);
  if (h == images_u8.size(-2) && w == images_u8.size(-1)) return images_u8;
  return pil_resize(images_u8, h, w, interpolation);
}

at::Tensor center_crop(const at::Tensor& images, int64_t crop_height, int64_t crop_width) {
  if (!images.defined() || images.dim() < 2) throw ShapeError("center_crop: expected images [..., H, W]");
  if (crop_height < 1 || crop_width < 1)
    throw ShapeError(fmt::format("center_crop: expected a crop of at least 1x1, got {}x{}", crop_width, crop_height));
  at::Tensor x = images;
  int64_t h = x.size(-2), w = x.size(-1);
  if (crop_width > w || crop_height > h) {
    const int64_t left = crop_width > w ? (crop_width - w) / 2 : 0;
    const int64_t top = crop_height > h ? (crop_height - h) / 2 : 0;
    const int64_t right = crop_width > w ? (crop_width - w + 1) / 2 : 0;
    const int64_t bottom = crop_height > h ? (crop_height - h + 1) / 2 : 0;
    x = at::constant_pad_nd(x, {left, right, top, bottom}, 0);
    h = x.size(-2);
    w = x.size(-1);
    if (h == crop_height && w == crop_width) return x;
  }
  return crop(x, center_crop_box(h, w, crop_height, crop_width));
}

at::Tensor random_resized_crop(const at::Tensor& image_u8, int64_t size, const RandomResizedCropOptions& options,
                               Interpolation interpolation, RandomSource& source) {
  if (!image_u8.defined() || image_u8.dim() != 3 || image_u8.scalar_type() != at::kByte)
    throw ShapeError(fmt::format("random_resized_crop: expected one uint8 [C, H, W] image, got {} {}",
                                 image_u8.defined() ? std::string(c10::toString(image_u8.scalar_type())) : "undefined",
                                 image_u8.defined() ? c10::str(image_u8.sizes()) : "[]"));
  const CropBox box = random_resized_crop_box(image_u8.size(1), image_u8.size(2), options, source);
  return pil_resize(crop(image_u8, box), size, size, interpolation);
}

// ---- colour ---------------------------------------------------------------------------------

std::array<double, 2> brightness_range(double brightness) {
  require_option(brightness >= 0, "", "brightness", fmt::format("expected >= 0, got {}", brightness));
  return {std::max(1.0 - brightness, 0.0), 1.0 + brightness};
}

float color_jitter_brightness(double brightness, RandomSource& source) {
  const auto [lo, hi] = brightness_range(brightness);
  (void)source.permutation(4);  // fn_idx = torch.randperm(4), drawn first (transforms.py:1216)
  return source.uniform(static_cast<float>(lo), static_cast<float>(hi));
}

at::Tensor adjust_brightness(const at::Tensor& images, float factor) {
  require_option(factor >= 0, "", "brightness_factor", fmt::format("expected >= 0, got {}", factor));
  if (!images.defined()) throw ShapeError("adjust_brightness: undefined images");
  if (at::isFloatingType(images.scalar_type())) return (images * static_cast<double>(factor)).clamp_(0.0, 1.0);
  if (images.scalar_type() != at::kByte)
    throw ShapeError(fmt::format("adjust_brightness: expected uint8 or float images, got {}", images.scalar_type()));
  // Blend.c: alpha == 1 copies; else out = (UINT8)(0 + alpha * v) in float, clipped only when
  // alpha > 1 (extrapolation).
  const at::Tensor x = images.contiguous();
  at::Tensor out = at::empty_like(x);
  const uint8_t* src = x.data_ptr<uint8_t>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  const int64_t n = x.numel();
  if (factor == 1.0f) return x.clone();
  for (int64_t i = 0; i < n; ++i) {
    const float v = factor * static_cast<float>(src[i]);
    dst[i] = v >= 255.0f ? uint8_t{255} : static_cast<uint8_t>(v);
  }
  return out;
}

}  // namespace clprompt
