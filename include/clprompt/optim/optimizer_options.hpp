#pragma once
// What every training loop in clprompt shares, declared once: the optimiser and its settings
// (OptimizerOptions) and the per-epoch learning-rate schedule (ScheduleOptions). The Learner's
// TrainOptions, SLCA's classifier alignment and STAR-Prompt's first level hold them as inline
// field groups, so their JSON stays flat: train.lr, method_options.head.alignment.lr, ...
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "clprompt/core/options.hpp"

namespace clprompt {

enum class OptimizerKind { adam, sgd };
constexpr auto enum_names(OptimizerKind) {
  return std::array{std::pair{OptimizerKind::adam, "adam"}, std::pair{OptimizerKind::sgd, "sgd"}};
}

struct OptimizerOptions {
  OptimizerKind optimizer = OptimizerKind::adam;
  double lr = 1e-3;              ///< base learning rate (of the "normal" group where there are roles)
  double momentum = 0.9;         ///< SGD only
  double weight_decay = 0.0;     ///< coupled (added to the gradient), as torch.optim.Adam / SGD
  std::vector<double> adam_betas{0.9, 0.999};
  /// > 0: the total L2 norm of all gradients is clipped to this before every step
  /// (torch.nn.utils.clip_grad_norm_; L2P and DualPrompt: 1.0). 0: no clipping.
  double clip_grad_norm = 0.0;

  static constexpr auto fields() {
    using O = OptimizerOptions;
    return std::tuple{field("optimizer", &O::optimizer), field("lr", &O::lr), field("momentum", &O::momentum),
                      field("weight_decay", &O::weight_decay), field("adam_betas", &O::adam_betas),
                      field("clip_grad_norm", &O::clip_grad_norm)};
  }
  void validate(const std::string& path) const {
    require_option(std::isfinite(lr) && lr > 0, path, "lr", fmt::format("must be positive, got {}", lr));
    require_option(momentum >= 0 && momentum < 1, path, "momentum", "must be in [0, 1)");
    require_option(weight_decay >= 0, path, "weight_decay", "must be >= 0");
    require_option(adam_betas.size() == 2 && adam_betas[0] >= 0 && adam_betas[0] < 1 && adam_betas[1] >= 0 &&
                       adam_betas[1] < 1,
                   path, "adam_betas", "must be two numbers in [0, 1)");
    require_option(clip_grad_norm >= 0, path, "clip_grad_norm", "must be >= 0 (0 = no clipping)");
  }
};

/// The learning-rate factor of epoch e of E (0-based), as each reference steps its scheduler:
///   constant
///   cosine          0.5 (1 + cos(π e / E)): torch CosineAnnealingLR(T_max = E) stepped per epoch
///                   (SLCA's classifier alignment, models/slca.py:252)
///   multistep       gamma^(number of milestones <= e): MultiStepLR (SLCA, exps/slca/*.json)
///   quarter_cosine  cos(99π e / (200 (E − 1))): mammoth's CosineSchedule (utils/schedulers.py:38-54),
///                   stepped at the end of every epoch (STAR-Prompt); cos(0.495 π) ≈ 0.016 at the end
///   coda_cosine     cos(99π max(e − 1, 0) / (200 (E − 1))): the CODA-Prompt repository's
///                   CosineSchedule (utils/schedulers.py:19-20,40-57) as its learner steps it, at
///                   the start of every epoch but the first (learners/default.py:92-95): epochs 0 and 1
///                   at the full rate, cos(99π (E − 2) / (200 (E − 1))) ≈ 0.097 last at E = 20
enum class ScheduleKind { constant, cosine, multistep, quarter_cosine, coda_cosine };
constexpr auto enum_names(ScheduleKind) {
  return std::array{std::pair{ScheduleKind::constant, "constant"}, std::pair{ScheduleKind::cosine, "cosine"},
                    std::pair{ScheduleKind::multistep, "multistep"},
                    std::pair{ScheduleKind::quarter_cosine, "quarter_cosine"},
                    std::pair{ScheduleKind::coda_cosine, "coda_cosine"}};
}

inline constexpr double kPi = 3.14159265358979323846;

/// 0.5 (1 + cos(angle)): the half cosine every cosine schedule in clprompt uses (angle = π · progress).
inline double half_cosine(double angle) { return 0.5 * (1.0 + std::cos(angle)); }

struct ScheduleOptions {
  ScheduleKind schedule = ScheduleKind::constant;  ///< per epoch, restarted every task
  std::vector<int64_t> milestones;                 ///< multistep: epochs at which lr *= gamma
  double gamma = 0.1;

  static constexpr auto fields() {
    using O = ScheduleOptions;
    return std::tuple{field("schedule", &O::schedule), field("milestones", &O::milestones), field("gamma", &O::gamma)};
  }
  void validate(const std::string& path) const {
    require_option(gamma > 0, path, "gamma", "must be positive");
    for (auto m : milestones) require_option(m > 0, path, "milestones", "epochs must be positive");
  }

  /// Learning-rate multiplier for `epoch` (0-based) of `epochs`.
  double factor(int64_t epoch, int64_t epochs) const {
    switch (schedule) {
      case ScheduleKind::constant: return 1.0;
      case ScheduleKind::cosine: return half_cosine(kPi * static_cast<double>(epoch) / static_cast<double>(epochs));
      case ScheduleKind::quarter_cosine:
        if (epochs <= 1) return 1.0;
        return std::cos(99.0 * kPi * static_cast<double>(epoch) /
                        (200.0 * static_cast<double>(epochs - 1)));
      case ScheduleKind::coda_cosine:
        if (epochs <= 1) return 1.0;
        return std::cos(99.0 * kPi * static_cast<double>(std::max<int64_t>(epoch - 1, 0)) /
                        (200.0 * static_cast<double>(epochs - 1)));
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
