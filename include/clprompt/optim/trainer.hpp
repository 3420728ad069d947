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
// On a GPU the check does not wait for the device every step: the losses stay on the device and
// are checked (and averaged) every `check_every` steps and at the end of an epoch, so the step has
// no host round-trip; the error still names the first batch whose loss was not finite. With fp16
// the loss is scaled and the step skipped on overflow (GradScaler).
//
// Data parallel (set_collective): each rank passes the loss of its shard weighted by the shard's
// share of the global batch; step() sums the gradients and the weighted losses across the ranks
// (optim/gradient_all_reduce.hpp) before it checks the loss, clips and steps, so every rank
// applies the same update and sees the global batch's loss.
#include <algorithm>
#include <chrono>
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

#include "clprompt/core/collective.hpp"
#include "clprompt/core/error.hpp"
#include "clprompt/core/nvtx.hpp"
#include "clprompt/optim/gradient_all_reduce.hpp"
#include "clprompt/optim/optimizer_options.hpp"
#include "clprompt/optim/precision.hpp"

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
    flush();
    set_lr_factor(schedule_.factor(epoch, epochs));
    where_ = std::move(where);
    batch_ = 0;
    loss_sum_ = 0.0;
    checked_ = 0;
  }
  /// Per-step schedules set the learning rate themselves (every group gets `lr`).
  void set_lr(double lr) {
    lr_ = lr;
    if (optimizer_)
      for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr);
  }
  /// Per-step loops name their position themselves; `where` as in begin_epoch.
  void set_position(std::string where) {
    flush();
    where_ = std::move(where);
    batch_ = -1;
  }
  void set_lr_factor(double factor) {
    if (update_) lr_ = base_lrs_.front() * factor;
    if (!optimizer_) return;
    auto& groups = optimizer_->param_groups();
    for (std::size_t i = 0; i < groups.size(); ++i) groups[i].options().set_lr(base_lrs_[i] * factor);
  }

  /// Checks that `loss` is finite, then zero_grad, backward, clips, steps. Returns its value on
  /// the CPU; on a GPU the value of the last check (the check is deferred, see the file comment).
  double step(const at::Tensor& loss) {
    if (collective_ != nullptr) return step_data_parallel(loss);
    const bool deferred = loss.is_cuda() && check_every_ > 1;
    if (!deferred) {
      check(loss.item<double>(), batch_);
    } else {
      pending_.push_back(loss.detach().to(at::kDouble).reshape({1}));
      pending_first_batch_ = pending_.size() == 1 ? batch_ : pending_first_batch_;
    }
    if (optimizer_ || update_) {
      zero_gradients();
      bool finite = true;
      {
        NvtxRange range("backward");
        if (scaler_) {
          scaler_->scaled(loss).backward();
          finite = scaler_->unscale(params_);
        } else {
          loss.backward();
        }
      }
      if (finite) clip_and_step();
    }
    if (batch_ >= 0) ++batch_;
    if (deferred && static_cast<int64_t>(pending_.size()) >= check_every_) flush();
    return last_value_;
  }

  /// Data-parallel steps over `collective` (null: one process); see the file comment.
  void set_collective(Collective* collective) { collective_ = collective; }
  /// Seconds spent in gradient all-reduces since construction.
  double allreduce_seconds() const { return allreduce_seconds_; }

  /// Checks (and counts into the epoch's mean) the losses still on the device. Called by
  /// epoch_loss(); call it before reading the position of a failure elsewhere.
  void flush() {
    if (pending_.empty()) return;
    const auto values = at::cat(pending_).cpu();
    const auto first = pending_first_batch_;
    pending_.clear();
    const double* v = values.data_ptr<double>();
    for (int64_t i = 0; i < values.numel(); ++i) check(v[i], first >= 0 ? first + i : -1);
  }

  /// Losses with fp16 are scaled (GradScaler); bf16 and fp32 need none.
  void set_precision(Precision precision) {
    if (precision == Precision::fp16 && !scaler_) scaler_ = std::make_unique<GradScaler>();
    if (precision != Precision::fp16) scaler_.reset();
  }
  const GradScaler* scaler() const { return scaler_.get(); }
  /// On a GPU, check the losses every `n` steps (1: every step, a host synchronisation each).
  void set_check_every(int64_t n) { check_every_ = std::max<int64_t>(1, n); }

  /// Mean loss of the steps since begin_epoch whose losses were checked (0 when none).
  double epoch_loss() {
    flush();
    return checked_ > 0 ? loss_sum_ / static_cast<double>(checked_) : 0.0;
  }
  /// How far the current epoch is: batches stepped, and the sum and count of the losses checked.
  struct EpochProgress {
    int64_t batch = 0;
    double loss_sum = 0.0;
    int64_t steps = 0;
  };
  EpochProgress epoch_progress() {
    flush();
    return {batch_, loss_sum_, checked_};
  }
  /// Continues an epoch from `progress` (a resumed run), after begin_epoch.
  void resume_epoch(const EpochProgress& progress) {
    batch_ = progress.batch;
    loss_sum_ = progress.loss_sum;
    checked_ = progress.steps;
  }

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
  /// zero_grad → backward of this rank's weighted loss → sum gradients and losses over the ranks
  /// → check the global loss (every rank throws alike) → clip → step. One synchronisation per
  /// step: the all-reduce needs the gradients anyway.
  double step_data_parallel(const at::Tensor& loss) {
    zero_gradients();
    if (has_parameters() && loss.requires_grad()) {
      NvtxRange range("backward");
      if (scaler_) scaler_->scaled(loss).backward();
      else loss.backward();
    }
    auto value = loss.detach().to(at::kCPU, at::kDouble).reshape({1});
    {
      NvtxRange range("gradient all-reduce");
      const auto start = std::chrono::steady_clock::now();
      all_reduce_gradients(params_, value, *collective_);
      allreduce_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    check(value.item<double>(), batch_);
    if (has_parameters() && (!scaler_ || scaler_->unscale(params_))) clip_and_step();
    if (batch_ >= 0) ++batch_;
    return last_value_;
  }

  void zero_gradients() {
    if (optimizer_) optimizer_->zero_grad();
    else for (auto& p : params_) p.mutable_grad() = at::Tensor();
  }
  /// Clips the total gradient norm, then the optimiser's (or the hand-written) update.
  void clip_and_step() {
    NvtxRange range("optimiser step");
    if (clip_grad_norm_ > 0) torch::nn::utils::clip_grad_norm_(params_, clip_grad_norm_);
    if (optimizer_) optimizer_->step();
    else update_(lr_);
  }

  void check(double value, int64_t batch) {
    if (!std::isfinite(value)) {
      const auto at_batch = batch >= 0 ? fmt::format(", batch {}", batch) : std::string();
      throw NumericError(fmt::format("{} diverged: loss is {} at {}{} (lr {:.4g}){}", phase_, value, where_, at_batch,
                                     lr(), hint_.empty() ? "" : "; " + hint_));
    }
    loss_sum_ += value;
    last_value_ = value;
    ++checked_;
  }

  std::string phase_, hint_, where_;
  ScheduleOptions schedule_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::vector<double> base_lrs_;
  std::vector<at::Tensor> params_;
  std::function<void(double)> update_;
  double lr_ = 0.0;
  double clip_grad_norm_ = 0.0;
  int64_t batch_ = -1;
  int64_t checked_ = 0;
  double loss_sum_ = 0.0;
  double last_value_ = 0.0;
  std::unique_ptr<GradScaler> scaler_;
  std::vector<at::Tensor> pending_;
  int64_t pending_first_batch_ = -1;
  int64_t check_every_ = 50;
  Collective* collective_ = nullptr;
  double allreduce_seconds_ = 0.0;
};

}  // namespace clprompt
