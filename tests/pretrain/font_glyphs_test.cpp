// Glyph rendering (data/font_glyphs.hpp) on real fonts from fonts-dejavu-core.
#include <filesystem>
#include <fstream>
#include <set>

#include <ATen/ATen.h>

#include "clprompt/core/error.hpp"
#include "clprompt/pretrain/font_glyphs.hpp"
#include "test_util.hpp"

#include <catch2/catch.hpp>

namespace fs = std::filesystem;
using namespace clprompt;
using clprompt::test::error_message;
using clprompt::test::TempDir;

namespace {

const fs::path kDejaVu = "/usr/share/fonts/truetype/dejavu";

/// A font directory with two DejaVu families (Sans in two styles, Serif), a byte-identical
/// duplicate, a file that is not a font and a font whose name says it is a symbol font.
void make_font_dir(const TempDir& dir) {
  fs::create_directories(dir.path() / "a");
  fs::create_directories(dir.path() / "b");
  fs::copy_file(kDejaVu / "DejaVuSans.ttf", dir.path() / "a" / "DejaVuSans.ttf");
  fs::copy_file(kDejaVu / "DejaVuSans-Bold.ttf", dir.path() / "a" / "DejaVuSans-Bold.ttf");
  fs::copy_file(kDejaVu / "DejaVuSerif.ttf", dir.path() / "b" / "DejaVuSerif.otf");
  fs::copy_file(kDejaVu / "DejaVuSans.ttf", dir.path() / "b" / "zz-duplicate.ttf");
  fs::copy_file(kDejaVu / "DejaVuSans.ttf", dir.path() / "b" / "StandardSymbols.ttf");
  std::ofstream(dir.path() / "b" / "broken.ttf") << "not a font";
}

GlyphOptions options_for(const TempDir& dir) {
  GlyphOptions o;
  o.font_dirs = {dir.str()};
  o.charset = "0123ABab";
  o.image_size = 20;
  return o;
}

double mean_of(const at::Tensor& t) { return t.to(at::kDouble).mean().item<double>(); }

}  // namespace

TEST_CASE("discover_fonts finds usable fonts sorted, drops duplicates, broken and symbol fonts", "[data][glyphs]") {
  REQUIRE(fs::exists(kDejaVu / "DejaVuSans.ttf"));
  TempDir dir;
  make_font_dir(dir);
  const auto fonts = discover_fonts(options_for(dir));
  REQUIRE(fonts.size() == 3);
  CHECK(fs::path(fonts[0].path).filename() == "DejaVuSans-Bold.ttf");
  CHECK(fs::path(fonts[1].path).filename() == "DejaVuSans.ttf");
  CHECK(fs::path(fonts[2].path).filename() == "DejaVuSerif.otf");
  CHECK(fonts[0].family == "DejaVu Sans");
  CHECK(fonts[1].family == "DejaVu Sans");
  CHECK(fonts[2].family == "DejaVu Serif");
}

TEST_CASE("discover_fonts errors name the directory or the field", "[data][glyphs]") {
  TempDir dir;
  auto o = options_for(dir);
  o.font_dirs = {dir.file("missing")};
  CHECK_THAT(error_message<FileError>([&] { discover_fonts(o); }),
             Catch::Contains(dir.file("missing")) && Catch::Contains("font directory not found"));
  o.font_dirs = {dir.str()};  // empty directory
  CHECK_THAT(error_message<ConfigError>([&] { discover_fonts(o); }), Catch::Contains("font_dirs"));
  o.charset = "aa";
  CHECK_THAT(error_message<ConfigError>([&] { discover_fonts(o); }), Catch::Contains("charset"));
}

TEST_CASE("split_by_family keeps families whole and depends only on the seed", "[data][glyphs]") {
  std::vector<FontFile> fonts;
  for (int f = 0; f < 10; ++f)
    for (int style = 0; style < 3; ++style) fonts.push_back({fmt::format("/f{}-{}.ttf", f, style), fmt::format("Family {}", f)});
  const auto [train, val] = split_by_family(fonts, 0.3, 7);
  CHECK(val.size() == 9);  // ceil(0.3 * 10) = 3 families of 3 styles
  CHECK(train.size() == 21);
  std::set<std::string> train_families, val_families;
  for (const auto& f : train) train_families.insert(f.family);
  for (const auto& f : val) val_families.insert(f.family);
  CHECK(val_families.size() == 3);
  for (const auto& family : val_families) CHECK(train_families.count(family) == 0);
  const auto again = split_by_family(fonts, 0.3, 7);
  CHECK(again.second.front().path == val.front().path);
  bool differs = false;
  for (uint64_t seed = 8; seed < 16 && !differs; ++seed) differs = split_by_family(fonts, 0.3, seed).second.front().path != val.front().path;
  CHECK(differs);
  CHECK_THAT(error_message<ConfigError>([&] { split_by_family(fonts, 0.95, 1); }),
             Catch::Contains("validation_fraction"));
}

TEST_CASE("GlyphRenderer is deterministic per (seed, sample) and draws centred glyphs", "[data][glyphs]") {
  TempDir dir;
  make_font_dir(dir);
  auto o = options_for(dir);
  const auto fonts = discover_fonts(o);
  GlyphRenderer renderer(fonts, o);
  REQUIRE(renderer.num_fonts() == 3);
  REQUIRE(renderer.num_classes() == 8);

  const auto a = renderer.render(1, 4, 11, 5);
  CHECK(a.sizes() == at::IntArrayRef({1, 20, 20}));
  CHECK(a.scalar_type() == at::kByte);
  CHECK(at::equal(a, renderer.render(1, 4, 11, 5)));
  CHECK_FALSE(at::equal(a, renderer.render(1, 4, 11, 6)));
  CHECK_FALSE(at::equal(a, renderer.render(1, 4, 12, 5)));
  const auto [image, label] = renderer.render_sample(11, 5);
  CHECK(at::equal(image, renderer.render_sample(11, 5).first));
  CHECK((label >= 0 && label < 8));

  // Without augmentation: a white glyph on black, its ink centred horizontally, and different
  // characters and fonts draw different images.
  auto plain = o;
  plain.augment = false;
  GlyphRenderer clean(fonts, plain);
  const auto zero = clean.render(1, 0, 0, 0)[0].to(at::kDouble);
  CHECK(zero.max().item<double>() > 200);
  CHECK(zero[0][0].item<double>() == 0);
  const auto columns = zero.sum(0);
  const auto x = at::arange(20, at::kDouble) + 0.5;
  const double centre = (columns * x).sum().item<double>() / columns.sum().item<double>();
  CHECK(std::abs(centre - 10.0) < 1.0);
  CHECK_FALSE(at::equal(clean.render(1, 0, 0, 0), clean.render(1, 1, 0, 0)));
  CHECK_FALSE(at::equal(clean.render(0, 4, 0, 0), clean.render(2, 4, 0, 0)));  // Sans Bold vs Serif 'A'
  // Bold draws more ink than regular.
  CHECK(mean_of(clean.render(0, 4, 0, 0)) > mean_of(clean.render(1, 4, 0, 0)) * 1.15);
  // Without augmentation the seed and sample do not matter.
  CHECK(at::equal(clean.render(0, 4, 3, 3), clean.render(0, 4, 9, 9)));

  // Inversion always: light background.
  auto inverted = o;
  inverted.invert_probability = 1.0;
  inverted.max_noise_std = 0.0;
  GlyphRenderer dark_on_light(fonts, inverted);
  CHECK(dark_on_light.render(0, 0, 1, 1)[0][0][0].item<int>() > 200);

  CHECK_THAT(error_message<ShapeError>([&] { renderer.render(3, 0, 0, 0); }), Catch::Contains("out of range"));
}

TEST_CASE("GlyphDataset maps indices to (variant, font, class) and validates options", "[data][glyphs]") {
  TempDir dir;
  make_font_dir(dir);
  auto o = options_for(dir);
  auto renderer = std::make_shared<const GlyphRenderer>(discover_fonts(o), o);
  GlyphDataset data(renderer, 2, 5, "glyphs");
  CHECK(data.size() == 2 * 3 * 8);
  CHECK(data.num_classes() == 8);
  CHECK(data.label(8 + 5) == 5);
  CHECK(data.class_names() == std::vector<std::string>{"0", "1", "2", "3", "A", "B", "a", "b"});
  const auto batch = data.images({0, 13, 47});
  CHECK(batch.sizes() == at::IntArrayRef({3, 1, 20, 20}));
  CHECK(at::equal(batch[1], renderer->render(1, 5, 5, 13)));
  CHECK_THROWS_AS(data.images({48}), ShapeError);

  auto bad = o;
  bad.min_scale = 2.0;
  CHECK_THAT(error_message<ConfigError>([&] { GlyphRenderer(discover_fonts(o), bad); }), Catch::Contains("min_scale"));
  auto broken = std::vector<FontFile>{{dir.file("b/broken.ttf"), "x"}};
  CHECK_THAT(error_message<FileError>([&] { GlyphRenderer(broken, o); }), Catch::Contains("broken.ttf"));
}
