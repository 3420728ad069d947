#pragma once
// The Backbone contract. See docs/policies.md#backbone for an annotated skeleton.
#include <concepts>
#include <cstdint>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "clprompt/backbone/prompts.hpp"

namespace clprompt {
namespace detail {
template <class B>
concept BackboneIsModule = std::derived_from<B, torch::nn::Module>;
template <class B>
concept BackboneHasSizes = requires(const B& b) {
  { b.dim() } -> std::convertible_to<int64_t>;
  { b.depth() } -> std::convertible_to<int64_t>;
  { b.num_heads() } -> std::convertible_to<int64_t>;
};
template <class B>
concept BackboneHasQuery = requires(B& b, const at::Tensor& images) {
  { b.query(images) } -> std::same_as<at::Tensor>;
};
template <class B>
concept BackboneHasForward = requires(B& b, const at::Tensor& images, const Prompts& prompts) {
  { b.forward(images, prompts) } -> std::same_as<at::Tensor>;
};
/// Optional: a forward that can stop before a layer and continue from there, for single-pass
/// queries (QueryOptions::layer >= 1).
template <class B>
concept BackboneSplitsForward = requires(B& b, const at::Tensor& images, const at::Tensor& tokens, int64_t layer,
                                         const Prompts& prompts) {
  { b.tokens_before(images, layer) } -> std::same_as<at::Tensor>;
  { b.query_of(tokens) } -> std::same_as<at::Tensor>;
  { b.forward_features_from(tokens, layer, prompts) } -> std::same_as<at::Tensor>;
};
}  // namespace detail

/// The sizes a selector or head needs to build its parameters.
struct BackboneDims {
  int64_t dim = 0;        ///< embedding width D
  int64_t depth = 0;      ///< number of transformer layers
  int64_t num_heads = 0;  ///< attention heads per layer
};

/// A feature extractor that accepts Prompts (VisionTransformer is the one shipped).
template <class B>
concept Backbone = detail::BackboneIsModule<B> && detail::BackboneHasSizes<B> && detail::BackboneHasQuery<B> &&
                   detail::BackboneHasForward<B>;

template <Backbone B>
BackboneDims dims_of(const B& backbone) {
  return {backbone.dim(), backbone.depth(), backbone.num_heads()};
}

/// Compile-time check with one message per missing member; true when B is a Backbone.
template <class B>
constexpr bool check_backbone() {
  static_assert(detail::BackboneIsModule<B>,
                "Backbone must derive from torch::nn::Module (its parameters are saved, moved and optimised "
                "through it). See docs/policies.md#backbone");
  static_assert(detail::BackboneHasSizes<B>,
                "Backbone requires `int64_t dim() const`, `int64_t depth() const` and `int64_t num_heads() const` "
                "(selectors size their prompts from them). See docs/policies.md#backbone");
  static_assert(detail::BackboneHasQuery<B>,
                "Backbone requires `at::Tensor query(const at::Tensor& images)` returning the un-prompted [B, dim] "
                "query feature. See docs/policies.md#backbone");
  static_assert(detail::BackboneHasForward<B>,
                "Backbone requires `at::Tensor forward(const at::Tensor& images, const Prompts& prompts)` returning "
                "[B, dim] features. See docs/policies.md#backbone");
  return Backbone<B>;
}

}  // namespace clprompt
