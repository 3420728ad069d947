// torchvision / Pillow image operations against values computed from their definitions, and
// Pillow's own output hard-coded.
#include <cmath>
#include <cstdint>
#include <deque>
#include <vector>

#include <ATen/ATen.h>

#include "clprompt/core/seed.hpp"
#include "clprompt/data/image_ops.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which must not replace Catch's.
#include <catch2/catch.hpp>

namespace {

using clprompt::CropBox;
using clprompt::Interpolation;

// The test pattern the Pillow values were computed on (scratch script in the change's report):
// value(y, x, k) = (37 x + 91 y + 13 ((x y) mod 7) + 50 k) mod 256, as uint8 [C, H, W].
at::Tensor pattern(int64_t h, int64_t w, int64_t c) {
  at::Tensor t = at::empty({c, h, w}, at::kByte);
  auto a = t.accessor<uint8_t, 3>();
  for (int64_t k = 0; k < c; ++k)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) a[k][y][x] = static_cast<uint8_t>((x * 37 + y * 91 + ((x * y) % 7) * 13 + k * 50) % 256);
  return t;
}

std::vector<int> values(const at::Tensor& t) {
  const at::Tensor c = t.contiguous().to(at::kInt);
  return std::vector<int>(c.data_ptr<int>(), c.data_ptr<int>() + c.numel());
}

struct PilCase {
  Interpolation interpolation;
  int64_t height, width;
  std::vector<int> expected;
};
struct BigCase {
  Interpolation interpolation;
  int64_t height, width;
  int64_t sum, checksum;
};

// Pillow's output (identical in Pillow 9.5.0 and 13.0.0, pip wheels, run on this machine):
//   img = Image.fromarray(pattern, 'L' or 'RGB'); np.asarray(img.resize((w, h), Image.BILINEAR
//   or Image.BICUBIC)).flatten()   (RGB: channel planes, i.e. transposed to C, H, W first)
//   big: out = np.asarray(...).astype(int64); out.sum(), (out * arange(out.size) [HWC order] %
//   1000003).sum() % 1000003
const std::vector<PilCase> kPilGrey = {
    {Interpolation::bilinear, 3, 4,
     {
      107, 133, 134, 119, 128, 131, 138, 121, 119, 125, 154, 119}},
    {Interpolation::bilinear, 10, 13,
     {
      0, 20, 46, 71, 97, 122, 148, 174, 199, 205, 54, 20, 40, 50, 74, 105, 135, 166, 153, 86,
      117, 147, 165, 81, 73, 97, 114, 143, 165, 157, 189, 160, 48, 85, 122, 152, 125, 141, 170, 177,
      211, 198, 73, 98, 110, 84, 128, 171, 207, 187, 209, 243, 75, 113, 142, 129, 136, 152, 180, 189,
      156, 96, 82, 111, 149, 49, 92, 141, 174, 136, 125, 159, 174, 135, 62, 54, 89, 132, 113, 154,
      190, 188, 91, 31, 33, 92, 117, 117, 115, 151, 192, 176, 126, 85, 90, 70, 80, 133, 155, 167,
      172, 177, 136, 86, 125, 107, 96, 107, 119, 146, 192, 204, 171, 112, 123, 113, 95, 34, 96, 155,
      171, 188, 204, 221, 238, 156, 15, 31, 90, 152}},
    {Interpolation::bilinear, 4, 9,
     {
      48, 91, 123, 167, 97, 140, 184, 51, 94, 118, 182, 113, 151, 117, 155, 148, 121, 185, 101, 137,
      160, 71, 112, 156, 107, 104, 140, 108, 107, 124, 133, 189, 211, 94, 111, 110}},
    {Interpolation::bilinear, 7, 5,
     {
      21, 79, 148, 169, 37, 120, 197, 95, 112, 122, 200, 108, 108, 188, 218, 60, 150, 209, 88, 59,
      152, 143, 47, 113, 156, 123, 57, 148, 190, 124, 93, 176, 221, 90, 93}},
    {Interpolation::bicubic, 3, 4,
     {
      102, 134, 138, 117, 136, 128, 133, 129, 116, 128, 157, 113}},
    {Interpolation::bicubic, 10, 13,
     {
      0, 11, 40, 64, 88, 118, 155, 181, 217, 218, 37, 0, 36, 41, 61, 99, 141, 183, 162, 84,
      109, 152, 166, 66, 58, 91, 116, 148, 175, 167, 217, 175, 34, 64, 116, 150, 125, 146, 179, 179,
      228, 214, 60, 89, 111, 82, 124, 177, 216, 188, 215, 253, 61, 104, 139, 125, 134, 163, 202, 215,
      164, 84, 65, 103, 145, 24, 73, 141, 191, 142, 124, 170, 194, 136, 38, 26, 76, 130, 107, 155,
      203, 197, 85, 11, 25, 90, 122, 117, 110, 156, 203, 202, 130, 64, 77, 52, 67, 132, 153, 172,
      191, 205, 139, 66, 131, 104, 83, 100, 116, 151, 203, 221, 178, 110, 129, 111, 84, 16, 90, 169,
      178, 196, 211, 224, 255, 162, 0, 8, 92, 166}},
    {Interpolation::bicubic, 4, 9,
     {
      46, 88, 123, 169, 91, 137, 189, 49, 91, 119, 189, 114, 156, 118, 156, 143, 122, 192, 100, 135,
      162, 63, 111, 155, 106, 103, 138, 112, 105, 120, 134, 191, 213, 97, 115, 108}},
    {Interpolation::bicubic, 7, 5,
     {
      16, 80, 153, 179, 25, 113, 206, 94, 106, 123, 208, 102, 104, 187, 221, 54, 154, 219, 89, 53,
      157, 142, 39, 113, 158, 126, 49, 149, 198, 121, 87, 180, 232, 88, 89}},
};
const std::vector<int> kPilRgbBicubic5x3 = {
    49, 138, 133, 164, 122, 131, 126, 154, 138, 136, 115, 92, 107, 102, 184, 101, 169, 102, 164, 115,
    155, 127, 131, 84, 196, 117, 117, 156, 158, 237, 146, 172, 100, 139, 142, 180, 107, 170, 90, 107,
    119, 185, 116, 97, 61};
const std::vector<BigCase> kPilBig = {
    {Interpolation::bilinear, 37, 50, 704685, 846265},
    {Interpolation::bilinear, 224, 224, 19109454, 393954},
    {Interpolation::bilinear, 40, 131, 1996070, 515407},
    {Interpolation::bicubic, 37, 50, 704685, 819251},
    {Interpolation::bicubic, 224, 224, 19110668, 744371},
    {Interpolation::bicubic, 40, 131, 1995971, 234995},
};

// Scripted draws: uniform() returns the queued values (or `to` when the queue is empty),
// below(n) returns n - 1 and records n.
class ScriptedSource final : public clprompt::RandomSource {
 public:
  std::deque<float> uniforms;
  std::vector<int64_t> below_calls;
  int uniform_calls = 0;
  float uniform(float from, float to) override {
    ++uniform_calls;
    if (uniforms.empty()) return to;
    const float v = uniforms.front();
    uniforms.pop_front();
    CHECK(v >= from);
    CHECK(v <= to);
    return v;
  }
  int64_t below(int64_t n) override {
    below_calls.push_back(n);
    return n - 1;
  }
  std::vector<int64_t> permutation(int64_t n) override {
    std::vector<int64_t> p(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
    return p;
  }
};

}  // namespace

TEST_CASE("pil_resize equals Pillow's BILINEAR and BICUBIC resize bit for bit", "[data][image_ops]") {
  const at::Tensor grey = pattern(7, 9, 1);
  for (const PilCase& c : kPilGrey) {
    INFO(to_string(c.interpolation) << " to " << c.width << "x" << c.height);
    const at::Tensor out = clprompt::pil_resize(grey, c.height, c.width, c.interpolation);
    CHECK(out.sizes() == at::IntArrayRef{1, c.height, c.width});
    CHECK(values(out) == c.expected);
  }
  const at::Tensor rgb = clprompt::pil_resize(pattern(6, 8, 3), 5, 3, Interpolation::bicubic);
  CHECK(values(rgb) == kPilRgbBicubic5x3);
  // Batches: each image alone.
  const at::Tensor batch = at::stack({pattern(6, 8, 3), pattern(6, 8, 3).flip({2})});
  const at::Tensor resized = clprompt::pil_resize(batch, 5, 3, Interpolation::bicubic);
  CHECK(values(resized[0]) == kPilRgbBicubic5x3);
  CHECK(at::equal(resized[1], clprompt::pil_resize(batch[1], 5, 3, Interpolation::bicubic)));

  const at::Tensor big = pattern(97, 131, 3);
  for (const BigCase& c : kPilBig) {
    INFO(to_string(c.interpolation) << " to " << c.width << "x" << c.height);
    const at::Tensor hwc = clprompt::pil_resize(big, c.height, c.width, c.interpolation).permute({1, 2, 0}).contiguous();
    const std::vector<int> v = values(hwc);
    int64_t sum = 0, checksum = 0;
    for (size_t i = 0; i < v.size(); ++i) {
      sum += v[i];
      checksum = (checksum + (static_cast<int64_t>(v[i]) * static_cast<int64_t>(i)) % 1000003) % 1000003;
    }
    CHECK(sum == c.sum);
    CHECK(checksum == c.checksum);
  }
  // Same size: a copy, as Image.resize returns.
  CHECK(at::equal(clprompt::pil_resize(grey, 7, 9, Interpolation::bicubic), grey));
  CHECK_THROWS_AS(clprompt::pil_resize(grey.to(at::kFloat), 3, 3, Interpolation::bilinear), clprompt::ShapeError);
  CHECK_THROWS_AS(clprompt::pil_resize(grey, 0, 3, Interpolation::bilinear), clprompt::ShapeError);
}

TEST_CASE("ATen's antialiased resize differs from Pillow's only by Pillow's integer rounding", "[data][image_ops]") {
  // Pillow rounds its coefficients to 22 bits and rounds and clips to uint8 between the
  // horizontal and the vertical pass; at::_upsample_*_aa computes both passes in float. Two ATen
  // passes with that uint8 step in between land within 1 level of Pillow everywhere; one ATen call
  // differs by at most 1 level where nothing clips, but bicubic overshoot that Pillow clips after
  // its first pass (sharp edges of this pattern, upscaled) can differ by many levels.
  const at::Tensor big = pattern(97, 131, 3);
  for (Interpolation interpolation : {Interpolation::bilinear, Interpolation::bicubic}) {
    for (auto [h, w] : {std::pair<int64_t, int64_t>{37, 50}, {224, 224}, {40, 131}}) {
      INFO(to_string(interpolation) << " to " << w << "x" << h);
      const at::Tensor pil = clprompt::pil_resize(big, h, w, interpolation).to(at::kFloat);
      const at::Tensor first = clprompt::aa_resize(big.to(at::kFloat), 97, w, interpolation).round().clamp(0, 255);
      const at::Tensor two_pass = clprompt::aa_resize(first, h, w, interpolation).round().clamp(0, 255);
      CHECK((pil - two_pass).abs().max().item<double>() <= 1.0);
      const at::Tensor one_call = clprompt::aa_resize(big.to(at::kFloat), h, w, interpolation).round().clamp(0, 255);
      const double max_diff = (pil - one_call).abs().max().item<double>();
      const double mean_diff = (pil - one_call).abs().mean().item<double>();
      INFO(to_string(interpolation) << " " << w << "x" << h << ": max |PIL - ATen aa| = " << max_diff
                                    << ", mean = " << mean_diff);
      if (interpolation == Interpolation::bilinear) CHECK(max_diff <= 1.0);
      CHECK(mean_diff < 0.5);
    }
  }
  // A smooth image: one ATen call is within 1 level for both filters, down and up.
  const at::Tensor y = at::arange(97, at::kFloat).view({1, 97, 1}), x = at::arange(131, at::kFloat).view({1, 1, 131});
  const at::Tensor smooth =
      (127.5 + 100 * at::sin(y / 9.0) * at::cos(x / 13.0) + at::zeros({3, 1, 1})).round().clamp(0, 255).to(at::kByte);
  for (Interpolation interpolation : {Interpolation::bilinear, Interpolation::bicubic})
    for (auto [h, w] : {std::pair<int64_t, int64_t>{37, 50}, {224, 224}}) {
      const at::Tensor pil = clprompt::pil_resize(smooth, h, w, interpolation).to(at::kFloat);
      const at::Tensor aten = clprompt::aa_resize(smooth.to(at::kFloat), h, w, interpolation).round().clamp(0, 255);
      CHECK((pil - aten).abs().max().item<double>() <= 1.0);
    }
  CHECK_THROWS_AS(clprompt::aa_resize(big, 3, 3, Interpolation::bilinear), clprompt::ShapeError);
}

TEST_CASE("RandomResizedCrop's fallback is the centred crop at the nearest ratio limit", "[data][image_ops]") {
  using clprompt::random_resized_crop_fallback;
  // Tall: width / height = 0.1 < 3/4 -> w = 10, h = round(10 / 0.75) = 13, top = (100 - 13) // 2.
  CHECK(random_resized_crop_fallback(100, 10, 3.0 / 4.0, 4.0 / 3.0) == CropBox{43, 0, 13, 10});
  // Wide: 10 > 4/3 -> h = 10, w = round(10 * 4/3) = 13, left = (100 - 13) // 2.
  CHECK(random_resized_crop_fallback(10, 100, 3.0 / 4.0, 4.0 / 3.0) == CropBox{0, 43, 10, 13});
  // Within the ratios: the whole image.
  CHECK(random_resized_crop_fallback(30, 35, 3.0 / 4.0, 4.0 / 3.0) == CropBox{0, 0, 30, 35});
  // Python's round is half to even: round(5 / 2) = 2, round(7 / 2) = 4.
  CHECK(random_resized_crop_fallback(100, 5, 2.0, 3.0) == CropBox{49, 0, 2, 5});
  CHECK(random_resized_crop_fallback(100, 7, 2.0, 3.0) == CropBox{48, 0, 4, 7});

  // Ten attempts that do not fit (scale 1 and ratio 4/3 on a 100x10 image need w = 37 > 10),
  // then the fallback; no integer is drawn.
  ScriptedSource source;
  CHECK(clprompt::random_resized_crop_box(100, 10, {}, source) == CropBox{43, 0, 13, 10});
  CHECK(source.uniform_calls == 20);
  CHECK(source.below_calls.empty());
}

TEST_CASE("RandomResizedCrop's sampled box follows torchvision's arithmetic", "[data][image_ops]") {
  // 200x300 image, area 60000. Scale 0.5 and log ratio 0 give sqrt(30000) = 173.2 -> 173 x 173;
  // top is drawn from [0, 28), left from [0, 128).
  ScriptedSource source;
  source.uniforms = {0.5f, 0.0f};
  CHECK(clprompt::random_resized_crop_box(200, 300, {}, source) == CropBox{27, 127, 173, 173});
  CHECK(source.below_calls == std::vector<int64_t>{28, 128});
  // A first attempt that fails (scale 1, ratio 4/3: w = round(sqrt(80000)) = 283 fits, h = 212 >
  // 200 does not), then scale 0.25 with log ratio log(4/3) as float32: w = round(sqrt(15000 *
  // 4/3)) = 141, h = round(sqrt(15000 * 3/4)) = 106.
  ScriptedSource second;
  const float log_max = std::log(static_cast<float>(4.0 / 3.0));
  second.uniforms = {1.0f, log_max, 0.25f, log_max};
  const CropBox box = clprompt::random_resized_crop_box(200, 300, {}, second);
  const double aspect = static_cast<double>(std::exp(log_max));
  CHECK(box.width == static_cast<int64_t>(std::nearbyint(std::sqrt(15000.0 * aspect))));
  CHECK(box.height == static_cast<int64_t>(std::nearbyint(std::sqrt(15000.0 / aspect))));
  CHECK(box.width == 141);
  CHECK(box.height == 106);
  CHECK(second.below_calls == std::vector<int64_t>{200 - 106 + 1, 300 - 141 + 1});

  // With real draws every box lies in the image with the area and ratio of its draws (up to the
  // rounding of w and h).
  at::Generator generator = clprompt::make_generator(7, 1);
  clprompt::TorchGeneratorSource torch_source(generator);
  const clprompt::RandomResizedCropOptions l2p = clprompt::RandomResizedCropOptions::l2p();
  for (int i = 0; i < 500; ++i) {
    const int64_t h = 20 + (i * 37) % 300, w = 20 + (i * 91) % 300;
    const CropBox b = clprompt::random_resized_crop_box(h, w, i % 2 == 0 ? l2p : clprompt::RandomResizedCropOptions{},
                                                        torch_source);
    const bool inside = b.top >= 0 && b.left >= 0 && b.height >= 1 && b.width >= 1 && b.top + b.height <= h &&
                        b.left + b.width <= w;
    CHECK(inside);
    const double ratio = static_cast<double>(b.width) / static_cast<double>(b.height);
    const double area = static_cast<double>(b.width * b.height) / static_cast<double>(h * w);
    const bool fallback = b.height == h || b.width == w;
    if (!fallback) {
      // w and h are each rounded by at most 0.5.
      CHECK(ratio >= (3.0 / 4.0) * (b.width - 0.5) / (b.width + 0.5) * (b.height - 0.5) / (b.height + 0.5));
      CHECK(ratio <= (4.0 / 3.0) * (b.width + 0.5) / (b.width - 0.5) * (b.height + 0.5) / (b.height - 0.5));
      // The drawn area w_true * h_true >= scale_min * h * w, and w_true <= width + 0.5 (same for h).
      CHECK(area >= (i % 2 == 0 ? 0.05 : 0.08) * static_cast<double>(b.width * b.height) /
                        ((b.width + 0.5) * (b.height + 0.5)));
    }
  }
  CHECK_THROWS_AS(clprompt::random_resized_crop_box(0, 10, {}, torch_source), clprompt::ShapeError);
  CHECK_THROWS_AS(clprompt::random_resized_crop_box(10, 10, {.scale_min = 0.9, .scale_max = 0.5}, torch_source),
                  clprompt::ConfigError);
}

TEST_CASE("TorchGeneratorSource draws what LibTorch's CPU kernels draw from the same generator", "[data][image_ops]") {
  at::Generator mine = clprompt::make_generator(11, 3);
  at::Generator theirs = clprompt::make_generator(11, 3);
  clprompt::TorchGeneratorSource source(mine);
  for (int i = 0; i < 50; ++i) {
    const float lo = i % 2 == 0 ? 0.08f : std::log(0.75f);
    const float hi = i % 2 == 0 ? 1.0f : std::log(4.0f / 3.0f);
    const float expected = at::empty({1}, at::kFloat).uniform_(lo, hi, theirs).item<float>();
    CHECK(source.uniform(lo, hi) == expected);
    const int64_t n = 1 + (i * 7919) % 500;
    CHECK(source.below(n) == at::randint(0, n, {1}, theirs, at::kLong).item<int64_t>());
  }
  const at::Tensor perm = at::randperm(4, theirs, at::kLong);
  CHECK(source.permutation(4) == std::vector<int64_t>(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + 4));
  const at::Tensor perm1000 = at::randperm(1000, theirs, at::kLong);
  CHECK(source.permutation(1000) == std::vector<int64_t>(perm1000.data_ptr<int64_t>(), perm1000.data_ptr<int64_t>() + 1000));

  // ColorJitter(brightness = 63/255): randperm(4), then the factor.
  const float factor = clprompt::color_jitter_brightness(63.0 / 255.0, source);
  (void)at::randperm(4, theirs, at::kLong);
  const auto [lo, hi] = clprompt::brightness_range(63.0 / 255.0);
  CHECK(factor == at::empty({1}, at::kFloat).uniform_(lo, hi, theirs).item<float>());
  CHECK(lo == 1.0 - 63.0 / 255.0);
  CHECK(hi == 1.0 + 63.0 / 255.0);
  CHECK(clprompt::brightness_range(1.5)[0] == 0.0);
  CHECK_THROWS_AS(clprompt::brightness_range(-0.1), clprompt::ConfigError);
}

TEST_CASE("Resize and CenterCrop use torchvision's size and offset rounding", "[data][image_ops]") {
  using clprompt::resize_shorter_side_size;
  // int(256 * 500 / 375) = int(341.33) = 341, portrait and landscape.
  CHECK(resize_shorter_side_size(375, 500, 256) == std::array<int64_t, 2>{256, 341});
  CHECK(resize_shorter_side_size(500, 375, 256) == std::array<int64_t, 2>{341, 256});
  // Truncation, not rounding: int(2 * 4 / 3) = int(2.67) = 2.
  CHECK(resize_shorter_side_size(3, 4, 2) == std::array<int64_t, 2>{2, 2});
  CHECK(resize_shorter_side_size(32, 32, 224) == std::array<int64_t, 2>{224, 224});

  using clprompt::center_crop_box;
  // round(117 / 2) = 58 (half to even), round(32 / 2) = 16.
  CHECK(center_crop_box(256, 341, 224, 224) == CropBox{16, 58, 224, 224});
  CHECK(center_crop_box(257, 225, 224, 224) == CropBox{16, 0, 224, 224});  // round(16.5) = 16, round(0.5) = 0
  CHECK(center_crop_box(259, 227, 224, 224) == CropBox{18, 2, 224, 224});  // round(17.5) = 18, round(1.5) = 2
  CHECK_THROWS_AS(center_crop_box(10, 10, 11, 10), clprompt::ShapeError);

  // Resize(4) of a 7x9 grey image: 4 x int(4 * 9 / 7) = 4 x 5, Pillow's bicubic.
  const at::Tensor grey = pattern(7, 9, 1);
  const at::Tensor r = clprompt::resize_shorter_side(grey, 4, Interpolation::bicubic);
  CHECK(r.sizes() == at::IntArrayRef{1, 4, 5});
  CHECK(at::equal(r, clprompt::pil_resize(grey, 4, 5, Interpolation::bicubic)));
  CHECK(clprompt::resize_shorter_side(grey, 7, Interpolation::bicubic).data_ptr() == grey.data_ptr());

  // CenterCrop larger than the image pads with zeros: a 3x5 image cropped to 4x4 gets one row
  // below ((4 - 3 + 1) // 2) and none above, then the columns from round((5 - 4) / 2) = 0.
  const at::Tensor small = pattern(3, 5, 1);
  const at::Tensor padded = clprompt::center_crop(small, 4, 4);
  CHECK(padded.sizes() == at::IntArrayRef{1, 4, 4});
  CHECK(at::equal(padded.narrow(1, 0, 3), small.narrow(2, 0, 4)));
  CHECK((padded[0][3] == 0).all().item<bool>());
  CHECK(at::equal(clprompt::center_crop(small, 1, 3), small.narrow(1, 1, 1).narrow(2, 1, 3)));
  const at::Tensor batch = at::stack({pattern(6, 8, 3), pattern(6, 8, 3)});
  CHECK(clprompt::center_crop(batch, 4, 4).sizes() == at::IntArrayRef{2, 3, 4, 4});

  // RandomResizedCrop = box, crop, Pillow resize.
  ScriptedSource source;
  source.uniforms = {0.5f, 0.0f};
  const at::Tensor image = pattern(20, 30, 3);
  const at::Tensor rrc = clprompt::random_resized_crop(image, 8, {}, Interpolation::bicubic, source);
  // sqrt(300) = 17.3 -> 17x17 at top 20 - 17 = 3, left 30 - 17 = 13.
  CHECK(at::equal(rrc, clprompt::pil_resize(image.narrow(1, 3, 17).narrow(2, 13, 17), 8, 8, Interpolation::bicubic)));
  CHECK_THROWS_AS(clprompt::crop(image, CropBox{15, 0, 10, 10}), clprompt::ShapeError);
}

TEST_CASE("adjust_brightness blends with black as PIL and torchvision do", "[data][image_ops]") {
  // Pillow 9.5.0 / 13.0.0: ImageEnhance.Brightness(Image.fromarray(v, 'L')).enhance(f) for
  // v = 0, 17, ..., 255 and the float32 factors 0.7529412 and 1.2470588 (the ends of
  // ColorJitter(63/255)'s range), 0.5, 1.0 and 0.0.
  at::Tensor v = at::arange(0, 256, 17, at::kLong).to(at::kByte).view({1, 1, 16});
  CHECK(values(clprompt::adjust_brightness(v, 0.7529412f)) ==
        std::vector<int>{0, 12, 25, 38, 51, 64, 76, 89, 102, 115, 128, 140, 153, 166, 179, 192});
  CHECK(values(clprompt::adjust_brightness(v, 1.2470588f)) ==
        std::vector<int>{0, 21, 42, 63, 84, 105, 127, 148, 169, 190, 211, 233, 254, 255, 255, 255});
  CHECK(values(clprompt::adjust_brightness(v, 0.5f)) ==
        std::vector<int>{0, 8, 17, 25, 34, 42, 51, 59, 68, 76, 85, 93, 102, 110, 119, 127});
  CHECK(at::equal(clprompt::adjust_brightness(v, 1.0f), v));
  CHECK((clprompt::adjust_brightness(v, 0.0f) == 0).all().item<bool>());
  // Float images: clamp(factor * x, 0, 1).
  const at::Tensor f = at::tensor({0.0f, 0.25f, 0.5f, 0.9f}).view({1, 1, 4});
  CHECK(at::allclose(clprompt::adjust_brightness(f, 1.5f), at::tensor({0.0f, 0.375f, 0.75f, 1.0f}).view({1, 1, 4})));
  CHECK_THROWS_AS(clprompt::adjust_brightness(v.to(at::kInt), 1.0f), clprompt::ShapeError);
  CHECK_THROWS_AS(clprompt::adjust_brightness(v, -1.0f), clprompt::ConfigError);
}
