#pragma once
// STAR-Prompt — Semantic Residual Prompts (Menabue et al., ECCV'24; aimagelab/mammoth
// models/starprompt.py and models/star_prompt_utils/). Two levels, both run for every task:
//   1. ClipTextPrototypes: per-class learned context tokens for CLIP's frozen text encoder,
//      trained against frozen CLIP image features; their text features are the class prototypes;
//   2. PrototypeKeys: the prototypes are the keys of per-layer, per-class residual prompts,
//      selected with CLIP's image embedding of the input and added to the attention values of
//      the frozen ViT; a linear head trained with past logits masked, then aligned on features
//      sampled from class statistics with logit normalisation (the head of SLCA, with
//      STAR-Prompt's settings).
//
//   auto clip = clprompt::load_clip_directory("clip-vit-base-patch16");   // weights + tokenizer
//   auto model = clprompt::make_star_prompt(vit, clip.model, clip.tokenizer, scenario.class_names());
//   clprompt::Learner learner(*model, scenario, clprompt::star_prompt_train_options(), transform, seed);
//
// Without CLIP weights, STARPromptFallback takes its keys from ClassMeanPrototypes (class means
// of the frozen ViT): the same second level, but not STAR-Prompt's prototypes.
#include <memory>
#include <string>
#include <vector>

#include "clprompt/backbone/clip.hpp"
#include "clprompt/backbone/vit.hpp"
#include "clprompt/learn/train_options.hpp"
#include "clprompt/methods/slca.hpp"
#include "clprompt/model/continual_model.hpp"
#include "clprompt/selector/class_mean_prototypes.hpp"
#include "clprompt/selector/clip_text_prototypes.hpp"
#include "clprompt/selector/prototype_keys.hpp"

namespace clprompt {

using STARPrompt = ContinualModel<VisionTransformer, PrototypeKeys<ClipTextPrototypes>, SLCAHead>;
using STARPromptFallback = ContinualModel<VisionTransformer, PrototypeKeys<ClassMeanPrototypes>, SLCAHead>;

/// STAR-Prompt's second-level classifier (mammoth end_to_end_model.py, starprompt.py): CE with
/// past logits masked while training; after each task (t ≥ 1) alignment for 10 + 5 t epochs with
/// SGD lr 0.001 (no momentum, no weight decay, no schedule) on 256 sampled features per seen
/// class in batches of 128, logits divided by 0.1 · ‖logits‖ over all seen classes; the next
/// task trains from the un-aligned head. Class statistics: a 5-component mixture of diagonal
/// Gaussians per class (gr_model mog), means not shrunk.
inline SLCAHeadOptions star_prompt_head_options() {
  SLCAHeadOptions h;
  h.mask_other_tasks = true;
  h.logit_norm.temperature = 0.1;
  h.logit_norm.per_task_blocks = false;
  h.alignment.epochs = 10;
  h.alignment.epochs_per_task = 5;
  h.alignment.cosine = false;
  h.alignment.lr = 0.001;
  h.alignment.momentum = 0.0;
  h.alignment.weight_decay = 0.0;
  h.alignment.samples_per_class = 256;
  h.alignment.batch_size = 128;
  h.alignment.mean_shrink = 0.0;
  h.alignment.restore_after_task = true;
  h.alignment.statistics.covariance = CovarianceKind::mixture;
  h.alignment.statistics.mixture.components = 5;
  h.alignment.statistics.mixture.iterations = 500;  // gr_mog_n_iters_second_stage
  return h;
}

/// The second level's recipe (starprompt.py set_defaults, seq-cifar100-224): Adam lr 0.001,
/// batch 128, 20 epochs, mammoth's CosineSchedule per epoch, fresh optimiser per task.
inline TrainOptions star_prompt_train_options() {
  TrainOptions t;
  t.optimizer = OptimizerKind::adam;
  t.lr = 1e-3;
  t.batch_size = 128;
  t.epochs = 20;
  t.schedule = ScheduleKind::quarter_cosine;
  t.reset_optimizer_each_task = true;
  return t;
}

/// STAR-Prompt with CLIP: `class_names[label]` names each incremental label (Scenario::class_names()).
inline std::shared_ptr<STARPrompt> make_star_prompt(std::shared_ptr<VisionTransformer> backbone,
                                                    std::shared_ptr<ClipModel> clip, ClipTokenizer tokenizer,
                                                    std::vector<std::string> class_names,
                                                    PrototypeKeysOptions selector = {},
                                                    ClipPrototypeOptions source = {},
                                                    const SLCAHeadOptions& head = star_prompt_head_options()) {
  const auto dims = dims_of(*backbone);
  auto prototypes = std::make_shared<ClipTextPrototypes>(source, std::move(clip), std::move(tokenizer),
                                                         std::move(class_names));
  ParameterRoles roles;
  roles.backbone = LearningRole::frozen;
  return std::make_shared<STARPrompt>(std::move(backbone),
                                      std::make_shared<PrototypeKeys<ClipTextPrototypes>>(selector, dims,
                                                                                          std::move(prototypes)),
                                      make_slca_head(head, dims), roles);
}

/// The second level with class-mean keys of the frozen ViT (no CLIP needed).
inline std::shared_ptr<STARPromptFallback> make_star_prompt_fallback(
    std::shared_ptr<VisionTransformer> backbone, PrototypeKeysOptions selector = {},
    const SLCAHeadOptions& head = star_prompt_head_options()) {
  const auto dims = dims_of(*backbone);
  ParameterRoles roles;
  roles.backbone = LearningRole::frozen;
  return std::make_shared<STARPromptFallback>(
      std::move(backbone),
      std::make_shared<PrototypeKeys<ClassMeanPrototypes>>(selector, dims, std::make_shared<ClassMeanPrototypes>(dims)),
      make_slca_head(head, dims), roles);
}

extern template class ContinualModel<VisionTransformer, PrototypeKeys<ClipTextPrototypes>, SLCAHead>;
extern template class ContinualModel<VisionTransformer, PrototypeKeys<ClassMeanPrototypes>, SLCAHead>;

}  // namespace clprompt
