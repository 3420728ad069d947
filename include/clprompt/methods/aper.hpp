#pragma once
// APER with fine-tuning (Zhou et al., IJCV'24; zhoudw-zdw/RevisitingCIL models/aper_finetune.py):
// the pre-trained ViT is fine-tuned on the first task only, then frozen; each class's prototype is
// the mean of the concatenated features of the pre-trained and the adapted backbone
// (PretrainedAndAdapted, backbone/pretrained_and_adapted.hpp) and test images are classified by
// cosine similarity (PrototypeHead). The first task trains under a linear head on the adapted
// features (the reference: its CosineLinear head), which the prototypes then replace.
//
//   auto model = clprompt::make_aper(vit);
#include <memory>
#include <string_view>
#include <tuple>

#include "clprompt/backbone/pretrained_and_adapted.hpp"
#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/prototype.hpp"
#include "clprompt/learn/learner.hpp"
#include "clprompt/methods/method.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/methods/simplecil.hpp"
#include "clprompt/model/continual_model.hpp"
#include "clprompt/selector/none.hpp"

namespace clprompt {

using APERBackbone = PretrainedAndAdapted<VisionTransformer>;
template <class Head = PrototypeHead<LinearHead>>
using APERModel = ContinualModel<APERBackbone, NoPrompts, Head>;
using APER = APERModel<>;

/// APER's first-task fine-tuning (exps/aper_finetune/*_5_5_*.json, aper_finetune.py:80-88): SGD
/// momentum 0.9, init_lr 0.01, weight decay 5e-4, cosine to min_lr 0 over tuned_epoch 5, batch 128,
/// first task only.
inline TrainOptions aper_train_options() {
  TrainOptions t;
  t.optim.optimizer = OptimizerKind::sgd;
  t.optim.lr = 0.01;
  t.optim.momentum = 0.9;
  t.optim.weight_decay = 5e-4;
  t.schedule.schedule = ScheduleKind::cosine;
  t.epochs = 5;
  t.batch_size = 128;
  t.eval_batch_size = 128;
  t.trained_tasks = 1;
  return t;
}

/// The adapted branch fine-tuned (in the tasks that train), the pre-trained branch frozen, under any head
/// (sized for 2·D features). Call after the pre-trained weights are loaded.
template <class Head>
std::shared_ptr<APERModel<Head>> make_aper(std::shared_ptr<APERBackbone> backbone, std::shared_ptr<Head> head) {
  ParameterRoles roles;
  roles.backbone = LearningRole::normal;
  return std::make_shared<APERModel<Head>>(std::move(backbone), std::make_shared<NoPrompts>(), std::move(head), roles);
}
inline std::shared_ptr<APER> make_aper(std::shared_ptr<VisionTransformer> vit, const PrototypeHeadKindOptions& head = {}) {
  auto backbone = std::make_shared<APERBackbone>(std::move(vit));
  const auto dims = dims_of(*backbone);
  return make_aper(std::move(backbone), make_prototype_head(head, dims));
}

struct APERMethod {
  static constexpr std::string_view name = "aper";
  static constexpr std::string_view label = "APER (fine-tune)";
  static constexpr std::string_view description =
      "APER (IJCV'24): ViT fine-tuned on the first task; prototypes of pre-trained + adapted features";
  static constexpr std::string_view default_head = "prototype";
  struct Options {
    static constexpr auto fields() { return std::tuple{}; }
  };
  static TrainOptions recipe() { return aper_train_options(); }
  static constexpr bool lr_scales_with_batch = false;
  static bool preset(std::string_view benchmark, Preset<Options>& p) {
    if (!revisiting_cil_protocol(benchmark, p)) return false;
    p.sources = {"zhoudw-zdw/RevisitingCIL:exps/aper_finetune/cifar224_5_5_vit-b_finetune.json",
                 "exps/aper_finetune/imagenetr_5_5_vit-b_finetune.json", "exps/aper_finetune/cub_10_10_vit-b_finetune.json",
                 "models/aper_finetune.py:37-115"};
    return true;
  }
  /// Heads see the 2·D concatenated features.
  static BackboneDims head_dims(BackboneDims dims) {
    dims.dim *= 2;
    return dims;
  }
  template <class Head>
  static auto make(const Options&, std::shared_ptr<Head> head, const MethodContext& ctx) {
    return make_aper(std::make_shared<APERBackbone>(ctx.backbone), std::move(head));
  }
};

extern template class ContinualModel<APERBackbone, NoPrompts, PrototypeHead<LinearHead>>;
extern template class Learner<APER>;
extern template void MethodRegistry::add<APERMethod>();

}  // namespace clprompt
