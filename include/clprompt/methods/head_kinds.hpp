#pragma once
// The heads the registry can put on any method: `--head linear | slca` (and `--align` = slca).
// A head kind names a ClassifierHead, its options and how to build it; MethodRegistry
// instantiates every registered method with every kind listed in HeadKinds, so a head added here
// composes with every method, published or user-written.
#include <memory>
#include <string_view>
#include <tuple>

#include "clprompt/backbone/concepts.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/head/slca_head.hpp"

namespace clprompt {

/// The class-incremental linear classifier with train-time masking (L2P, DualPrompt, CODA-Prompt).
struct LinearHeadKind {
  static constexpr std::string_view name = "linear";
  static constexpr std::string_view description = "per-task linear classifiers, other tasks' logits masked in training";
  static constexpr std::string_view run_suffix = "+linear";  ///< added to a method's run name when not its default
  using Options = LinearHeadOptions;
  using Head = LinearHead;
  static std::shared_ptr<Head> make(const Options& options, const BackboneDims& dims) {
    return std::make_shared<LinearHead>(options, dims);
  }
};

/// SLCA's classifier alignment on class statistics with logit normalisation (SLCA, STAR-Prompt, "+ CA").
struct SLCAHeadKind {
  static constexpr std::string_view name = "slca";
  static constexpr std::string_view description =
      "linear classifiers aligned after each task on features sampled from class statistics (SLCA's CA)";
  static constexpr std::string_view run_suffix = "+align";
  using Options = SLCAHeadOptions;
  using Head = SLCAHead;
  static std::shared_ptr<Head> make(const Options& options, const BackboneDims& dims) {
    return make_slca_head(options, dims);
  }
};

/// Every head kind, in the order `clprompt methods` lists them.
using HeadKinds = std::tuple<LinearHeadKind, SLCAHeadKind>;

/// Calls f.template operator()<Kind>() for every head kind.
template <class F>
void for_each_head_kind(F&& f) {
  std::apply([&](auto... kinds) { (f.template operator()<decltype(kinds)>(), ...); }, HeadKinds{});
}

}  // namespace clprompt
