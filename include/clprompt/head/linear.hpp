#pragma once
// LinearHead: the class-incremental linear classifier. One Linear(D, classes of task t) per task,
// logits concatenated (SLCA's SimpleContinualLinear layout, equivalent to one growing Linear);
// during training the logits of classes outside the current task are masked before the
// cross-entropy ("train_mask" in L2P, DualPrompt and CODA-Prompt).
#include <limits>
#include <tuple>

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>

#include "clprompt/backbone/concepts.hpp"
#include "clprompt/core/error.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/head/concepts.hpp"

namespace clprompt {

struct LinearHeadOptions {
  bool mask_other_tasks = true;  ///< train-time logit masking of classes outside the current task
  bool bias = true;
  /// Earlier tasks' classifiers stop training when a new task begins (requires_grad off, so the
  /// optimiser neither updates nor decays them): SLCA's fc.update(freeze_old=True)
  /// (convs/linears.py:72-91, models/slca.py:155). Classifier alignment still trains them all.
  bool freeze_past_tasks = false;

  static constexpr auto fields() {
    return std::tuple{field("mask_other_tasks", &LinearHeadOptions::mask_other_tasks),
                      field("bias", &LinearHeadOptions::bias),
                      field("freeze_past_tasks", &LinearHeadOptions::freeze_past_tasks)};
  }
};

namespace detail {
/// Throws ShapeError unless targets are int64 labels [B] in [begin, end).
inline void check_targets(const at::Tensor& logits, const at::Tensor& targets, int64_t begin, int64_t end) {
  if (targets.dim() != 1 || targets.scalar_type() != at::kLong || logits.dim() != 2 || logits.size(0) != targets.size(0))
    throw ShapeError(fmt::format("loss expects logits [B, C] and int64 targets [B], got logits {} and targets {} ({})",
                                 logits.sizes(), targets.sizes(), targets.scalar_type()));
  if (targets.numel() > 0) {
    const auto lo = targets.min().item<int64_t>(), hi = targets.max().item<int64_t>();
    if (lo < begin || hi >= end)
      throw ShapeError(fmt::format("targets span [{}, {}] but the current task owns labels [{}, {})", lo, hi, begin, end));
  }
}

/// Logits of classes outside [begin, end) set to -inf (they get no gradient and no probability).
inline at::Tensor mask_outside(const at::Tensor& logits, int64_t begin, int64_t end) {
  auto keep = at::zeros({logits.size(1)}, logits.options().dtype(at::kBool));
  keep.narrow(0, begin, end - begin).fill_(true);
  return logits.masked_fill(keep.logical_not(), -std::numeric_limits<double>::infinity());
}
}  // namespace detail

class LinearHead : public torch::nn::Module {
 public:
  using Options = LinearHeadOptions;

  LinearHead(const Options& options, const BackboneDims& dims) : options_(options), dim_(dims.dim) {
    heads = register_module("heads", torch::nn::ModuleList());
  }

  /// Adds the classifier of the new task (no-op if it exists, e.g. when a checkpoint is replayed).
  void begin_task(const TaskContext& ctx) {
    while (static_cast<int64_t>(heads->size()) <= ctx.task) {
      const auto t = static_cast<int64_t>(heads->size());
      const int64_t classes = ctx.task_class_ends.at(static_cast<std::size_t>(t)) - ctx.class_begin_of(t);
      heads->push_back(torch::nn::Linear(torch::nn::LinearOptions(dim_, classes).bias(options_.bias)));
    }
    if (options_.freeze_past_tasks)
      for (int64_t t = 0; t < ctx.task; ++t)
        for (auto& p : heads[static_cast<size_t>(t)]->parameters()) p.set_requires_grad(false);
  }

  int64_t num_classes() const {
    int64_t n = 0;
    for (const auto& h : *heads) n += h->as<torch::nn::Linear>()->options.out_features();
    return n;
  }

  /// Logits over the classes seen up to ctx.task: [B, ctx.classes_seen()].
  at::Tensor logits(const at::Tensor& features, const TaskContext& ctx) {
    if (static_cast<int64_t>(heads->size()) <= ctx.task)
      throw Error(fmt::format("LinearHead has {} task classifiers but task {} was requested; call begin_task first",
                              heads->size(), ctx.task));
    std::vector<at::Tensor> parts;
    for (int64_t t = 0; t <= ctx.task; ++t) parts.push_back(heads->ptr<torch::nn::LinearImpl>(t)->forward(features));
    return parts.size() == 1 ? parts.front() : at::cat(parts, 1);
  }

  /// Cross-entropy; in training with mask_other_tasks, over the current task's classes only.
  at::Tensor loss(const at::Tensor& logits, const at::Tensor& targets, const TaskContext& ctx) {
    const bool mask = ctx.training && options_.mask_other_tasks;
    detail::check_targets(logits, targets, mask ? ctx.class_begin : 0, ctx.class_end);
    return at::cross_entropy_loss(mask ? detail::mask_outside(logits, ctx.class_begin, ctx.class_end) : logits, targets);
  }

  const Options& options() const { return options_; }
  torch::nn::ModuleList heads{nullptr};

 private:
  Options options_;
  int64_t dim_;
};

}  // namespace clprompt
