#pragma once
// Prompts: everything a PromptSelector hands to the backbone for one batch. The three published
// injection styles are all expressible here, so backbones need to know nothing about selectors:
//   - prompt tuning (L2P): tokens inserted after [CLS] at the input;
//   - prefix tuning (DualPrompt, CODA-Prompt): per-layer key/value prefixes concatenated in
//     front of the attention keys and values (queries untouched, sequence length unchanged);
//   - semantic residuals (STAR-Prompt): a per-layer vector added to every attention value.
#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

namespace clprompt {

/// Which output the backbone returns as the feature vector.
enum class Readout {
  class_token,  ///< the [CLS] token after the final norm (DualPrompt, CODA-Prompt, SLCA)
  prompt_mean,  ///< mean of the output tokens at the inserted prompt positions (L2P "prompt" head)
};
constexpr auto enum_names(Readout) {
  return std::array{std::pair{Readout::class_token, "class_token"},
                    std::pair{Readout::prompt_mean, "prompt_mean"}};
}

/// The injection into one transformer layer. Undefined tensors mean "nothing".
struct LayerPrompt {
  at::Tensor key_prefix;      ///< [B, L, D]: prepended to the layer's attention keys
  at::Tensor value_prefix;    ///< [B, L, D]: prepended to the layer's attention values
  at::Tensor value_residual;  ///< [B, D]: added to the value of every token

  bool empty() const { return !key_prefix.defined() && !value_residual.defined(); }
};

/// The prompts for one batch.
struct Prompts {
  at::Tensor input_tokens;          ///< [B, L, D]: inserted after [CLS] before the first layer
  std::vector<LayerPrompt> layers;  ///< index = layer; shorter than depth means "no prompt"
  Readout readout = Readout::class_token;

  bool empty() const {
    if (input_tokens.defined()) return false;
    for (const auto& l : layers)
      if (!l.empty()) return false;
    return true;
  }

  /// The prompt slot of `layer`, created on first use.
  LayerPrompt& layer(int64_t index) {
    if (static_cast<int64_t>(layers.size()) <= index) layers.resize(static_cast<std::size_t>(index) + 1);
    return layers[static_cast<std::size_t>(index)];
  }
  const LayerPrompt* find_layer(int64_t index) const {
    if (index < 0 || index >= static_cast<int64_t>(layers.size())) return nullptr;
    const auto& l = layers[static_cast<std::size_t>(index)];
    return l.empty() ? nullptr : &l;
  }

  /// Appends a key/value prefix to `layer`, after any prefix already there. DualPrompt puts
  /// the E-prompt before the G-prompt in layers that have both, so callers add E first.
  void add_prefix(int64_t index, const at::Tensor& key, const at::Tensor& value) {
    auto& l = layer(index);
    l.key_prefix = l.key_prefix.defined() ? at::cat({l.key_prefix, key}, 1) : key;
    l.value_prefix = l.value_prefix.defined() ? at::cat({l.value_prefix, value}, 1) : value;
  }

  /// Adds a value residual to `layer` (summed with any residual already there).
  void add_value_residual(int64_t index, const at::Tensor& residual) {
    auto& l = layer(index);
    l.value_residual = l.value_residual.defined() ? l.value_residual + residual : residual;
  }
};

}  // namespace clprompt
