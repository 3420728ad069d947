#pragma once
// QuerySource: where a prompt selector (or a prototype source) gets the query it matches its
// keys against. One notion for every policy; ContinualModel computes the query accordingly.
#include <array>
#include <utility>

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

}  // namespace clprompt
