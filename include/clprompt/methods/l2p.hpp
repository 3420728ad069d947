#pragma once
// L2P — Learning to Prompt for Continual Learning (Wang et al., CVPR'22).
// A frozen ViT, a key-query prompt pool (top-5 of 10 prompts of length 5 prepended to the
// input tokens), the head on the mean of the prompt outputs, and the pull constraint.
//
//   auto model = clprompt::make_l2p(vit);                       // published options
//   clprompt::Learner learner(*model, scenario, clprompt::l2p_train_options(), transform, seed);
#include <memory>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/learn/train_options.hpp"
#include "clprompt/model/continual_model.hpp"
#include "clprompt/selector/key_query_pool.hpp"

namespace clprompt {

using L2P = ContinualModel<VisionTransformer, KeyQueryPool, LinearHead>;

/// l2p-pytorch's CIFAR-100 recipe: Adam (0.9, 0.999), constant lr 0.03 scaled by batch/256
/// (batch 16 -> 0.001875), 5 epochs per task.
inline TrainOptions l2p_train_options() {
  TrainOptions t;
  t.optimizer = OptimizerKind::adam;
  t.batch_size = 16;
  t.lr = 0.03 * 16 / 256.0;
  t.epochs = 5;
  t.schedule = ScheduleKind::constant;
  return t;
}

inline std::shared_ptr<L2P> make_l2p(std::shared_ptr<VisionTransformer> backbone, KeyQueryPool::Options selector = {},
                                     LinearHeadOptions head = {}) {
  const auto dims = dims_of(*backbone);
  return std::make_shared<L2P>(std::move(backbone), std::make_shared<KeyQueryPool>(selector, dims),
                               std::make_shared<LinearHead>(head, dims));
}

extern template class ContinualModel<VisionTransformer, KeyQueryPool, LinearHead>;

}  // namespace clprompt
