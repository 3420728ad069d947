#pragma once
// HeadDecorator<Inner>: the base of every head that wraps another (LogitNormalized, Aligned, a
// user's). It forwards the whole ClassifierHead contract to the wrapped head — the required
// members and every optional hook the wrapped head has (end_task, consolidate, alignment_loss),
// and no hook it lacks — so a decorator only writes what it changes, and stacking decorators in
// any order keeps every hook: LogitNormalized<Aligned<LinearHead>> still aligns.
//
//   template <class Head>
//   struct Tempered : clprompt::HeadDecorator<Head> {
//     using clprompt::HeadDecorator<Head>::HeadDecorator;
//     at::Tensor logits(const at::Tensor& f, const clprompt::TaskContext& ctx) { return this->inner().logits(f, ctx) / 2; }
//   };
// A derived class that defines a hook hides the forwarded one; it calls inner() itself where the
// wrapped head should still see the call (forward_consolidate() etc. do that only if it has the hook).
#include <memory>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "clprompt/core/feature_stream.hpp"
#include "clprompt/core/task_context.hpp"
#include "clprompt/head/concepts.hpp"

namespace clprompt {

template <class Inner>
class HeadDecorator : public torch::nn::Module {
  static_assert(check_classifier_head<Inner>());

 public:
  using InnerHead = Inner;

  /// The wrapped head is registered as "inner" (checkpoint names: head.inner.*).
  explicit HeadDecorator(std::shared_ptr<Inner> inner) : inner_(register_module("inner", std::move(inner))) {}

  void begin_task(const TaskContext& ctx) { inner_->begin_task(ctx); }
  at::Tensor logits(const at::Tensor& features, const TaskContext& ctx) { return inner_->logits(features, ctx); }
  at::Tensor loss(const at::Tensor& logits, const at::Tensor& targets, const TaskContext& ctx) {
    return inner_->loss(logits, targets, ctx);
  }
  void end_task(const TaskContext& ctx)
    requires detail::HeadHasEndTask<Inner>
  {
    inner_->end_task(ctx);
  }
  void consolidate(const TaskContext& ctx, const FeatureStream& features)
    requires detail::HeadHasConsolidate<Inner>
  {
    inner_->consolidate(ctx, features);
  }
  at::Tensor alignment_loss(const at::Tensor& logits, const at::Tensor& targets, const TaskContext& ctx)
    requires detail::HeadHasAlignmentLoss<Inner>
  {
    return inner_->alignment_loss(logits, targets, ctx);
  }

  Inner& inner() { return *inner_; }
  const Inner& inner() const { return *inner_; }

 protected:
  /// For a derived class that defines its own hook and still owes the wrapped head the call.
  void forward_consolidate(const TaskContext& ctx, const FeatureStream& features) {
    if constexpr (detail::HeadHasConsolidate<Inner>) inner_->consolidate(ctx, features);
  }

  std::shared_ptr<Inner> inner_;
};

}  // namespace clprompt
