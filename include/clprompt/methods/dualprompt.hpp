#pragma once
// DualPrompt — Complementary Prompting for Rehearsal-free Continual Learning (Wang et al.,
// ECCV'22). A frozen ViT, a shared G-prompt (layers 0-1) and a task-keyed E-prompt pool
// (layers 2-4), both by prefix tuning; the head on [CLS].
//
//   auto model = clprompt::make_dualprompt(vit);
//   clprompt::Learner learner(*model, scenario, clprompt::dualprompt_train_options(), transform, seed);
#include <memory>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/learn/train_options.hpp"
#include "clprompt/model/continual_model.hpp"
#include "clprompt/selector/dualprompt.hpp"

namespace clprompt {

using DualPromptModel = ContinualModel<VisionTransformer, DualPrompt, LinearHead>;

/// dualprompt-pytorch's CIFAR-100 recipe: Adam, constant lr 0.03 scaled by batch/256
/// (batch 24 -> 0.0028125), 5 epochs per task.
inline TrainOptions dualprompt_train_options() {
  TrainOptions t;
  t.optimizer = OptimizerKind::adam;
  t.batch_size = 24;
  t.lr = 0.03 * 24 / 256.0;
  t.epochs = 5;
  t.schedule = ScheduleKind::constant;
  return t;
}

inline std::shared_ptr<DualPromptModel> make_dualprompt(std::shared_ptr<VisionTransformer> backbone,
                                                        DualPrompt::Options selector = {}, LinearHeadOptions head = {}) {
  const auto dims = dims_of(*backbone);
  return std::make_shared<DualPromptModel>(std::move(backbone), std::make_shared<DualPrompt>(selector, dims),
                                           std::make_shared<LinearHead>(head, dims));
}

extern template class ContinualModel<VisionTransformer, DualPrompt, LinearHead>;

}  // namespace clprompt
