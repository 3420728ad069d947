#pragma once
// The heads the registry can put on any method: `--head linear | slca | ranpac | prototype`
// (and `--align` = slca).
// A head kind names a ClassifierHead, its options and how to build it (optionally, with
// `static void embedded(Options&)`, its options on the embedded default); MethodRegistry
// instantiates every registered method with every kind listed in HeadKinds, so a head added here
// composes with every method, published or user-written.
#include <memory>
#include <string_view>
#include <tuple>

#include "clprompt/backbone/concepts.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/head/prototype.hpp"
#include "clprompt/head/ranpac.hpp"
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

/// RanPAC's random projection and ridge-regression classifier, solved after each task; whatever the
/// method trains, it trains under the linear head (RanPAC, "+ RanPAC").
struct RanPACHeadKind {
  static constexpr std::string_view name = "ranpac";
  static constexpr std::string_view description =
      "random projection + ReLU + ridge regression on accumulated Gram statistics, solved after each task (RanPAC)";
  static constexpr std::string_view run_suffix = "+ranpac";
  using Options = RanPACHeadOptions;
  using Head = RanPACHead<LinearHead>;
  /// On the embedded default (a 128-d ViT): M = 2048 instead of the published 10 000 for 768-d
  /// features (a 16 × 128 expansion; G then takes 32 MB, not 800 MB, in every checkpoint).
  static void embedded(Options& options) { options.ranpac.projection_dim = 2048; }
  static std::shared_ptr<Head> make(const Options& options, const BackboneDims& dims) {
    return make_ranpac_head(options, dims);
  }
};

/// Class-mean prototypes with cosine classification (SimpleCIL, APER); training under the linear head.
struct PrototypeHeadKind {
  static constexpr std::string_view name = "prototype";
  static constexpr std::string_view description =
      "cosine similarity to class-mean prototypes of the training features (SimpleCIL, APER)";
  static constexpr std::string_view run_suffix = "+prototype";
  using Options = PrototypeHeadKindOptions;
  using Head = PrototypeHead<LinearHead>;
  static std::shared_ptr<Head> make(const Options& options, const BackboneDims& dims) {
    return make_prototype_head(options, dims);
  }
};

/// Every head kind, in the order `clprompt methods` lists them.
using HeadKinds = std::tuple<LinearHeadKind, SLCAHeadKind, RanPACHeadKind, PrototypeHeadKind>;

/// Calls f.template operator()<Kind>() for every head kind.
template <class F>
void for_each_head_kind(F&& f) {
  std::apply([&](auto... kinds) { (f.template operator()<decltype(kinds)>(), ...); }, HeadKinds{});
}

}  // namespace clprompt
