#pragma once
// The PrototypeSource contract: where PrototypeKeys (STAR-Prompt's second level) gets one key per
// class. See docs/policies.md#prototypesource for an annotated skeleton.
//
//   struct MySource : torch::nn::Module {
//     static constexpr bool uses_backbone_query = true;  // false: provide query(images) below
//     int64_t key_dim() const;                            // dimension of queries and keys
//     void begin_task(const clprompt::TaskContext& ctx);  // grow per-class state
//     // [ctx.task_classes(), key_dim] L2-normalised keys of the task's classes, computed from a
//     // stream of the task's training queries (no augmentation)
//     at::Tensor prototypes(const clprompt::TaskContext& ctx, const clprompt::FeatureStream& queries);
//     std::string description() const;                   // printed: which source is in use
//     at::Tensor query(const at::Tensor& images);         // only if !uses_backbone_query
//   };
#include <concepts>
#include <string>
#include <type_traits>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "clprompt/model/feature_stream.hpp"
#include "clprompt/model/task_context.hpp"

namespace clprompt {
namespace detail {
template <class P>
concept SourceIsModule = std::derived_from<P, torch::nn::Module>;
template <class P>
concept SourceHasQueryKind = requires { typename std::bool_constant<P::uses_backbone_query>; };
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
concept SourceQueryIsDefined = SourceHasQueryKind<P> && (P::uses_backbone_query || SourceHasOwnQuery<P>);
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
                "PrototypeSource requires `static constexpr bool uses_backbone_query` (true: queries are the frozen "
                "backbone's features; false: the source encodes images itself). See docs/policies.md#prototypesource");
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
                "PrototypeSource with uses_backbone_query = false requires `at::Tensor query(const at::Tensor& images)` "
                "returning [B, key_dim()]. See docs/policies.md#prototypesource");
  return PrototypeSource<P>;
}

}  // namespace clprompt
