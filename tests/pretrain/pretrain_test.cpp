// `clprompt pretrain` (learn/pretrain.hpp) on a tiny ViT and two DejaVu families.
#include <filesystem>
#include <fstream>

#include <torch/types.h>

#include "clprompt/backbone/timm_loader.hpp"
#include "clprompt/core/error.hpp"
#include "clprompt/core/seed.hpp"
#include "clprompt/io/state_dict.hpp"
#include "clprompt/io/safetensors.hpp"
#include "clprompt/pretrain/pretrain.hpp"
#include "test_util.hpp"

#include <catch2/catch.hpp>

namespace fs = std::filesystem;
using namespace clprompt;
using clprompt::test::error_message;
using clprompt::test::TempDir;

namespace {

PretrainConfig tiny_config(const TempDir& fonts) {
  const fs::path dejavu = "/usr/share/fonts/truetype/dejavu";
  fs::copy_file(dejavu / "DejaVuSans.ttf", fonts.path() / "DejaVuSans.ttf");
  fs::copy_file(dejavu / "DejaVuSerif.ttf", fonts.path() / "DejaVuSerif.ttf");
  auto c = default_pretrain_config();
  c.threads = 1;
  c.glyphs.font_dirs = {fonts.str()};
  c.glyphs.charset = "0123";
  c.glyphs.image_size = 8;
  c.backbone = test::tiny_vit(1);
  c.validation_fraction = 0.5;  // one family each side
  c.validation_variants = 2;
  c.steps = 6;
  c.batch_size = 8;
  c.warmup_steps = 2;
  c.checkpoint_every = 2;
  c.validate_every = 3;
  return c;
}

PretrainHooks quiet() {
  PretrainHooks h;
  h.log = nullptr;
  h.progress_bar = false;
  return h;
}

}  // namespace

TEST_CASE("pretrain writes timm-named weights, a report, and resumes bit-for-bit", "[learn][pretrain]") {
  TempDir fonts, full, split;
  const auto config = tiny_config(fonts);
  const auto result = pretrain(config, full.str(), false, quiet());
  CHECK(result.finished);
  CHECK(result.steps_done == 6);
  REQUIRE(fs::exists(result.weights_path));
  // The weights load through the timm loader, the classifier is head.*.
  VisionTransformer vit(config.backbone);
  const auto report = load_timm_vit(vit, result.weights_path);
  CHECK(report.ok());
  CHECK(report.ignored == std::vector<std::string>{"head.bias", "head.weight"});
  // Every parameter trained, the backbone included: its weights left the seeded initialisation.
  const auto weights = read_safetensors(result.weights_path).tensors;
  seed_everything(static_cast<uint64_t>(config.seed));
  const VisionTransformer fresh(config.backbone);
  for (const auto& [name, initial] : state_dict(fresh)) {
    INFO(name);
    CHECK_FALSE(at::equal(initial, weights.at(name)));
  }
  CHECK(read_safetensors(full / "state.safetensors").tensors.count("optimizer.blocks.0.attn.qkv.weight.exp_avg") == 1);
  const auto json = Json::parse(std::ifstream(full / "pretrain.json"));
  CHECK(json.at("history").size() == 2);  // validations at steps 3 and 6
  CHECK(json.at("train_fonts").size() == 1);
  CHECK(json.at("validation_fonts").size() == 1);
  CHECK(json.at("finished") == true);

  // Stop after step 3 (between checkpoints: the stop saves), then resume: identical weights.
  auto hooks = quiet();
  hooks.on_step = [](int64_t step, double) { return step < 3; };
  const auto partial = pretrain(config, split.str(), false, hooks);
  CHECK_FALSE(partial.finished);
  CHECK(partial.steps_done == 3);
  CHECK_FALSE(fs::exists(split / "vit.safetensors"));
  const auto resumed = pretrain(config, split.str(), true, quiet());
  CHECK(resumed.finished);
  const auto a = read_safetensors(result.weights_path).tensors;
  const auto b = read_safetensors(resumed.weights_path).tensors;
  REQUIRE(a.size() == b.size());
  for (const auto& [name, tensor] : a) {
    INFO(name);
    CHECK(at::equal(tensor, b.at(name)));
  }
  CHECK(resumed.validation_accuracy == result.validation_accuracy);
}

TEST_CASE("pretrain resume refuses a different configuration or a broken checkpoint", "[learn][pretrain]") {
  TempDir fonts, out;
  auto config = tiny_config(fonts);
  config.steps = 4;
  CHECK_THAT(error_message<FileError>([&] { pretrain(config, out.str(), true, quiet()); }),
             Catch::Contains("state.safetensors") && Catch::Contains("no checkpoint"));
  auto hooks = quiet();
  hooks.on_step = [](int64_t step, double) { return step < 2; };
  pretrain(config, out.str(), false, hooks);
  auto changed = config;
  changed.lr = 5e-4;
  CHECK_THAT(error_message<ConfigError>([&] { pretrain(changed, out.str(), true, quiet()); }),
             Catch::Contains("'lr'") && Catch::Contains("differs from the checkpoint"));
  changed = config;
  changed.threads = 2;  // allowed to change
  CHECK(pretrain(changed, out.str(), true, quiet()).finished);

  // A truncated checkpoint: the error names the file.
  const auto state = out / "state.safetensors";
  fs::resize_file(state, fs::file_size(state) / 2);
  CHECK_THAT(error_message<FileError>([&] { pretrain(config, out.str(), true, quiet()); }),
             Catch::Contains("state.safetensors"));
}

TEST_CASE("pretrain stops on a diverging loss and keeps the last checkpoint", "[learn][pretrain]") {
  TempDir fonts, out;
  auto config = tiny_config(fonts);
  config.lr = 1e30;
  config.min_lr = 0;
  config.clip_grad_norm = 0;
  config.warmup_steps = 0;
  config.checkpoint_every = 1;
  const auto message = error_message<NumericError>([&] { pretrain(config, out.str(), false, quiet()); });
  CHECK_THAT(message, Catch::Contains("loss is") && Catch::Contains("state.safetensors"));
  REQUIRE(fs::exists(out / "state.safetensors"));
  CHECK_NOTHROW(read_safetensors(out / "state.safetensors"));
}

TEST_CASE("pretrain configuration errors name the field", "[learn][pretrain]") {
  CHECK_THAT(error_message<ConfigError>([] { resolve_pretrain_config(Json{{"steps", 0}}); }), Catch::Contains("steps"));
  CHECK_THAT(error_message<ConfigError>([] { resolve_pretrain_config(Json{{"backbone", {{"image_size", 32}}}}); }),
             Catch::Contains("backbone.image_size"));
  CHECK_THAT(error_message<ConfigError>([] { resolve_pretrain_config(Json{{"glyphs", {{"max_shear", 2}}}}); }),
             Catch::Contains("glyphs.max_shear"));
  CHECK_THAT(error_message<ConfigError>([] { resolve_pretrain_config(Json{{"stpes", 3}}); }), Catch::Contains("stpes"));
  const auto c = default_pretrain_config();
  CHECK(c.lr_at(0) == Approx(c.lr / static_cast<double>(c.warmup_steps)));
  CHECK(c.lr_at(c.warmup_steps) == Approx(c.lr));
  CHECK(c.lr_at(c.steps) == Approx(c.min_lr));
}
