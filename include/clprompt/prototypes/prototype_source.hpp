#pragma once
// The PrototypeSource contract: where PrototypeKeys (STAR-Prompt's second level) gets one key per
// class. See docs/policies.md#prototypesource for an annotated skeleton.
//
//   struct MySource : torch::nn::Module {
//     // backbone: queries are the frozen backbone's features; own: provide query(images) below
//     static constexpr clprompt::QuerySource query_source = clprompt::QuerySource::backbone;
//     int64_t key_dim() const;                            // dimension of queries and keys
//     void begin_task(const clprompt::TaskContext& ctx);  // grow per-class state
//     // [ctx.task_classes(), key_dim] L2-normalised keys of the task's classes, computed from a
//     // stream of the task's training queries (no augmentation)
//     at::Tensor prototypes(const clprompt::TaskContext& ctx, const clprompt::FeatureStream& queries);
//     std::string description() const;                   // printed: which source is in use
//     at::Tensor query(const at::Tensor& images);         // only with QuerySource::own
//   };
#include <concepts>
#include <string>
#include <type_traits>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "clprompt/core/feature_stream.hpp"
#include "clprompt/core/query_source.hpp"
#include "clprompt/core/task_context.hpp"

namespace clprompt {
namespace detail {
template <class P>
concept SourceIsModule = std::derived_from<P, torch::nn::Module>;
template <class P>
concept SourceHasQueryKind = requires {
  { P::query_source } -> std::convertible_to<QuerySource>;
  typename std::integral_constant<QuerySource, P::query_source>;
};
template <class P>
concept SourceHasKeyDim = requires(const P& p) {
  { p.key_dim() } -> std::convertible_to<int64_t>;
};
template <class P>
concept SourceHasBeginTask = requires(P& p, const TaskContext& ctx) { p.begin_task(ctx); };
template <class P>
concept SourceHasPrototypes = requires(P& p, const TaskContext& ctx, const FeatureStream& queries) {
  { p.prototypes(ctx, queries) } -> std::same_as<at::Tensor>;
};
template <class P>
concept SourceHasDescription = requires(const P& p) {
  { p.description() } -> std::convertible_to<std::string>;
};
template <class P>
concept SourceHasOwnQuery = requires(P& p, const at::Tensor& images) {
  { p.query(images) } -> std::same_as<at::Tensor>;
};
template <class P>
concept SourceQueryIsDefined =
    SourceHasQueryKind<P> && P::query_source != QuerySource::none && (P::query_source != QuerySource::own || SourceHasOwnQuery<P>);
}  // namespace detail

/// Class prototypes (keys) and the query they are matched against.
template <class P>
concept PrototypeSource = detail::SourceIsModule<P> && detail::SourceHasQueryKind<P> && detail::SourceHasKeyDim<P> &&
                          detail::SourceHasBeginTask<P> && detail::SourceHasPrototypes<P> &&
                          detail::SourceHasDescription<P> && detail::SourceQueryIsDefined<P>;

/// Compile-time check with one message per missing member; true when P is a PrototypeSource.
template <class P>
constexpr bool check_prototype_source() {
  static_assert(detail::SourceIsModule<P>,
                "PrototypeSource must derive from torch::nn::Module (its learned state is saved with the model). "
                "See docs/policies.md#prototypesource");
  static_assert(detail::SourceHasQueryKind<P>,
                "PrototypeSource requires `static constexpr QuerySource query_source` (backbone: queries are the "
                "frozen backbone's features; own: the source encodes images itself). See docs/policies.md#prototypesource");
  static_assert(detail::SourceHasKeyDim<P>,
                "PrototypeSource requires `int64_t key_dim() const` (the dimension of queries and keys). "
                "See docs/policies.md#prototypesource");
  static_assert(detail::SourceHasBeginTask<P>,
                "PrototypeSource requires `void begin_task(const TaskContext& ctx)`. See docs/policies.md#prototypesource");
  static_assert(detail::SourceHasPrototypes<P>,
                "PrototypeSource requires `at::Tensor prototypes(const TaskContext& ctx, const FeatureStream& queries)` "
                "returning [ctx.task_classes(), key_dim()] L2-normalised keys. See docs/policies.md#prototypesource");
  static_assert(detail::SourceHasDescription<P>,
                "PrototypeSource requires `std::string description() const` (printed so that a run says which "
                "source made its keys). See docs/policies.md#prototypesource");
  static_assert(detail::SourceQueryIsDefined<P>,
                "PrototypeSource with query_source backbone or own (keys need a query); with own it requires "
                "`at::Tensor query(const at::Tensor& images)` "
                "returning [B, key_dim()]. See docs/policies.md#prototypesource");
  return PrototypeSource<P>;
}

}  // namespace clprompt
