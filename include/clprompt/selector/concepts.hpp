#pragma once
// The PromptSelector contract. See docs/policies.md#promptselector for an annotated skeleton.
//
//   struct MySelector : torch::nn::Module {
//     // where select()'s query comes from: none ([B, 0]), backbone (the frozen backbone's [CLS],
//     // one extra forward pass) or own (the query() below)
//     static constexpr clprompt::QuerySource query_source = clprompt::QuerySource::none;
//     clprompt::Selection select(const at::Tensor& query, const clprompt::TaskContext& ctx);
//     void begin_task(const clprompt::TaskContext& ctx);  // optional: grow / re-initialise
//     void end_task(const clprompt::TaskContext& ctx);    // optional: freeze
//     // with query_source == own: its own query encoder (STAR-Prompt: CLIP's image tower)
//     at::Tensor query(const at::Tensor& images);
//     // optional: a pass over the task's training queries before training (prototype keys)
//     void prepare_task(const clprompt::TaskContext& ctx, const clprompt::FeatureStream& queries);
//   };
// An optional hook declared under its name with another signature is a compile error that names
// the expected signature (it would otherwise never be called).
#include <concepts>
#include <type_traits>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "clprompt/backbone/prompts.hpp"
#include "clprompt/core/feature_stream.hpp"
#include "clprompt/core/query_source.hpp"
#include "clprompt/core/task_context.hpp"

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
concept SelectorHasQuerySource = requires {
  { S::query_source } -> std::convertible_to<QuerySource>;
  typename std::integral_constant<QuerySource, S::query_source>;  // a compile-time constant
};
template <class S>
concept SelectorHasSelect = requires(S& s, const at::Tensor& query, const TaskContext& ctx) {
  { s.select(query, ctx) } -> std::same_as<Selection>;
};
template <class S>
concept SelectorHasBeginTask = requires(S& s, const TaskContext& ctx) { s.begin_task(ctx); };
template <class S>
concept SelectorHasEndTask = requires(S& s, const TaskContext& ctx) { s.end_task(ctx); };
/// With query_source == own: the selector computes its own [B, K] query from the (normalised)
/// input images, e.g. with a second frozen encoder; the backbone's query() is never called.
template <class S>
concept SelectorHasOwnQuery = requires(S& s, const at::Tensor& images) {
  { s.query(images) } -> std::same_as<at::Tensor>;
};
template <class S>
concept SelectorQueryIsDefined = SelectorHasQuerySource<S> && (S::query_source != QuerySource::own || SelectorHasOwnQuery<S>);
/// Optional: called after begin_task and before training with a stream of the task's training
/// queries (no augmentation), e.g. to compute class prototypes that training then selects with.
template <class S>
concept SelectorHasPrepareTask = requires(S& s, const TaskContext& ctx, const FeatureStream& queries) {
  s.prepare_task(ctx, queries);
};
// A member with the hook's name (a single, non-template one): if it is there but the hook's
// concept does not hold, its signature is wrong.
template <class S>
concept SelectorNamesBeginTask = requires { &S::begin_task; };
template <class S>
concept SelectorNamesEndTask = requires { &S::end_task; };
template <class S>
concept SelectorNamesQuery = requires { &S::query; };
template <class S>
concept SelectorNamesPrepareTask = requires { &S::prepare_task; };
}  // namespace detail

/// Turns a query into Prompts (and an auxiliary loss).
template <class S>
concept PromptSelector = detail::SelectorIsModule<S> && detail::SelectorHasQuerySource<S> &&
                         detail::SelectorHasSelect<S> && detail::SelectorQueryIsDefined<S>;

/// Compile-time check with one message per missing member; true when S is a PromptSelector.
template <class S>
constexpr bool check_prompt_selector() {
  static_assert(detail::SelectorIsModule<S>,
                "PromptSelector must derive from torch::nn::Module (it owns its prompt parameters). "
                "See docs/policies.md#promptselector");
  static_assert(detail::SelectorHasQuerySource<S>,
                "PromptSelector requires `static constexpr QuerySource query_source` (none: no query; backbone: the "
                "frozen backbone's [CLS], one extra forward pass; own: its own query(images)). "
                "See docs/policies.md#promptselector");
  static_assert(detail::SelectorHasSelect<S>,
                "PromptSelector requires `Selection select(const at::Tensor& query, const TaskContext& ctx)` "
                "(query is [B, dim], or [B, 0] with QuerySource::none). See docs/policies.md#promptselector");
  static_assert(detail::SelectorQueryIsDefined<S>,
                "PromptSelector with query_source == QuerySource::own requires `at::Tensor query(const at::Tensor& "
                "images)` returning [B, K]. See docs/policies.md#promptselector");
  static_assert(!detail::SelectorNamesBeginTask<S> || detail::SelectorHasBeginTask<S>,
                "PromptSelector's optional hook has the wrong signature: expected `void begin_task(const TaskContext& "
                "ctx)`. See docs/policies.md#promptselector");
  static_assert(!detail::SelectorNamesEndTask<S> || detail::SelectorHasEndTask<S>,
                "PromptSelector's optional hook has the wrong signature: expected `void end_task(const TaskContext& "
                "ctx)`. See docs/policies.md#promptselector");
  static_assert(!detail::SelectorNamesQuery<S> || detail::SelectorHasOwnQuery<S>,
                "PromptSelector's optional hook has the wrong signature: expected `at::Tensor query(const at::Tensor& "
                "images)`. See docs/policies.md#promptselector");
  static_assert(!detail::SelectorNamesPrepareTask<S> || detail::SelectorHasPrepareTask<S>,
                "PromptSelector's optional hook has the wrong signature: expected `void prepare_task(const "
                "TaskContext& ctx, const FeatureStream& queries)`. See docs/policies.md#promptselector");
  return PromptSelector<S>;
}

}  // namespace clprompt
