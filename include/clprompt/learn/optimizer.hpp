#pragma once
// Builds the optimiser over a model's parameter groups (slow / normal learning rate).
#include <memory>

#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>

#include "clprompt/learn/train_options.hpp"
#include "clprompt/model/parameter_groups.hpp"

namespace clprompt {

/// One torch optimiser with a param group per non-empty role; group lrs are set by set_lr().
class RoleOptimizer {
 public:
  RoleOptimizer(const ParameterGroups& groups, const TrainOptions& options) : options_(options) {
    if (!groups.slow.empty()) roles_.push_back({groups.slow, options.lr * options.slow_lr_scale});
    if (!groups.normal.empty()) roles_.push_back({groups.normal, options.lr});
    if (roles_.empty()) return;  // nothing to train (e.g. a fully frozen model): step() is a no-op
    std::vector<torch::optim::OptimizerParamGroup> param_groups;
    for (const auto& r : roles_) param_groups.emplace_back(r.params);
    if (options.optimizer == OptimizerKind::adam) {
      auto o = torch::optim::AdamOptions(options.lr)
                   .betas({options.adam_betas[0], options.adam_betas[1]})
                   .weight_decay(options.weight_decay);
      optimizer_ = std::make_unique<torch::optim::Adam>(param_groups, o);
    } else {
      auto o = torch::optim::SGDOptions(options.lr).momentum(options.momentum).weight_decay(options.weight_decay);
      optimizer_ = std::make_unique<torch::optim::SGD>(param_groups, o);
    }
    set_epoch(0);
  }

  /// Applies the schedule's factor for `epoch` to every group's base lr.
  void set_epoch(int64_t epoch) {
    if (!optimizer_) return;
    const double f = options_.lr_factor(epoch);
    auto& groups = optimizer_->param_groups();
    for (std::size_t i = 0; i < groups.size(); ++i) groups[i].options().set_lr(roles_[i].base_lr * f);
  }
  double current_lr() const {
    return optimizer_ ? optimizer_->param_groups().back().options().get_lr() : 0.0;
  }

  void zero_grad() {
    if (optimizer_) optimizer_->zero_grad();
  }
  void step() {
    if (optimizer_) optimizer_->step();
  }
  bool has_parameters() const { return optimizer_ != nullptr; }

 private:
  struct Role {
    std::vector<at::Tensor> params;
    double base_lr;
  };
  TrainOptions options_;
  std::vector<Role> roles_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
};

}  // namespace clprompt
