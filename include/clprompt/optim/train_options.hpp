#pragma once
// Options of the Learner's per-task training loop: the shared optimiser and schedule options
// (flat in JSON: train.lr, train.schedule, ...), epochs, batch sizes and the slow learner's scale.
#include <cstdint>
#include <string>
#include <tuple>

#include "clprompt/core/options.hpp"
#include "clprompt/optim/optimizer_options.hpp"
#include "clprompt/optim/precision.hpp"

namespace clprompt {

struct TrainOptions {
  OptimizerOptions optim;            ///< optimizer, lr, momentum, weight_decay, adam_betas, clip_grad_norm
  ScheduleOptions schedule;          ///< schedule, milestones, gamma (per epoch, restarted every task)
  double slow_lr_scale = 0.01;       ///< "slow" group lr = lr * slow_lr_scale (SLCA: 1/100)
  int64_t epochs = 1;                ///< epochs per task (0: no training; heads that consolidate still learn)
  /// Tasks that train: 0 = every task; N = only the first N, later tasks run no epochs and only
  /// consolidate (RanPAC's and APER's first-task adaptation: 1).
  int64_t trained_tasks = 0;
  int64_t batch_size = 64;
  int64_t eval_batch_size = 256;
  bool drop_last = false;                 ///< leave out each epoch's partial last batch (CODA-Prompt: true)
  /// fp32, or autocast to bf16 / fp16 (fp16 with loss scaling; CUDA only) for training and
  /// evaluation forwards; parameters, optimiser state and class statistics stay in full precision.
  Precision precision = Precision::fp32;
  bool reset_optimizer_each_task = true;  ///< the references build a fresh optimiser per task

  static constexpr auto fields() {
    using O = TrainOptions;
    return std::tuple{inline_fields(&O::optim), inline_fields(&O::schedule), field("slow_lr_scale", &O::slow_lr_scale),
                      field("epochs", &O::epochs), field("trained_tasks", &O::trained_tasks),
                      field("batch_size", &O::batch_size),
                      field("eval_batch_size", &O::eval_batch_size), field("drop_last", &O::drop_last),
                      field("precision", &O::precision),
                      field("reset_optimizer_each_task", &O::reset_optimizer_each_task)};
  }
  void validate(const std::string& path) const {
    optim.validate(path);
    schedule.validate(path);
    require_option(slow_lr_scale >= 0, path, "slow_lr_scale", "must be >= 0");
    require_option(epochs >= 0, path, "epochs", fmt::format("must be >= 0, got {}", epochs));
    require_option(trained_tasks >= 0, path, "trained_tasks", fmt::format("must be >= 0, got {}", trained_tasks));
    require_option(batch_size > 0, path, "batch_size", "must be positive");
    require_option(eval_batch_size > 0, path, "eval_batch_size", "must be positive");
  }

  /// The epochs task `task` (0-based) trains for.
  int64_t epochs_of_task(int64_t task) const { return trained_tasks == 0 || task < trained_tasks ? epochs : 0; }

  /// Learning-rate multiplier for `epoch` (0-based) of a task.
  double lr_factor(int64_t epoch) const { return schedule.factor(epoch, epochs); }
};

}  // namespace clprompt
