#pragma once
// Aligned<Head>: SLCA's classifier alignment (CA) around any ClassifierHead
// (GengDavid/SLCA models/slca.py `incremental_train`, `_stage2_compact_classifier`).
// After each task (the Learner's consolidate hook, before end_task):
//   1. accumulate the mean and covariance of the task's classes from one pass over its training
//      features without augmentation (ClassStatistics);
//   2. from the second task on, re-train only the classifier for `epochs` epochs (SGD lr 0.01,
//      momentum 0.9, weight decay 5e-4, cosine over the epochs; the shared Trainer): each epoch draws
//      `samples_per_class` features per seen class c from
//      N(mu_c * (1 - mean_shrink + mean_shrink * (t_c + 1) / (t_now + 1)), Sigma_c)   [0.9 + 0.1 (t_c+1)/(t_now+1)]
//      shuffles them and iterates in batches of `batch_size`, with the wrapped head's
//      alignment_loss (LogitNormalized: normalised logits) or else plain cross-entropy over all
//      seen classes. STAR-Prompt's alignment is the same loop with its own settings
//      (methods/star_prompt.hpp: 10 + 5 t epochs, SGD lr 0.001 without momentum, no schedule).
// SLCA backs the classifier up before CA and restores it after the task's evaluation
// (fc.backup() / fc.recall() in after_task): the aligned classifier is used to evaluate, the
// next task trains from the un-aligned one. `restore_after_task` (default true) does the same at
// the next begin_task; false keeps the aligned weights.
//
// Composes with every selector: ContinualModel<VisionTransformer, AttentionDecomposed,
// Aligned<LogitNormalized<LinearHead>>> is CODA-Prompt + CA.
#include <cmath>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "clprompt/backbone/concepts.hpp"
#include "clprompt/core/error.hpp"
#include "clprompt/core/fault_injection.hpp"
#include "clprompt/core/interrupt.hpp"
#include "clprompt/core/nvtx.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/head/concepts.hpp"
#include "clprompt/head/decorator.hpp"
#include "clprompt/optim/optimizer_options.hpp"
#include "clprompt/optim/trainer.hpp"
#include "clprompt/stats/class_statistics.hpp"

namespace clprompt {

struct AlignmentOptions {
  static OptimizerOptions slca_optimizer() {
    OptimizerOptions o;
    o.optimizer = OptimizerKind::sgd;
    o.lr = 0.01;
    o.momentum = 0.9;
    o.weight_decay = 5e-4;
    return o;
  }
  static ScheduleOptions slca_schedule() { return {.schedule = ScheduleKind::cosine}; }

  int64_t epochs = 5;               ///< SLCA ca_epochs (0 disables alignment; statistics are still kept)
  int64_t epochs_per_task = 0;      ///< extra epochs per task index: epochs + t · this (STAR-Prompt: 10 + 5 t)
  OptimizerOptions optim = slca_optimizer();   ///< SGD lr 0.01, momentum 0.9, weight decay 5e-4 (SLCA)
  ScheduleOptions schedule = slca_schedule();  ///< cosine over the alignment's epochs (SLCA); constant: none
  int64_t samples_per_class = 256;  ///< per class per epoch (SLCA num_sampled_pcls)
  int64_t batch_size = 256;
  double mean_shrink = 0.1;         ///< mu_c scaled by 1 - s + s (t_c + 1) / (t_now + 1)
  bool restore_after_task = true;   ///< SLCA's fc.backup()/recall(): next task trains from the un-aligned head
  int64_t seed = 1993;              ///< of the sampling and shuffling generator
  ClassStatisticsOptions statistics;

  static constexpr auto fields() {
    using O = AlignmentOptions;
    return std::tuple{field("epochs", &O::epochs), field("epochs_per_task", &O::epochs_per_task),
                      inline_fields(&O::optim), inline_fields(&O::schedule),
                      field("samples_per_class", &O::samples_per_class), field("batch_size", &O::batch_size),
                      field("mean_shrink", &O::mean_shrink), field("restore_after_task", &O::restore_after_task),
                      field("seed", &O::seed), field("statistics", &O::statistics)};
  }
  void validate(const std::string& path) const {
    require_option(epochs >= 0, path, "epochs", fmt::format("must be >= 0, got {}", epochs));
    require_option(epochs_per_task >= 0, path, "epochs_per_task", fmt::format("must be >= 0, got {}", epochs_per_task));
    optim.validate(path);
    schedule.validate(path);
    require_option(samples_per_class > 0, path, "samples_per_class",
                   fmt::format("must be positive, got {}", samples_per_class));
    require_option(batch_size > 0, path, "batch_size", fmt::format("must be positive, got {}", batch_size));
    require_option(mean_shrink >= 0 && mean_shrink <= 1, path, "mean_shrink", "must be in [0, 1]");
    require_option(seed >= 0, path, "seed", "must be >= 0");
    statistics.validate(detail::join_path(path, "statistics"));
  }
};

template <class Head>
class Aligned : public HeadDecorator<Head> {
 public:
  using Options = AlignmentOptions;

  /// Throws ConfigError naming the field (relative to the options) for invalid options.
  Aligned(const Options& options, std::shared_ptr<Head> inner, const BackboneDims& dims)
      : HeadDecorator<Head>(std::move(inner)),
        options_(options),
        generator_(at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(options.seed))) {
    options_.validate("");
    statistics_ = this->register_module("statistics", std::make_shared<ClassStatistics>(options_.statistics, dims.dim));
    // The sampling generator's state is a buffer, so that checkpoints (model and resume) carry it.
    generator_state_ = this->register_buffer("generator_state", generator_.get_state());
  }

  void begin_task(const TaskContext& ctx) {
    if (options_.restore_after_task && !backup_.empty() && ctx.task > backup_task_) {
      at::NoGradGuard no_grad;
      auto params = this->inner().parameters();
      for (std::size_t i = 0; i < backup_.size() && i < params.size(); ++i) params[i].copy_(backup_[i]);
      backup_.clear();
    }
    this->inner().begin_task(ctx);
    statistics_->begin_task(ctx);
  }

  /// Statistics of the task's classes, then (from the second task on) classifier alignment.
  void consolidate(const TaskContext& ctx, const FeatureStream& features) {
    generator_.set_state(generator_state_.cpu());
    features([&](const at::Tensor& f, const at::Tensor& y) { statistics_->update(f, y); });
    statistics_->fit_mixtures(generator_);  // covariance = mixture only
    this->forward_consolidate(ctx, features);
    if (ctx.task >= 1 && options_.epochs > 0) {
      if (options_.restore_after_task) {
        backup_.clear();
        for (const auto& p : this->inner().parameters()) backup_.push_back(p.detach().clone());
        backup_task_ = ctx.task;
      }
      align(ctx);
    }
    at::NoGradGuard no_grad;
    generator_state_.copy_(generator_.get_state());
  }

  /// Re-trains the classifier on features sampled from the statistics of every seen class.
  /// Returns the mean loss of each epoch.
  std::vector<double> align(const TaskContext& task_ctx) {
    NvtxRange range("classifier alignment");
    TaskContext ctx = task_ctx.for_evaluation();  // all seen classes, no task identity
    const int64_t classes = ctx.classes_seen();
    auto params = this->inner().parameters();
    std::vector<bool> requires_grad;
    for (auto& p : params) {
      requires_grad.push_back(p.requires_grad());
      p.set_requires_grad(true);
    }
    at::AutoGradMode grad_mode(true);
    const bool was_training = this->is_training();
    this->eval();  // SLCA runs CA with the network in eval mode
    Trainer trainer("classifier alignment", {{params}}, options_.optim, options_.schedule,
                    "lower the alignment's lr (method_options.head.alignment.lr)");
    c10::Device device = c10::kCPU;
    for (const auto& p : params) {
      device = p.device();
      break;
    }
    std::vector<double> epoch_loss;
    const int64_t epochs = options_.epochs + options_.epochs_per_task * ctx.task;
    for (int64_t epoch = 0; epoch < epochs; ++epoch) {
      trainer.begin_epoch(epoch, epochs, fmt::format("task {}, epoch {}", ctx.task, epoch));
      auto [sampled, labels] = statistics_->sample_shuffled(classes, options_.samples_per_class, generator_, [&](int64_t c) {
        return 1.0 - options_.mean_shrink +
               options_.mean_shrink * static_cast<double>(task_of(ctx, c) + 1) / static_cast<double>(ctx.task + 1);
      });
      const auto x = sampled.to(device), y = labels.to(device);
      for_each_slice(x.size(0), options_.batch_size, [&](int64_t begin, int64_t size) {
        fault_point("alignment-step");
        throw_if_interrupted("classifier alignment");
        const auto logits = this->inner().logits(x.narrow(0, begin, size), ctx);
        if constexpr (detail::HeadHasAlignmentLoss<Head>)
          trainer.step(this->inner().alignment_loss(logits, y.narrow(0, begin, size), ctx));
        else
          trainer.step(at::cross_entropy_loss(logits, y.narrow(0, begin, size)));
      });
      epoch_loss.push_back(trainer.epoch_loss());
    }
    for (std::size_t i = 0; i < params.size(); ++i) {
      params[i].mutable_grad() = at::Tensor();
      params[i].set_requires_grad(requires_grad[i]);
    }
    this->train(was_training);
    last_alignment_loss_ = epoch_loss;
    return epoch_loss;
  }

  const Options& options() const { return options_; }
  ClassStatistics& statistics() { return *statistics_; }
  /// Mean loss per epoch of the last alignment (empty before the first).
  const std::vector<double>& last_alignment_loss() const { return last_alignment_loss_; }

 private:
  static int64_t task_of(const TaskContext& ctx, int64_t c) {
    for (int64_t t = 0; t <= ctx.task; ++t)
      if (c < ctx.task_class_ends.at(static_cast<std::size_t>(t))) return t;
    return ctx.task;
  }

  Options options_;
  std::shared_ptr<ClassStatistics> statistics_;
  at::Generator generator_;
  at::Tensor generator_state_;  ///< generator_'s state between consolidations (a buffer)
  std::vector<at::Tensor> backup_;
  int64_t backup_task_ = -1;
  std::vector<double> last_alignment_loss_;
};

}  // namespace clprompt
