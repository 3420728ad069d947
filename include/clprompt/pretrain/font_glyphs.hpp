#pragma once
// Labelled glyph images rendered from TrueType / OpenType fonts: the offline pre-training data of
// the embedded default backbone (`clprompt pretrain`). Digits and Latin letters drawn from many
// fonts with random affine jitter, stroke thickness, contrast, noise and inversion; every image
// is a pure function of (seed, index), so a data set never has to be stored.
//
//   auto fonts = discover_fonts(options);              // sorted, de-duplicated, filtered files
//   auto [train, val] = split_by_family(fonts, 0.15, seed);   // whole families held out
//   GlyphRenderer renderer(train, options);
//   at::Tensor image = renderer.render(sample_index, seed);    // uint8 [1, S, S]
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "clprompt/core/options.hpp"
#include "clprompt/data/dataset.hpp"

namespace clprompt {

/// How glyphs are drawn. The defaults are the pre-training recipe of the shipped backbone.
struct GlyphOptions {
  /// Directories searched recursively for *.ttf / *.otf files (one per pinned Debian package,
  /// see scripts/pretrain.sh); files are sorted by path so the order never depends on the disk.
  std::vector<std::string> font_dirs{"/usr/share/fonts"};
  /// The classes, one character each (UTF-8 ASCII).
  std::string charset = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  int64_t image_size = 28;
  double line_fill = 1.0;          ///< the font's ascent..descent spans this fraction of the image
  double max_rotation_deg = 12.0;
  double min_scale = 0.75;         ///< uniform scale factor in [min_scale, max_scale]
  double max_scale = 1.15;
  double max_shear = 0.2;          ///< horizontal shear factor in [-max_shear, max_shear]
  double max_translate = 0.1;      ///< shift in [-t, t] of the image side, per axis
  double thickness_probability = 0.5;  ///< half thicken (3x3 dilation), half thin (erosion)
  double max_noise_std = 0.08;     ///< Gaussian pixel noise with std in [0, max] (intensity 0..1)
  double invert_probability = 0.2; ///< dark glyph on a light background
  bool augment = true;             ///< false: the glyph centred, unjittered, no noise

  static constexpr auto fields() {
    return std::tuple{field("font_dirs", &GlyphOptions::font_dirs), field("charset", &GlyphOptions::charset),
                      field("image_size", &GlyphOptions::image_size), field("line_fill", &GlyphOptions::line_fill),
                      field("max_rotation_deg", &GlyphOptions::max_rotation_deg),
                      field("min_scale", &GlyphOptions::min_scale), field("max_scale", &GlyphOptions::max_scale),
                      field("max_shear", &GlyphOptions::max_shear),
                      field("max_translate", &GlyphOptions::max_translate),
                      field("thickness_probability", &GlyphOptions::thickness_probability),
                      field("max_noise_std", &GlyphOptions::max_noise_std),
                      field("invert_probability", &GlyphOptions::invert_probability),
                      field("augment", &GlyphOptions::augment)};
  }
  void validate(const std::string& path) const;
};

/// One usable font file.
struct FontFile {
  std::string path;
  std::string family;  ///< typographic family from the name table (e.g. "DejaVu Sans"); groups styles
};

/// Every *.ttf / *.otf under options.font_dirs that draws every character of the charset,
/// sorted by path, byte-identical duplicates dropped, symbol / dingbat / math fonts (which map
/// Latin code points to other shapes) left out by name. Throws FileError for a missing directory
/// and ConfigError (field font_dirs) when no font qualifies.
std::vector<FontFile> discover_fonts(const GlyphOptions& options);

/// Splits fonts into (train, validation) by whole families, so no style of a validation font is
/// ever trained on: families sorted by name, shuffled with `seed`, the first
/// ceil(fraction * families) held out. Throws ConfigError unless both sides get a family.
std::pair<std::vector<FontFile>, std::vector<FontFile>> split_by_family(const std::vector<FontFile>& fonts,
                                                                        double validation_fraction, uint64_t seed);

/// Renders glyph images. Each font's glyphs are rasterised once (stb_truetype) at a high
/// resolution; an image is then an affine resampling of that bitmap plus pixel-level effects.
/// Thread-safe after construction.
class GlyphRenderer {
 public:
  /// Throws FileError for an unreadable or invalid font file or a missing glyph.
  GlyphRenderer(std::vector<FontFile> fonts, GlyphOptions options);
  ~GlyphRenderer();
  GlyphRenderer(GlyphRenderer&&) noexcept;
  GlyphRenderer& operator=(GlyphRenderer&&) noexcept;

  int64_t num_fonts() const;
  int64_t num_classes() const { return static_cast<int64_t>(options_.charset.size()); }
  const std::vector<FontFile>& fonts() const;
  const GlyphOptions& options() const { return options_; }

  /// uint8 [1, S, S]: character `class_index` of font `font_index`, augmented with a random
  /// stream derived from (seed, sample) only.
  at::Tensor render(int64_t font_index, int64_t class_index, uint64_t seed, uint64_t sample) const;
  /// A training sample: font and character drawn uniformly from (seed, sample), then rendered.
  /// Returns (uint8 [1, S, S], class index).
  std::pair<at::Tensor, int64_t> render_sample(uint64_t seed, uint64_t sample) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  GlyphOptions options_;
};

/// A fixed-size Dataset over a renderer: `variants` renderings of every (font, character) pair,
/// index = (variant * fonts + font) * classes + class. Used for validation and for running the
/// continual-learning machinery on glyphs.
class GlyphDataset final : public Dataset {
 public:
  GlyphDataset(std::shared_ptr<const GlyphRenderer> renderer, int64_t variants, uint64_t seed,
               std::string description);

  int64_t size() const override { return variants_ * renderer_->num_fonts() * renderer_->num_classes(); }
  int64_t num_classes() const override { return renderer_->num_classes(); }
  int64_t label(int64_t index) const override { return index % renderer_->num_classes(); }
  at::Tensor images(const std::vector<int64_t>& indices) const override;
  std::array<int64_t, 3> image_shape() const override {
    return {1, renderer_->options().image_size, renderer_->options().image_size};
  }
  std::vector<std::string> class_names() const override;
  std::string description() const override { return description_; }

 private:
  std::shared_ptr<const GlyphRenderer> renderer_;
  int64_t variants_;
  uint64_t seed_;
  std::string description_;
};

}  // namespace clprompt
