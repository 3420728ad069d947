#pragma once
// CODA-Prompt — COntinual Decomposed Attention-based Prompting (Smith et al., CVPR'23).
// A frozen ViT; per layer 0-4, a prompt assembled as the attention-weighted sum of learned
// components (100 in total, 10 new per task, length 8), end-to-end trainable, injected by
// prefix tuning; the head on [CLS].
//
//   auto model = clprompt::make_coda_prompt(vit);
//   clprompt::Learner learner(*model, scenario, clprompt::coda_prompt_train_options(), transform, seed);
#include <memory>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/learn/train_options.hpp"
#include "clprompt/model/continual_model.hpp"
#include "clprompt/selector/attention_decomposed.hpp"

namespace clprompt {

using CodaPrompt = ContinualModel<VisionTransformer, AttentionDecomposed, LinearHead>;

/// The CODA-Prompt repository's Split CIFAR-100 recipe (configs/cifar-100_prompt.yaml): Adam,
/// lr 0.001, cosine schedule, batch 128, 20 epochs per task (ImageNet-R: 50).
inline TrainOptions coda_prompt_train_options() {
  TrainOptions t;
  t.optimizer = OptimizerKind::adam;
  t.batch_size = 128;
  t.lr = 1e-3;
  t.epochs = 20;
  t.schedule = ScheduleKind::cosine;
  return t;
}

inline std::shared_ptr<CodaPrompt> make_coda_prompt(std::shared_ptr<VisionTransformer> backbone,
                                                    AttentionDecomposed::Options selector = {},
                                                    LinearHeadOptions head = {}) {
  const auto dims = dims_of(*backbone);
  return std::make_shared<CodaPrompt>(std::move(backbone), std::make_shared<AttentionDecomposed>(selector, dims),
                                      std::make_shared<LinearHead>(head, dims));
}

extern template class ContinualModel<VisionTransformer, AttentionDecomposed, LinearHead>;

}  // namespace clprompt
