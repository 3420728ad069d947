#pragma once
// The PromptSelector contract. See docs/policies.md#promptselector for an annotated skeleton.
//
//   struct MySelector : torch::nn::Module {
//     static constexpr bool needs_query = false;     // true: select() gets the backbone's query
//     clprompt::Selection select(const at::Tensor& query, const clprompt::TaskContext& ctx);
//     void begin_task(const clprompt::TaskContext& ctx);  // optional: grow / re-initialise
//     void end_task(const clprompt::TaskContext& ctx);    // optional: freeze
//     // optional: its own query encoder instead of the backbone's (STAR-Prompt: CLIP's image tower)
//     at::Tensor query(const at::Tensor& images);
//     // optional: a pass over the task's training queries before training (prototype keys)
//     void prepare_task(const clprompt::TaskContext& ctx, const clprompt::FeatureStream& queries);
//   };
#include <concepts>
#include <type_traits>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "clprompt/backbone/prompts.hpp"
#include "clprompt/model/feature_stream.hpp"
#include "clprompt/model/task_context.hpp"

namespace clprompt {

/// What a selector returns for one batch.
struct Selection {
  Prompts prompts;     ///< the injection for the backbone
  at::Tensor aux_loss; ///< scalar added to the classification loss (key pull, orthogonality); undefined = none
};

namespace detail {
template <class S>
concept SelectorIsModule = std::derived_from<S, torch::nn::Module>;
template <class S>
concept SelectorHasNeedsQuery = requires { typename std::bool_constant<S::needs_query>; };
template <class S>
concept SelectorHasSelect = requires(S& s, const at::Tensor& query, const TaskContext& ctx) {
  { s.select(query, ctx) } -> std::same_as<Selection>;
};
template <class S>
concept SelectorHasBeginTask = requires(S& s, const TaskContext& ctx) { s.begin_task(ctx); };
template <class S>
concept SelectorHasEndTask = requires(S& s, const TaskContext& ctx) { s.end_task(ctx); };
/// Optional: the selector computes its own [B, K] query from the (normalised) input images,
/// e.g. with a second frozen encoder; the model then never calls the backbone's query().
template <class S>
concept SelectorHasOwnQuery = requires(S& s, const at::Tensor& images) {
  { s.query(images) } -> std::same_as<at::Tensor>;
};
/// Optional: called after begin_task and before training with a stream of the task's training
/// queries (no augmentation), e.g. to compute class prototypes that training then selects with.
template <class S>
concept SelectorHasPrepareTask = requires(S& s, const TaskContext& ctx, const FeatureStream& queries) {
  s.prepare_task(ctx, queries);
};
}  // namespace detail

/// Turns a query into Prompts (and an auxiliary loss).
template <class S>
concept PromptSelector = detail::SelectorIsModule<S> && detail::SelectorHasNeedsQuery<S> && detail::SelectorHasSelect<S>;

/// Compile-time check with one message per missing member; true when S is a PromptSelector.
template <class S>
constexpr bool check_prompt_selector() {
  static_assert(detail::SelectorIsModule<S>,
                "PromptSelector must derive from torch::nn::Module (it owns its prompt parameters). "
                "See docs/policies.md#promptselector");
  static_assert(detail::SelectorHasNeedsQuery<S>,
                "PromptSelector requires `static constexpr bool needs_query` (true if select() uses the frozen "
                "backbone's query; false skips that extra forward pass). See docs/policies.md#promptselector");
  static_assert(detail::SelectorHasSelect<S>,
                "PromptSelector requires `Selection select(const at::Tensor& query, const TaskContext& ctx)` "
                "(query is [B, dim], or [B, 0] when needs_query is false). See docs/policies.md#promptselector");
  return PromptSelector<S>;
}

}  // namespace clprompt
