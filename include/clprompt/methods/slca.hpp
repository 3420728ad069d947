#pragma once
// SLCA — Slow Learner with Classifier Alignment (Zhang et al., ICCV'23; GengDavid/SLCA).
// The whole ViT is fine-tuned at 1/100 of the classifier's learning rate (the slow learner:
// backbone role `slow`, TrainOptions::slow_lr_scale 0.01), one linear classifier per task
// (LinearHead, SLCA's SimpleContinualLinear), and after each task the class statistics are
// collected and the classifier is aligned on sampled features with logit normalisation
// (Aligned<LogitNormalized<LinearHead>>).
//
//   auto model = clprompt::make_slca(vit);
//   clprompt::Learner learner(*model, scenario, clprompt::slca_train_options(), transform, seed);
//
// SLCAHead is also the head of any method "+ CA" (clprompt run --method coda-prompt --align).
#include <memory>
#include <string>
#include <tuple>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/aligned.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/head/logit_normalized.hpp"
#include "clprompt/learn/train_options.hpp"
#include "clprompt/model/continual_model.hpp"
#include "clprompt/selector/none.hpp"

namespace clprompt {

using SLCAHead = Aligned<LogitNormalized<LinearHead>>;
using SLCA = ContinualModel<VisionTransformer, NoPrompts, SLCAHead>;

/// Options of SLCAHead as one JSON object (the CLI's method_options.head): the linear
/// classifier's fields, plus "logit_norm" and "alignment".
struct SLCAHeadOptions {
  /// SLCA's stage 1 computes CE on logits[:, known_classes:] against targets - known_classes,
  /// i.e. over the current task's classes only (previous tasks' logits are left out): masking.
  bool mask_other_tasks = true;
  bool bias = true;
  LogitNormOptions logit_norm;
  AlignmentOptions alignment;

  LinearHeadOptions linear() const { return {.mask_other_tasks = mask_other_tasks, .bias = bias}; }

  static constexpr auto fields() {
    return std::tuple{field("mask_other_tasks", &SLCAHeadOptions::mask_other_tasks),
                      field("bias", &SLCAHeadOptions::bias), field("logit_norm", &SLCAHeadOptions::logit_norm),
                      field("alignment", &SLCAHeadOptions::alignment)};
  }
};

inline std::shared_ptr<SLCAHead> make_slca_head(const SLCAHeadOptions& options, const BackboneDims& dims) {
  auto linear = std::make_shared<LinearHead>(options.linear(), dims);
  auto normalized = std::make_shared<LogitNormalized<LinearHead>>(options.logit_norm, std::move(linear));
  return std::make_shared<SLCAHead>(options.alignment, std::move(normalized), dims);
}

/// SLCA's Split CIFAR-100 stage-1 recipe (exps/slca/slca_cifar.json, models/slca.py): SGD
/// momentum 0.9, weight decay 5e-4 on both groups, batch 128, classifier lr 0.01, backbone lr
/// 0.01 x bcb_lrscale 1/100 = 1e-4, MultiStepLR x0.1 at epoch 18 of 20. Not scaled with the batch.
inline TrainOptions slca_train_options() {
  TrainOptions t;
  t.optimizer = OptimizerKind::sgd;
  t.lr = 0.01;
  t.slow_lr_scale = 0.01;
  t.momentum = 0.9;
  t.weight_decay = 5e-4;
  t.batch_size = 128;
  t.schedule = ScheduleKind::multistep;
  t.milestones = {18};
  t.gamma = 0.1;
  t.epochs = 20;
  return t;
}

/// The SLCA model: backbone slow-learned, SLCAHead.
inline std::shared_ptr<SLCA> make_slca(std::shared_ptr<VisionTransformer> backbone, const SLCAHeadOptions& head = {}) {
  const auto dims = dims_of(*backbone);
  ParameterRoles roles;
  roles.backbone = LearningRole::slow;
  return std::make_shared<SLCA>(std::move(backbone), std::make_shared<NoPrompts>(), make_slca_head(head, dims), roles);
}

// Compiled once in the library (src/methods.cpp).
extern template class ContinualModel<VisionTransformer, NoPrompts, SLCAHead>;

}  // namespace clprompt
