#pragma once
// Options of the per-task training loop: optimiser, learning-rate schedule, epochs, batches.
#include <array>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <utility>
#include <vector>

#include "clprompt/core/options.hpp"

namespace clprompt {

enum class OptimizerKind { adam, sgd };
constexpr auto enum_names(OptimizerKind) {
  return std::array{std::pair{OptimizerKind::adam, "adam"}, std::pair{OptimizerKind::sgd, "sgd"}};
}

/// constant; cosine: 0.5 (1 + cos(π e / E)); multistep: × gamma at each milestone;
/// quarter_cosine: cos(99π e / (200 (E − 1))), mammoth's CosineSchedule (STAR-Prompt), which
/// ends at cos(0.495 π) ≈ 0.016 on the last epoch.
enum class ScheduleKind { constant, cosine, multistep, quarter_cosine };
constexpr auto enum_names(ScheduleKind) {
  return std::array{std::pair{ScheduleKind::constant, "constant"}, std::pair{ScheduleKind::cosine, "cosine"},
                    std::pair{ScheduleKind::multistep, "multistep"},
                    std::pair{ScheduleKind::quarter_cosine, "quarter_cosine"}};
}

struct TrainOptions {
  OptimizerKind optimizer = OptimizerKind::adam;
  double lr = 1e-3;                ///< learning rate of the "normal" parameter group
  double slow_lr_scale = 0.01;     ///< "slow" group lr = lr * slow_lr_scale (SLCA: 1/100)
  double momentum = 0.9;           ///< SGD momentum
  double weight_decay = 0.0;
  std::vector<double> adam_betas{0.9, 0.999};
  ScheduleKind schedule = ScheduleKind::constant;  ///< per epoch, restarted every task
  std::vector<int64_t> milestones;  ///< multistep: epochs at which lr *= gamma
  double gamma = 0.1;
  int64_t epochs = 1;               ///< epochs per task
  int64_t batch_size = 64;
  int64_t eval_batch_size = 256;
  bool reset_optimizer_each_task = true;  ///< the references build a fresh optimiser per task

  static constexpr auto fields() {
    return std::tuple{field("optimizer", &TrainOptions::optimizer), field("lr", &TrainOptions::lr),
                      field("slow_lr_scale", &TrainOptions::slow_lr_scale),
                      field("momentum", &TrainOptions::momentum), field("weight_decay", &TrainOptions::weight_decay),
                      field("adam_betas", &TrainOptions::adam_betas), field("schedule", &TrainOptions::schedule),
                      field("milestones", &TrainOptions::milestones), field("gamma", &TrainOptions::gamma),
                      field("epochs", &TrainOptions::epochs), field("batch_size", &TrainOptions::batch_size),
                      field("eval_batch_size", &TrainOptions::eval_batch_size),
                      field("reset_optimizer_each_task", &TrainOptions::reset_optimizer_each_task)};
  }
  void validate(const std::string& path) const {
    require_option(lr > 0, path, "lr", fmt::format("must be positive, got {}", lr));
    require_option(slow_lr_scale >= 0, path, "slow_lr_scale", "must be >= 0");
    require_option(momentum >= 0 && momentum < 1, path, "momentum", "must be in [0, 1)");
    require_option(weight_decay >= 0, path, "weight_decay", "must be >= 0");
    require_option(adam_betas.size() == 2 && adam_betas[0] >= 0 && adam_betas[0] < 1 && adam_betas[1] >= 0 &&
                       adam_betas[1] < 1,
                   path, "adam_betas", "must be two numbers in [0, 1)");
    require_option(gamma > 0, path, "gamma", "must be positive");
    require_option(epochs > 0, path, "epochs", fmt::format("must be positive, got {}", epochs));
    require_option(batch_size > 0, path, "batch_size", "must be positive");
    require_option(eval_batch_size > 0, path, "eval_batch_size", "must be positive");
    for (auto m : milestones) require_option(m > 0, path, "milestones", "epochs must be positive");
  }

  /// Learning-rate multiplier for `epoch` (0-based) of a task.
  double lr_factor(int64_t epoch) const {
    switch (schedule) {
      case ScheduleKind::constant: return 1.0;
      case ScheduleKind::cosine:
        return 0.5 * (1.0 + std::cos(3.14159265358979323846 * static_cast<double>(epoch) / static_cast<double>(epochs)));
      case ScheduleKind::quarter_cosine:
        if (epochs <= 1) return 1.0;
        return std::cos(99.0 * 3.14159265358979323846 * static_cast<double>(epoch) / (200.0 * static_cast<double>(epochs - 1)));
      case ScheduleKind::multistep: {
        double f = 1.0;
        for (auto m : milestones)
          if (epoch >= m) f *= gamma;
        return f;
      }
    }
    return 1.0;
  }
};

}  // namespace clprompt
