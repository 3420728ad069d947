#pragma once
// Supervised pre-training of a ViT on rendered font glyphs (`clprompt pretrain`): the recipe that
// produced the shipped default backbone (models/). AdamW with linear warm-up and cosine decay,
// label smoothing, gradient clipping; validation on whole held-out font families; atomic
// checkpoints that resume bit-for-bit (same thread count) because every batch is a function of
// (seed, step) only.
#include <cstdint>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/pretrain/font_glyphs.hpp"
#include "clprompt/data/transforms.hpp"

namespace clprompt {

struct PretrainConfig {
  int64_t seed = 1993;  ///< fixes the font split, initialisation and every batch
  int64_t threads = 0;  ///< 0: $OMP_NUM_THREADS, else all cores
  std::string device = "auto";
  GlyphOptions glyphs;
  double validation_fraction = 0.15;  ///< of the font families, held out whole
  int64_t validation_variants = 2;    ///< renderings of each (held-out font, character)
  ViTOptions backbone;                ///< default: the embedded default's ViT (28 px, patch 4, D 128, depth 6)
  TransformOptions transform;         ///< ImageNet normalisation, as the continual-learning runs use
  int64_t steps = 1800;
  int64_t batch_size = 128;
  double lr = 1e-3;                   ///< AdamW peak learning rate
  double min_lr = 1e-5;               ///< cosine floor
  int64_t warmup_steps = 100;         ///< linear warm-up from 0
  double weight_decay = 0.05;         ///< not applied to biases, norms, pos_embed, cls_token
  std::vector<double> adam_betas{0.9, 0.999};
  double label_smoothing = 0.1;
  double clip_grad_norm = 1.0;        ///< 0 = off
  int64_t checkpoint_every = 200;     ///< steps between atomic state.safetensors writes
  int64_t validate_every = 300;       ///< steps between validations (and at the end)

  static constexpr auto fields() {
    return std::tuple{
        field("seed", &PretrainConfig::seed), field("threads", &PretrainConfig::threads),
        field("device", &PretrainConfig::device), field("glyphs", &PretrainConfig::glyphs),
        field("validation_fraction", &PretrainConfig::validation_fraction),
        field("validation_variants", &PretrainConfig::validation_variants),
        field("backbone", &PretrainConfig::backbone), field("transform", &PretrainConfig::transform),
        field("steps", &PretrainConfig::steps), field("batch_size", &PretrainConfig::batch_size),
        field("lr", &PretrainConfig::lr), field("min_lr", &PretrainConfig::min_lr),
        field("warmup_steps", &PretrainConfig::warmup_steps), field("weight_decay", &PretrainConfig::weight_decay),
        field("adam_betas", &PretrainConfig::adam_betas), field("label_smoothing", &PretrainConfig::label_smoothing),
        field("clip_grad_norm", &PretrainConfig::clip_grad_norm),
        field("checkpoint_every", &PretrainConfig::checkpoint_every),
        field("validate_every", &PretrainConfig::validate_every)};
  }
  void validate(const std::string& path) const;

  /// Learning rate at `step` (0-based): linear warm-up, then cosine from lr to min_lr.
  double lr_at(int64_t step) const;
};

/// The recipe of the shipped backbone: the embedded default's ViT, fonts from the pinned
/// packages of scripts/pretrain.sh.
PretrainConfig default_pretrain_config();

/// default_pretrain_config() with a JSON merge patch applied, strictly parsed and validated.
PretrainConfig resolve_pretrain_config(const Json& overrides = Json::object());

struct PretrainHooks {
  std::function<void(const std::string&)> log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  bool progress_bar = true;  ///< on a terminal only
  /// Called after every step with (step, loss); return false to stop (the state is saved).
  std::function<bool(int64_t, double)> on_step;
};

struct PretrainResult {
  int64_t steps_done = 0;
  bool finished = false;             ///< all config.steps done (false when on_step stopped it)
  double validation_accuracy = 0.0;  ///< % on held-out fonts at the last validation
  double seconds = 0.0;              ///< wall time of this invocation
  std::string weights_path;          ///< <out>/vit.safetensors when finished
};

/// Pre-trains into `out_dir`: state.safetensors (resumable, written atomically every
/// checkpoint_every steps), pretrain.json (recipe, fonts, loss and validation history, wall
/// time) and, when finished, vit.safetensors (timm names; the glyph classifier as head.*).
/// With `resume`, continues from out_dir/state.safetensors, which must come from the same
/// configuration (threads and device aside): a mismatch is a ConfigError naming the field.
/// A NaN or infinite loss throws NumericError with the step; the last checkpoint is kept.
PretrainResult pretrain(const PretrainConfig& config, const std::string& out_dir, bool resume = false,
                        const PretrainHooks& hooks = {});

}  // namespace clprompt
