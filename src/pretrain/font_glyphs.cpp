// Glyph rendering for the pre-training data (data/font_glyphs.hpp), with stb_truetype.
#include "clprompt/pretrain/font_glyphs.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>

#include "clprompt/core/error.hpp"

#define STB_TRUETYPE_IMPLEMENTATION
#define STBTT_STATIC
#include <stb_truetype.h>

namespace clprompt {

void GlyphOptions::validate(const std::string& path) const {
  require_option(!font_dirs.empty(), path, "font_dirs", "must name at least one directory");
  require_option(charset.size() >= 2, path, "charset", "needs at least two characters");
  require_option(std::all_of(charset.begin(), charset.end(), [](char c) { return c > 32 && c < 127; }), path,
                 "charset", "must be printable ASCII without spaces");
  require_option(std::set<char>(charset.begin(), charset.end()).size() == charset.size(), path, "charset",
                 "has a repeated character");
  require_option(image_size >= 8, path, "image_size", "must be >= 8");
  require_option(line_fill > 0 && line_fill <= 2, path, "line_fill", "must be in (0, 2]");
  require_option(max_rotation_deg >= 0 && max_rotation_deg <= 180, path, "max_rotation_deg", "must be in [0, 180]");
  require_option(min_scale > 0 && min_scale <= max_scale, path, "min_scale", "must be in (0, max_scale]");
  require_option(max_shear >= 0 && max_shear < 1, path, "max_shear", "must be in [0, 1)");
  require_option(max_translate >= 0 && max_translate <= 0.5, path, "max_translate", "must be in [0, 0.5]");
  require_option(thickness_probability >= 0 && thickness_probability <= 1, path, "thickness_probability",
                 "must be in [0, 1]");
  require_option(max_noise_std >= 0, path, "max_noise_std", "must be >= 0");
  require_option(invert_probability >= 0 && invert_probability <= 1, path, "invert_probability", "must be in [0, 1]");
}

namespace {

/// SplitMix64: a counter-based stream, so a sample's randomness depends on (seed, sample) only.
class SampleRandom {
 public:
  SampleRandom(uint64_t seed, uint64_t sample) : state_(seed * 0x9E3779B97F4A7C15ULL ^ (sample + 0x632BE59BD9B4E019ULL)) {
    next();
  }
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }         // [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  double normal() {  // Box-Muller
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t state_;
};

std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError(path, "cannot open the font file");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

bool init_font(stbtt_fontinfo& info, const std::vector<unsigned char>& bytes) {
  if (bytes.size() < 12) return false;
  const int offset = stbtt_GetFontOffsetForIndex(bytes.data(), 0);
  return offset >= 0 && stbtt_InitFont(&info, bytes.data(), offset) != 0;
}

/// An English name-table string (UTF-16BE or Mac Roman), reduced to ASCII; "" when absent.
std::string font_name(const stbtt_fontinfo& info, int name_id) {
  int length = 0;
  if (const char* s = stbtt_GetFontNameString(&info, &length, STBTT_PLATFORM_ID_MICROSOFT, STBTT_MS_EID_UNICODE_BMP,
                                              STBTT_MS_LANG_ENGLISH, name_id)) {
    std::string out;
    for (int i = 0; i + 1 < length; i += 2)
      if (s[i] == 0 && s[i + 1] > 0) out += s[i + 1];
    return out;
  }
  if (const char* s = stbtt_GetFontNameString(&info, &length, STBTT_PLATFORM_ID_MAC, STBTT_MAC_EID_ROMAN,
                                              STBTT_MAC_LANG_ENGLISH, name_id))
    return std::string(s, static_cast<std::size_t>(length));
  return "";
}

/// Fonts whose Latin code points draw other shapes (Greek, pictograms, math) are not glyph data.
bool is_symbol_font(const std::string& path, const std::string& family) {
  std::string text = path + " " + family;
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* word : {"symbol", "dingbat", "math", "emoji", "icon", "d050000l", "ornament", "music", "braille"})
    if (text.find(word) != std::string::npos) return true;
  return false;
}

/// FNV-1a, to find byte-identical font files installed twice.
uint64_t fnv1a(const std::vector<unsigned char>& bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char b : bytes) h = (h ^ b) * 0x100000001b3ULL;
  return h;
}

}  // namespace

std::vector<FontFile> discover_fonts(const GlyphOptions& options) {
  options.validate("");
  namespace fs = std::filesystem;
  std::vector<std::string> paths;
  for (const auto& dir : options.font_dirs) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
      throw FileError(dir, "font directory not found (scripts/pretrain.sh installs the pinned font packages)");
    for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::follow_directory_symlink, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) break;
      auto ext = it->path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
      if ((ext == ".ttf" || ext == ".otf") && it->is_regular_file(ec)) paths.push_back(it->path().string());
    }
  }
  std::sort(paths.begin(), paths.end());
  paths.erase(std::unique(paths.begin(), paths.end()), paths.end());

  std::vector<FontFile> fonts;
  std::set<uint64_t> seen;
  for (const auto& path : paths) {
    const auto bytes = read_bytes(path);
    stbtt_fontinfo info;
    if (!init_font(info, bytes) || !seen.insert(fnv1a(bytes)).second) continue;
    std::string family = font_name(info, 16);  // typographic family, else the legacy family
    if (family.empty()) family = font_name(info, 1);
    if (family.empty()) family = fs::path(path).stem().string();
    if (is_symbol_font(path, family)) continue;
    const bool draws_all = std::all_of(options.charset.begin(), options.charset.end(), [&](char c) {
      int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
      const int glyph = stbtt_FindGlyphIndex(&info, c);
      return glyph != 0 && stbtt_GetGlyphBox(&info, glyph, &x0, &y0, &x1, &y1) != 0 && x1 > x0 && y1 > y0;
    });
    if (draws_all) fonts.push_back({path, family});
  }
  if (fonts.empty())
    throw ConfigError("font_dirs", fmt::format("no usable *.ttf/*.otf font (one that draws every character of the "
                                               "charset) under {}",
                                               fmt::join(options.font_dirs, ", ")));
  return fonts;
}

std::pair<std::vector<FontFile>, std::vector<FontFile>> split_by_family(const std::vector<FontFile>& fonts,
                                                                        double validation_fraction, uint64_t seed) {
  std::map<std::string, std::vector<FontFile>> families;
  for (const auto& f : fonts) families[f.family].push_back(f);
  const auto n = static_cast<int64_t>(families.size());
  const auto held_out = static_cast<int64_t>(std::ceil(validation_fraction * static_cast<double>(n)));
  if (validation_fraction <= 0 || held_out >= n)
    throw ConfigError("validation_fraction",
                      fmt::format("{} of {} font families leaves no {} family", validation_fraction, n,
                                  validation_fraction <= 0 ? "validation" : "training"));
  std::vector<std::string> names;
  for (const auto& [name, _] : families) names.push_back(name);
  SampleRandom random(seed, 0x466f6e7473ULL);  // Fisher-Yates with the family-split stream
  for (auto i = static_cast<int64_t>(names.size()) - 1; i > 0; --i)
    std::swap(names[static_cast<std::size_t>(i)], names[random.next() % static_cast<uint64_t>(i + 1)]);
  std::pair<std::vector<FontFile>, std::vector<FontFile>> out;
  for (int64_t i = 0; i < n; ++i) {
    auto& side = i < held_out ? out.second : out.first;
    for (const auto& f : families[names[static_cast<std::size_t>(i)]]) side.push_back(f);
  }
  auto by_path = [](const FontFile& a, const FontFile& b) { return a.path < b.path; };
  std::sort(out.first.begin(), out.first.end(), by_path);
  std::sort(out.second.begin(), out.second.end(), by_path);
  return out;
}

namespace {

/// Rasterisation resolution: the font's ascent..descent spans this many bitmap pixels, far above
/// the output resolution so that resampling, not rasterisation, sets the output's look.
constexpr float kLinePixels = 96.0f;

/// One glyph's coverage bitmap and where it sits relative to the line centre.
struct GlyphBitmap {
  std::vector<float> coverage;  // row-major, 0..1
  int width = 0, height = 0;
  float x0 = 0, y0 = 0;         // top-left corner relative to the glyph's box centre / line centre

  float at(int x, int y) const {
    return x < 0 || y < 0 || x >= width || y >= height ? 0.0f
                                                       : coverage[static_cast<std::size_t>(y) * width + x];
  }
  float bilinear(float x, float y) const {
    const float fx = std::floor(x), fy = std::floor(y);
    const int ix = static_cast<int>(fx), iy = static_cast<int>(fy);
    const float ax = x - fx, ay = y - fy;
    return (1 - ay) * ((1 - ax) * at(ix, iy) + ax * at(ix + 1, iy)) +
           ay * ((1 - ax) * at(ix, iy + 1) + ax * at(ix + 1, iy + 1));
  }
};

}  // namespace

struct GlyphRenderer::Impl {
  std::vector<FontFile> fonts;
  std::vector<std::vector<GlyphBitmap>> glyphs;  // [font][class]
};

GlyphRenderer::GlyphRenderer(std::vector<FontFile> fonts, GlyphOptions options)
    : impl_(std::make_unique<Impl>()), options_(std::move(options)) {
  options_.validate("");
  if (fonts.empty()) throw ConfigError("font_dirs", "the glyph renderer needs at least one font");
  impl_->fonts = std::move(fonts);
  for (const auto& font : impl_->fonts) {
    const auto bytes = read_bytes(font.path);
    stbtt_fontinfo info;
    if (!init_font(info, bytes)) throw FileError(font.path, "not a TrueType/OpenType font stb_truetype can read");
    int ascent = 0, descent = 0, gap = 0;
    stbtt_GetFontVMetrics(&info, &ascent, &descent, &gap);
    if (ascent <= descent) throw FileError(font.path, "font has an empty ascent..descent range");
    const float scale = kLinePixels / static_cast<float>(ascent - descent);
    // Line centre in bitmap pixels, y down from the baseline: halfway between ascent and descent.
    const float line_centre = -0.5f * static_cast<float>(ascent + descent) * scale;
    std::vector<GlyphBitmap> row;
    for (char c : options_.charset) {
      int w = 0, h = 0, xoff = 0, yoff = 0;
      unsigned char* pixels = stbtt_GetCodepointBitmap(&info, scale, scale, c, &w, &h, &xoff, &yoff);
      if (pixels == nullptr || w <= 0 || h <= 0) {
        stbtt_FreeBitmap(pixels, nullptr);
        throw FileError(font.path, fmt::format("font does not draw '{}'", c));
      }
      GlyphBitmap g;
      g.width = w;
      g.height = h;
      g.coverage.resize(static_cast<std::size_t>(w) * h);
      for (std::size_t i = 0; i < g.coverage.size(); ++i) g.coverage[i] = pixels[i] / 255.0f;
      stbtt_FreeBitmap(pixels, nullptr);
      g.x0 = -0.5f * static_cast<float>(w);  // centred horizontally on its ink box
      g.y0 = static_cast<float>(yoff) - line_centre;
      row.push_back(std::move(g));
    }
    impl_->glyphs.push_back(std::move(row));
  }
}

GlyphRenderer::~GlyphRenderer() = default;
GlyphRenderer::GlyphRenderer(GlyphRenderer&&) noexcept = default;
GlyphRenderer& GlyphRenderer::operator=(GlyphRenderer&&) noexcept = default;

int64_t GlyphRenderer::num_fonts() const { return static_cast<int64_t>(impl_->fonts.size()); }
const std::vector<FontFile>& GlyphRenderer::fonts() const { return impl_->fonts; }

at::Tensor GlyphRenderer::render(int64_t font_index, int64_t class_index, uint64_t seed, uint64_t sample) const {
  if (font_index < 0 || font_index >= num_fonts() || class_index < 0 || class_index >= num_classes())
    throw ShapeError(fmt::format("glyph (font {}, class {}) out of range: {} fonts, {} classes", font_index,
                                 class_index, num_fonts(), num_classes()));
  const auto& glyph = impl_->glyphs[static_cast<std::size_t>(font_index)][static_cast<std::size_t>(class_index)];
  const int S = static_cast<int>(options_.image_size);
  SampleRandom random(seed, sample);
  const auto& o = options_;

  // Output pixel -> glyph bitmap: p_bitmap = M (p_image - centre - shift) + offset, where M undoes
  // rotation, shear and scale and converts image pixels to bitmap pixels.
  double angle = 0, scale = 1, shear = 0, tx = 0, ty = 0;
  if (o.augment) {
    angle = random.uniform(-o.max_rotation_deg, o.max_rotation_deg) * 3.141592653589793 / 180.0;
    scale = random.uniform(o.min_scale, o.max_scale);
    shear = random.uniform(-o.max_shear, o.max_shear);
    tx = random.uniform(-o.max_translate, o.max_translate) * S;
    ty = random.uniform(-o.max_translate, o.max_translate) * S;
  }
  const double pixels_per_output = kLinePixels / (o.line_fill * S * scale);
  // Forward map (glyph -> image) is R * Shear * scale; the inverse is Shear^-1 * R^-1 / scale.
  const double c = std::cos(angle), s = std::sin(angle);
  const double r00 = c, r01 = s, r10 = -s, r11 = c;  // R^-1
  const double m00 = (r00 - shear * r10) * pixels_per_output, m01 = (r01 - shear * r11) * pixels_per_output;
  const double m10 = r10 * pixels_per_output, m11 = r11 * pixels_per_output;

  std::vector<float> image(static_cast<std::size_t>(S) * S);
  const double centre = 0.5 * S;
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      const double u = x + 0.5 - centre - tx, v = y + 0.5 - centre - ty;
      const double gx = m00 * u + m01 * v, gy = m10 * u + m11 * v;
      // Average 2x2 sub-samples: the bitmap is ~4x finer than the output, so point sampling aliases.
      float sum = 0;
      for (double dy : {-0.25, 0.25})
        for (double dx : {-0.25, 0.25}) {
          const double sx = gx + m00 * dx + m01 * dy, sy = gy + m10 * dx + m11 * dy;
          sum += glyph.bilinear(static_cast<float>(sx - glyph.x0 - 0.5), static_cast<float>(sy - glyph.y0 - 0.5));
        }
      image[static_cast<std::size_t>(y) * S + x] = sum * 0.25f;
    }

  if (o.augment && random.uniform() < o.thickness_probability) {
    // Fractional 3x3 dilation (thicker strokes) or erosion (thinner), strength in [0.3, 1].
    const bool thicken = random.uniform() < 0.5;
    const auto strength = static_cast<float>(random.uniform(0.3, 1.0));
    std::vector<float> out(image.size());
    for (int y = 0; y < S; ++y)
      for (int x = 0; x < S; ++x) {
        float extreme = image[static_cast<std::size_t>(y) * S + x];
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) {
            const int yy = std::clamp(y + dy, 0, S - 1), xx = std::clamp(x + dx, 0, S - 1);
            const float v = image[static_cast<std::size_t>(yy) * S + xx];
            extreme = thicken ? std::max(extreme, v) : std::min(extreme, v);
          }
        const float here = image[static_cast<std::size_t>(y) * S + x];
        out[static_cast<std::size_t>(y) * S + x] = here + strength * (extreme - here);
      }
    image.swap(out);
  }

  double background = 0, foreground = 1, noise = 0;
  bool invert = false;
  if (o.augment) {
    background = random.uniform(0.0, 0.15);
    foreground = random.uniform(0.7, 1.0);
    noise = random.uniform(0.0, o.max_noise_std);
    invert = random.uniform() < o.invert_probability;
  }
  auto out = at::empty({1, S, S}, at::kByte);
  auto* dst = out.data_ptr<uint8_t>();
  for (std::size_t i = 0; i < image.size(); ++i) {
    double v = background + (foreground - background) * image[i];
    if (noise > 0) v += noise * random.normal();
    if (invert) v = 1.0 - v;
    dst[i] = static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 1.0) * 255.0));
  }
  return out;
}

std::pair<at::Tensor, int64_t> GlyphRenderer::render_sample(uint64_t seed, uint64_t sample) const {
  SampleRandom choice(seed ^ 0x5ca1ab1e0ddba11ULL, sample);  // a stream apart from render()'s
  const auto font = static_cast<int64_t>(choice.next() % static_cast<uint64_t>(num_fonts()));
  const auto cls = static_cast<int64_t>(choice.next() % static_cast<uint64_t>(num_classes()));
  return {render(font, cls, seed, sample), cls};
}

GlyphDataset::GlyphDataset(std::shared_ptr<const GlyphRenderer> renderer, int64_t variants, uint64_t seed,
                           std::string description)
    : renderer_(std::move(renderer)), variants_(variants), seed_(seed), description_(std::move(description)) {
  if (!renderer_) throw ConfigError("renderer", "GlyphDataset needs a renderer");
  if (variants_ < 1) throw ConfigError("variants", fmt::format("must be positive, got {}", variants_));
}

at::Tensor GlyphDataset::images(const std::vector<int64_t>& indices) const {
  detail::check_indices(indices, size(), description_);
  const auto S = renderer_->options().image_size;
  auto out = at::empty({static_cast<int64_t>(indices.size()), 1, S, S}, at::kByte);
  const int64_t classes = renderer_->num_classes(), fonts = renderer_->num_fonts();
  for (std::size_t i = 0; i < indices.size(); ++i) {
    const int64_t index = indices[i];
    out[static_cast<int64_t>(i)].copy_(
        renderer_->render((index / classes) % fonts, index % classes, seed_, static_cast<uint64_t>(index)));
  }
  return out;
}

std::vector<std::string> GlyphDataset::class_names() const {
  std::vector<std::string> names;
  for (char c : renderer_->options().charset) names.emplace_back(1, c);
  return names;
}

}  // namespace clprompt
