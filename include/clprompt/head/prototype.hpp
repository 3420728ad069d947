#pragma once
// PrototypeHead<Inner>: SimpleCIL's and APER's classifier (Zhou et al., "Revisiting
// Class-Incremental Learning with Pre-Trained Models: Generalizability and Adaptivity are All You
// Need", IJCV'24; zhoudw-zdw/RevisitingCIL models/simplecil.py and models/aper_finetune.py
// `replace_fc`) around any ClassifierHead. After each task (the Learner's consolidate hook) the
// prototype of each of the task's classes is the mean of its training features (no augmentation,
// the model in eval mode), accumulated in double; at evaluation the logits are the cosine
// similarities between the features and every seen class's prototype (the reference's
// CosineLinear with the prototypes as its weights; its scale σ does not change a prediction).
//
// In training the wrapped head's logits and loss are used unchanged (APER's first-task
// adaptation, or a prompt method's prompts, train with it).
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>

#include "clprompt/backbone/concepts.hpp"
#include "clprompt/core/error.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/head/concepts.hpp"
#include "clprompt/head/decorator.hpp"
#include "clprompt/head/linear.hpp"

namespace clprompt {

struct PrototypeHeadOptions {
  double epsilon = 1e-8;  ///< added to the norms of the cosine (torch's F.normalize uses 1e-12 per vector)

  static constexpr auto fields() { return std::tuple{field("epsilon", &PrototypeHeadOptions::epsilon)}; }
  void validate(const std::string& path) const {
    require_option(epsilon >= 0, path, "epsilon", fmt::format("must be >= 0, got {}", epsilon));
  }
};

template <class Inner>
class PrototypeHead : public HeadDecorator<Inner> {
 public:
  using Options = PrototypeHeadOptions;

  PrototypeHead(const Options& options, std::shared_ptr<Inner> inner, const BackboneDims& dims)
      : HeadDecorator<Inner>(std::move(inner)), options_(options), dim_(dims.dim) {
    options_.validate("");
  }

  /// Zero-filled sums and counts for the classes of every task up to ctx.task (buffers
  /// "sum_t" [classes, D] double and "count_t" [classes]).
  void begin_task(const TaskContext& ctx) {
    this->inner().begin_task(ctx);
    while (static_cast<int64_t>(sums_.size()) <= ctx.task) {
      const auto t = static_cast<int64_t>(sums_.size());
      const int64_t classes = ctx.task_class_ends.at(static_cast<std::size_t>(t)) - ctx.class_begin_of(t);
      const auto options = at::TensorOptions(at::kDouble);  // ContinualModel moves them with the head
      sums_.push_back(this->register_buffer(fmt::format("sum_{}", t), at::zeros({classes, dim_}, options)));
      counts_.push_back(this->register_buffer(fmt::format("count_{}", t), at::zeros({classes}, options)));
      task_begin_.push_back(ctx.class_begin_of(t));
    }
  }

  /// In training, the wrapped head's; at evaluation, cos(f, prototype_c) for every seen class
  /// (the wrapped head's while a seen class has no prototype yet).
  at::Tensor logits(const at::Tensor& features, const TaskContext& ctx) {
    if (ctx.training || !has_prototypes(ctx)) return this->inner().logits(features, ctx);
    const auto p = prototypes(ctx).to(features.scalar_type());
    const auto f = features / (features.norm(2, {1}, true) + options_.epsilon);
    const auto pn = p / (p.norm(2, {1}, true) + options_.epsilon);
    return at::matmul(f, pn.t());
  }

  /// Sums the task's features per class.
  void consolidate(const TaskContext& ctx, const FeatureStream& features) {
    at::NoGradGuard no_grad;
    features([&](const at::Tensor& f, const at::Tensor& y) { add(f, y); });
    this->forward_consolidate(ctx, features);
    consolidated_tasks_ = ctx.task + 1;
  }

  /// Adds features [B, D] of labels [B] (any seen classes) to the class sums.
  void add(const at::Tensor& features, const at::Tensor& labels) {
    if (features.dim() != 2 || features.size(1) != dim_ || labels.dim() != 1 || labels.size(0) != features.size(0))
      throw ShapeError(fmt::format("PrototypeHead expects features [B, {}] and labels [B], got {} and {}", dim_,
                                   features.sizes(), labels.sizes()));
    const auto f = features.to(at::kDouble), y = labels.to(at::kLong);
    for (std::size_t t = 0; t < sums_.size(); ++t) {
      const int64_t begin = task_begin_[t], end = begin + sums_[t].size(0);
      const auto in_task = (y >= begin).logical_and(y < end);
      if (!in_task.any().item<bool>()) continue;
      const auto rows = in_task.nonzero().squeeze(1);
      const auto local = y.index_select(0, rows) - begin;
      sums_[t].index_add_(0, local.to(sums_[t].device()), f.index_select(0, rows).to(sums_[t].device()));
      counts_[t].index_add_(0, local.to(counts_[t].device()),
                            at::ones({rows.size(0)}, counts_[t].options()));
    }
  }

  /// The class means [classes seen, D] in double.
  at::Tensor prototypes(const TaskContext& ctx) const {
    std::vector<at::Tensor> means;
    for (int64_t t = 0; t <= ctx.task; ++t)
      means.push_back(sums_.at(static_cast<std::size_t>(t)) / counts_.at(static_cast<std::size_t>(t)).clamp_min(1).unsqueeze(1));
    return means.size() == 1 ? means.front() : at::cat(means, 0);
  }

  const Options& options() const { return options_; }

 private:
  /// Whether the tasks up to ctx.task are consolidated; after a checkpoint load (nothing
  /// consolidated in this object), the tasks whose classes all have features.
  bool has_prototypes(const TaskContext& ctx) {
    if (consolidated_tasks_ == 0)
      while (consolidated_tasks_ < static_cast<int64_t>(counts_.size()) &&
             (counts_[static_cast<std::size_t>(consolidated_tasks_)] > 0).all().item<bool>())
        ++consolidated_tasks_;
    return consolidated_tasks_ > ctx.task;
  }

  Options options_;
  int64_t dim_;
  std::vector<at::Tensor> sums_, counts_;
  std::vector<int64_t> task_begin_;
  int64_t consolidated_tasks_ = 0;
};

/// PrototypeHead over LinearHead as one options object (the head kind "prototype"): the training
/// head's fields and the prototypes', flat.
struct PrototypeHeadKindOptions {
  LinearHeadOptions linear;
  PrototypeHeadOptions prototype;

  static constexpr auto fields() {
    return std::tuple{inline_fields(&PrototypeHeadKindOptions::linear),
                      inline_fields(&PrototypeHeadKindOptions::prototype)};
  }
  void validate(const std::string& path) const { prototype.validate(path); }
};

inline std::shared_ptr<PrototypeHead<LinearHead>> make_prototype_head(const PrototypeHeadKindOptions& options,
                                                                      const BackboneDims& dims) {
  return std::make_shared<PrototypeHead<LinearHead>>(options.prototype,
                                                     std::make_shared<LinearHead>(options.linear, dims), dims);
}

}  // namespace clprompt
