#pragma once
// Trainer: the one inner training loop of clprompt. Every loop that trains something — the
// Learner's task loop, classifier alignment, STAR-Prompt's first level and its replay, glyph
// pre-training — takes its optimiser, learning-rate schedule, gradient clipping and divergence
// check from here, so they behave (and fail) the same way:
//
//   Trainer trainer("classifier alignment", {{head.parameters()}}, options.optim, options.schedule);
//   for (int64_t epoch = 0; epoch < epochs; ++epoch) {
//     trainer.begin_epoch(epoch, epochs, fmt::format("task {}, epoch {}", t, epoch));
//     for_each_slice(n, batch_size, [&](int64_t begin, int64_t size) { trainer.step(loss_of(begin, size)); });
//     losses.push_back(trainer.epoch_loss());
//   }
//
// step(loss) checks that the loss is finite (a NumericError naming the phase, where, the batch and
// the learning rate otherwise), then zero_grad → backward → clip the total gradient norm → step.
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>

#include "clprompt/core/error.hpp"
#include "clprompt/optim/optimizer_options.hpp"

namespace clprompt {

/// Parameters trained at options.lr × lr_scale (SLCA's slow learner: 0.01 for the backbone).
struct ParamGroup {
  std::vector<at::Tensor> params;
  double lr_scale = 1.0;
};

/// Calls fn(begin, size) for consecutive slices [begin, begin + size) of [0, n), size ≤ batch_size.
template <class Fn>
void for_each_slice(int64_t n, int64_t batch_size, Fn&& fn) {
  for (int64_t begin = 0; begin < n; begin += batch_size) fn(begin, std::min(batch_size, n - begin));
}

class Trainer {
 public:
  /// An Adam or SGD optimiser over the non-empty groups. `phase` names the loop in errors
  /// ("training", "classifier alignment", ...); `hint` is appended to a divergence error.
  Trainer(std::string phase, std::vector<ParamGroup> groups, const OptimizerOptions& options,
          ScheduleOptions schedule = {}, std::string hint = "")
      : phase_(std::move(phase)), hint_(std::move(hint)), schedule_(std::move(schedule)),
        clip_grad_norm_(options.clip_grad_norm) {
    std::vector<torch::optim::OptimizerParamGroup> param_groups;
    for (auto& g : groups) {
      if (g.params.empty()) continue;
      for (const auto& p : g.params) params_.push_back(p);
      base_lrs_.push_back(options.lr * g.lr_scale);
      param_groups.emplace_back(std::move(g.params));
    }
    if (param_groups.empty()) return;  // nothing to train (a fully frozen model): step() only checks the loss
    if (options.optimizer == OptimizerKind::adam) {
      auto o = torch::optim::AdamOptions(options.lr)
                   .betas({options.adam_betas.at(0), options.adam_betas.at(1)})
                   .weight_decay(options.weight_decay);
      optimizer_ = std::make_unique<torch::optim::Adam>(std::move(param_groups), o);
    } else {
      auto o = torch::optim::SGDOptions(options.lr).momentum(options.momentum).weight_decay(options.weight_decay);
      optimizer_ = std::make_unique<torch::optim::SGD>(std::move(param_groups), o);
    }
    set_lr_factor(1.0);
  }

  /// A hand-written update instead of a torch optimiser (pre-training's AdamW, whose moments are
  /// checkpointed by name): update(lr) applies one step to `params` once their gradients are in.
  Trainer(std::string phase, std::vector<at::Tensor> params, double base_lr, std::function<void(double lr)> update,
          double clip_grad_norm, std::string hint = "")
      : phase_(std::move(phase)), hint_(std::move(hint)), base_lrs_{base_lr}, params_(std::move(params)),
        update_(std::move(update)), lr_(base_lr), clip_grad_norm_(clip_grad_norm) {}

  /// Sets the learning rates of epoch `epoch` of `epochs` from the schedule and starts the
  /// epoch's loss average; `where` ("task 2, epoch 3") is what a divergence error reports.
  void begin_epoch(int64_t epoch, int64_t epochs, std::string where) {
    set_lr_factor(schedule_.factor(epoch, epochs));
    where_ = std::move(where);
    batch_ = 0;
    loss_sum_ = 0.0;
  }
  /// Per-step schedules set the learning rate themselves (every group gets `lr`).
  void set_lr(double lr) {
    lr_ = lr;
    if (optimizer_)
      for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr);
  }
  /// Per-step loops name their position themselves; `where` as in begin_epoch.
  void set_position(std::string where) {
    where_ = std::move(where);
    batch_ = -1;
  }
  void set_lr_factor(double factor) {
    if (update_) lr_ = base_lrs_.front() * factor;
    if (!optimizer_) return;
    auto& groups = optimizer_->param_groups();
    for (std::size_t i = 0; i < groups.size(); ++i) groups[i].options().set_lr(base_lrs_[i] * factor);
  }

  /// Checks that `loss` is finite, then zero_grad, backward, clips, steps. Returns its value.
  double step(const at::Tensor& loss) {
    const double value = loss.item<double>();
    if (!std::isfinite(value)) {
      const auto batch = batch_ >= 0 ? fmt::format(", batch {}", batch_) : std::string();
      throw NumericError(fmt::format("{} diverged: loss is {} at {}{} (lr {:.4g}){}", phase_, value, where_, batch,
                                     lr(), hint_.empty() ? "" : "; " + hint_));
    }
    if (optimizer_) {
      optimizer_->zero_grad();
      loss.backward();
      if (clip_grad_norm_ > 0) torch::nn::utils::clip_grad_norm_(params_, clip_grad_norm_);
      optimizer_->step();
    } else if (update_) {
      for (auto& p : params_) p.mutable_grad() = at::Tensor();
      loss.backward();
      if (clip_grad_norm_ > 0) torch::nn::utils::clip_grad_norm_(params_, clip_grad_norm_);
      update_(lr_);
    }
    loss_sum_ += value;
    if (batch_ >= 0) ++batch_;
    return value;
  }

  /// Mean loss of the steps since begin_epoch (0 when none).
  double epoch_loss() const { return batch_ > 0 ? loss_sum_ / static_cast<double>(batch_) : 0.0; }
  /// The learning rate of the last group (the "normal" one where there are roles).
  double lr() const { return optimizer_ ? optimizer_->param_groups().back().options().get_lr() : lr_; }
  bool has_parameters() const { return optimizer_ != nullptr || update_ != nullptr; }
  /// The torch optimiser (its state goes into checkpoints); throws Error when there is none.
  torch::optim::Optimizer& optimizer() {
    if (!optimizer_) throw Error(phase_ + ": no torch optimiser (nothing to train, or a hand-written update)");
    return *optimizer_;
  }
  const std::vector<at::Tensor>& parameters() const { return params_; }

 private:
  std::string phase_, hint_, where_;
  ScheduleOptions schedule_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::vector<double> base_lrs_;
  std::vector<at::Tensor> params_;
  std::function<void(double)> update_;
  double lr_ = 0.0;
  double clip_grad_norm_ = 0.0;
  int64_t batch_ = -1;
  double loss_sum_ = 0.0;
};

}  // namespace clprompt
