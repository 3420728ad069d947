#pragma once
// Learning-rate roles of a model's parts: frozen (no gradient), slow (SLCA's slow learner: the
// backbone at lr * slow_lr_scale) and normal.
#include <array>
#include <tuple>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "clprompt/core/options.hpp"
#include "clprompt/optim/trainer.hpp"

namespace clprompt {

enum class LearningRole { frozen, slow, normal };
constexpr auto enum_names(LearningRole) {
  return std::array{std::pair{LearningRole::frozen, "frozen"}, std::pair{LearningRole::slow, "slow"},
                    std::pair{LearningRole::normal, "normal"}};
}

struct ParameterRoles {
  LearningRole backbone = LearningRole::frozen;  ///< prompt methods keep the pre-trained ViT frozen
  LearningRole selector = LearningRole::normal;
  LearningRole head = LearningRole::normal;

  static constexpr auto fields() {
    return std::tuple{field("backbone", &ParameterRoles::backbone), field("selector", &ParameterRoles::selector),
                      field("head", &ParameterRoles::head)};
  }
};

/// Trainable parameters by learning rate; frozen ones are only counted.
struct ParameterGroups {
  std::vector<at::Tensor> slow;
  std::vector<at::Tensor> normal;
  int64_t frozen_elements = 0;

  static int64_t count(const std::vector<at::Tensor>& ps) {
    int64_t n = 0;
    for (const auto& p : ps) n += p.numel();
    return n;
  }
  int64_t slow_elements() const { return count(slow); }
  int64_t normal_elements() const { return count(normal); }
  /// The Trainer's groups: slow at slow_lr_scale (first), normal at 1; empty ones are skipped.
  std::vector<ParamGroup> trainer_groups(double slow_lr_scale) const { return {{slow, slow_lr_scale}, {normal, 1.0}}; }
};

}  // namespace clprompt
