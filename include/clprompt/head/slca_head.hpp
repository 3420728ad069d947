#pragma once
// SLCAHead: SLCA's classifier (GengDavid/SLCA) as one composition of heads,
// Aligned<LogitNormalized<LinearHead>>: per-task linear classifiers, class statistics after each
// task and classifier alignment on sampled features with logit normalisation. It is also the
// head of any method "+ CA" (clprompt run --method coda-prompt --head slca, or --align).
#include <memory>
#include <tuple>

#include "clprompt/backbone/concepts.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/head/aligned.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/head/logit_normalized.hpp"

namespace clprompt {

using SLCAHead = Aligned<LogitNormalized<LinearHead>>;

/// Options of SLCAHead as one object: the linear classifier's fields, plus "logit_norm" and
/// "alignment".
struct SLCAHeadOptions {
  /// SLCA's stage 1 computes CE on logits[:, known_classes:] against targets - known_classes,
  /// i.e. over the current task's classes only (previous tasks' logits are left out): masking.
  bool mask_other_tasks = true;
  bool bias = true;
  bool freeze_past_tasks = false;  ///< see LinearHeadOptions (SLCA itself: true)
  LogitNormOptions logit_norm;
  AlignmentOptions alignment;

  LinearHeadOptions linear() const {
    return {.mask_other_tasks = mask_other_tasks, .bias = bias, .freeze_past_tasks = freeze_past_tasks};
  }

  static constexpr auto fields() {
    return std::tuple{field("mask_other_tasks", &SLCAHeadOptions::mask_other_tasks),
                      field("bias", &SLCAHeadOptions::bias),
                      field("freeze_past_tasks", &SLCAHeadOptions::freeze_past_tasks),
                      field("logit_norm", &SLCAHeadOptions::logit_norm),
                      field("alignment", &SLCAHeadOptions::alignment)};
  }
};

inline std::shared_ptr<SLCAHead> make_slca_head(const SLCAHeadOptions& options, const BackboneDims& dims) {
  auto linear = std::make_shared<LinearHead>(options.linear(), dims);
  auto normalized = std::make_shared<LogitNormalized<LinearHead>>(options.logit_norm, std::move(linear));
  return std::make_shared<SLCAHead>(options.alignment, std::move(normalized), dims);
}

}  // namespace clprompt
