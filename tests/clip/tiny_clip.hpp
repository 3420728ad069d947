#pragma once
// A CLIP small enough for unit tests, and a complete CLIP model directory (weights + Hugging
// Face tokenizer files) built from it, for tests of the CLIP loaders and of methods that use
// CLIP (STAR-Prompt).
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "clprompt/clip/clip_model.hpp"
#include "clprompt/clip/clip_loader.hpp"
#include "clip/tiny_vocab.hpp"

namespace clprompt::test {

/// Tiny CLIP sizes: embed 16, widths 64 (one head each: the loader infers heads = width / 64),
/// 2 layers per tower, context 16, the tiny tokenizer vocabulary (531 ids, tiny_vocab.hpp).
inline ClipOptions tiny_clip_options(int64_t image_size = 8, int64_t patch_size = 4) {
  ClipOptions o;
  o.embed_dim = 16;
  o.image_size = image_size;
  o.patch_size = patch_size;
  o.vision_width = 64;
  o.vision_layers = 2;
  o.vision_heads = 1;
  o.context_length = 16;
  o.vocab_size = kTinyVocabSize;
  o.text_width = 64;
  o.text_layers = 2;
  o.text_heads = 1;
  return o;
}

/// Overwrites every parameter with seeded random values, including the biases and LayerNorm
/// parameters that initialisation leaves at 0 / 1, so that a tensor loaded under the wrong
/// name or layout changes the outputs. Independent of the global RNG.
inline void randomize_clip(ClipModel& model, uint64_t seed) {
  at::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (const auto& item : model.named_parameters()) {
    auto p = item.value();
    const auto& name = item.key();
    const bool norm_weight = name.find(".ln_") != std::string::npos || name.starts_with("ln_");
    if (name == "logit_scale") {
      p.fill_(std::log(100.0));  // OpenAI's trained value
    } else if (norm_weight && name.ends_with(".weight")) {
      p.normal_(1.0, 0.1, gen);
    } else {
      p.normal_(0.0, 0.1, gen);
    }
  }
}

/// A tiny CLIP with seeded random parameters.
inline std::shared_ptr<ClipModel> tiny_clip_model(uint64_t seed = 0, ClipOptions options = tiny_clip_options()) {
  auto model = std::make_shared<ClipModel>(options);
  randomize_clip(*model, seed);
  return model;
}

/// Writes a tiny CLIP directory into `dir` (which must exist) as distributed: weights in
/// `naming` (model.safetensors for Hugging Face, open_clip_model.safetensors for OpenAI /
/// open_clip) and the tiny vocabulary as vocab.json + merges.txt. load_clip_directory(dir)
/// reads it back. Returns the model's options; the same arguments write the same weights.
inline ClipOptions write_tiny_clip_dir(const std::string& dir, ClipNaming naming, int64_t image_size = 8,
                                       int64_t patch_size = 4, uint64_t seed = 0) {
  const auto model = tiny_clip_model(seed, tiny_clip_options(image_size, patch_size));
  const char* weights = naming == ClipNaming::huggingface ? "model.safetensors" : "open_clip_model.safetensors";
  save_clip(*model, dir + "/" + weights, naming);
  write_tiny_hf_tokenizer(dir);
  return model->options();
}

}  // namespace clprompt::test
