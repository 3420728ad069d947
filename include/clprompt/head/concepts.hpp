#pragma once
// The ClassifierHead contract. See docs/policies.md#classifierhead for an annotated skeleton.
//
//   struct MyHead : torch::nn::Module {
//     void begin_task(const clprompt::TaskContext& ctx);   // grow to ctx.classes_seen() outputs
//     at::Tensor logits(const at::Tensor& features, const clprompt::TaskContext& ctx);   // [B, classes_seen]
//     at::Tensor loss(const at::Tensor& logits, const at::Tensor& targets, const clprompt::TaskContext& ctx);
//     void consolidate(const clprompt::TaskContext& ctx, const clprompt::FeatureStream& features);  // optional
//     void end_task(const clprompt::TaskContext& ctx);     // optional
//     // optional: the loss of classifier alignment (Aligned<>) on sampled features; default CE
//     at::Tensor alignment_loss(const at::Tensor& logits, const at::Tensor& targets, const clprompt::TaskContext& ctx);
//   };
// An optional hook declared under its name with another signature is a compile error that names
// the expected signature (it would otherwise never be called).
#include <concepts>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "clprompt/core/feature_stream.hpp"
#include "clprompt/core/task_context.hpp"

namespace clprompt {

namespace detail {
template <class H>
concept HeadIsModule = std::derived_from<H, torch::nn::Module>;
template <class H>
concept HeadHasLogits = requires(H& h, const at::Tensor& features, const TaskContext& ctx) {
  { h.logits(features, ctx) } -> std::same_as<at::Tensor>;
};
template <class H>
concept HeadHasLoss = requires(H& h, const at::Tensor& logits, const at::Tensor& targets, const TaskContext& ctx) {
  { h.loss(logits, targets, ctx) } -> std::same_as<at::Tensor>;
};
template <class H>
concept HeadHasBeginTask = requires(H& h, const TaskContext& ctx) { h.begin_task(ctx); };
template <class H>
concept HeadHasEndTask = requires(H& h, const TaskContext& ctx) { h.end_task(ctx); };
/// Optional: called after training a task, before end_task, with a stream of the task's
/// training features (class statistics, classifier alignment).
template <class H>
concept HeadHasConsolidate = requires(H& h, const TaskContext& ctx, const FeatureStream& features) {
  h.consolidate(ctx, features);
};
/// Optional: the loss Aligned<> trains the classifier with on sampled features (LogitNormalized:
/// cross-entropy of normalised logits); without it, plain cross-entropy over all seen classes.
template <class H>
concept HeadHasAlignmentLoss = requires(H& h, const at::Tensor& logits, const at::Tensor& targets,
                                        const TaskContext& ctx) {
  { h.alignment_loss(logits, targets, ctx) } -> std::same_as<at::Tensor>;
};
// A member with the hook's name (a single, non-template one): if it is there but the hook's
// concept does not hold, its signature is wrong.
template <class H>
concept HeadNamesEndTask = requires { &H::end_task; };
template <class H>
concept HeadNamesConsolidate = requires { &H::consolidate; };
template <class H>
concept HeadNamesAlignmentLoss = requires { &H::alignment_loss; };
}  // namespace detail

/// Maps features to logits over the classes seen so far, and defines the training loss.
template <class H>
concept ClassifierHead = detail::HeadIsModule<H> && detail::HeadHasLogits<H> && detail::HeadHasLoss<H> &&
                         detail::HeadHasBeginTask<H>;

/// Compile-time check with one message per missing member; true when H is a ClassifierHead.
template <class H>
constexpr bool check_classifier_head() {
  static_assert(detail::HeadIsModule<H>,
                "ClassifierHead must derive from torch::nn::Module (it owns the classifier weights). "
                "See docs/policies.md#classifierhead");
  static_assert(detail::HeadHasLogits<H>,
                "ClassifierHead requires `at::Tensor logits(const at::Tensor& features, const TaskContext& ctx)` "
                "returning [B, ctx.classes_seen()]. See docs/policies.md#classifierhead");
  static_assert(detail::HeadHasLoss<H>,
                "ClassifierHead requires `at::Tensor loss(const at::Tensor& logits, const at::Tensor& targets, "
                "const TaskContext& ctx)` returning a scalar tensor. See docs/policies.md#classifierhead");
  static_assert(detail::HeadHasBeginTask<H>,
                "ClassifierHead requires `void begin_task(const TaskContext& ctx)` (grow the classifier to "
                "ctx.classes_seen() outputs). See docs/policies.md#classifierhead");
  static_assert(!detail::HeadNamesEndTask<H> || detail::HeadHasEndTask<H>,
                "ClassifierHead's optional hook has the wrong signature: expected `void end_task(const TaskContext& "
                "ctx)`. See docs/policies.md#classifierhead");
  static_assert(!detail::HeadNamesConsolidate<H> || detail::HeadHasConsolidate<H>,
                "ClassifierHead's optional hook has the wrong signature: expected `void consolidate(const TaskContext& "
                "ctx, const FeatureStream& features)`. See docs/policies.md#classifierhead");
  static_assert(!detail::HeadNamesAlignmentLoss<H> || detail::HeadHasAlignmentLoss<H>,
                "ClassifierHead's optional hook has the wrong signature: expected `at::Tensor alignment_loss(const "
                "at::Tensor& logits, const at::Tensor& targets, const TaskContext& ctx)`. "
                "See docs/policies.md#classifierhead");
  return ClassifierHead<H>;
}

}  // namespace clprompt
