#pragma once
// QuerySource: where a prompt selector (or a prototype source) gets the query it matches its
// keys against. One notion for every policy; ContinualModel computes the query accordingly.
#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "clprompt/core/options.hpp"

namespace clprompt {

enum class QuerySource {
  none,      ///< no query: select() gets an empty [B, 0] tensor and no extra forward pass runs
  backbone,  ///< the frozen, un-prompted backbone's [CLS] feature [B, D], one extra forward pass
             ///< without gradient (L2P, DualPrompt, CODA-Prompt)
  own,       ///< the policy's own `at::Tensor query(const at::Tensor& images)`, e.g. a second
             ///< frozen encoder (STAR-Prompt: CLIP's image embedding)
};
constexpr auto enum_names(QuerySource) {
  return std::array{std::pair{QuerySource::none, "none"}, std::pair{QuerySource::backbone, "backbone"},
                    std::pair{QuerySource::own, "own"}};
}

/// Where a key-query method (QuerySource::backbone) reads its query (method_options.query).
/// layer 0: the published two-pass form, a separate un-prompted forward whose final-norm [CLS]
/// is the query. layer ℓ ≥ 1: single pass (after OS-Prompt, Kim et al. ECCV'24): layers [0, ℓ) of
/// the forward run once without prompts, the final norm of the [CLS] token entering layer ℓ is
/// the query, and the selected prompts enter layers ℓ and later of the same pass (prompt tuning's
/// tokens are inserted before layer ℓ). Prompts at a layer below ℓ are refused.
struct QueryOptions {
  int64_t layer = 0;

  static constexpr auto fields() { return std::tuple{field("layer", &QueryOptions::layer)}; }
  void validate(const std::string& path) const {
    require_option(layer >= 0, path, "layer", fmt::format("must be >= 0, got {}", layer));
  }
  /// ConfigError unless the layer exists in a backbone of `depth` layers.
  void check_depth(int64_t depth, const std::string& path) const {
    require_option(layer < depth, path, "layer",
                   fmt::format("must be a layer of the backbone, below its depth {}, got {}", depth, layer));
  }
  /// ConfigError naming `layers_path` when a prompted layer lies below the query's layer.
  void check_prompt_layers(const std::vector<int64_t>& layers, const std::string& path,
                           const std::string& layers_path) const {
    if (layer == 0 || layers.empty()) return;
    const int64_t lowest = *std::min_element(layers.begin(), layers.end());
    if (lowest < layer)
      throw ConfigError(layers_path, fmt::format("prompts layer {} lies below the single-pass query's layer {} ({}): "
                                                 "layers before it run once without prompts; move the prompts to "
                                                 "layers >= {} or set {} = 0",
                                                 lowest, layer, detail::join_path(path, "layer"), layer,
                                                 detail::join_path(path, "layer")));
  }
};

}  // namespace clprompt
