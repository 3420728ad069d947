#pragma once
// SLCA — Slow Learner with Classifier Alignment (Zhang et al., ICCV'23; GengDavid/SLCA).
// The whole ViT is fine-tuned at 1/100 of the classifier's learning rate (the slow learner:
// backbone role `slow`, TrainOptions::slow_lr_scale 0.01), one linear classifier per task
// (LinearHead, SLCA's SimpleContinualLinear), and after each task the class statistics are
// collected and the classifier is aligned on sampled features with logit normalisation
// (SLCAHead = Aligned<LogitNormalized<LinearHead>>, head/slca_head.hpp).
//
//   auto model = clprompt::make_slca(vit);
//   clprompt::Learner learner(*model, scenario, clprompt::slca_train_options(), transform, seed);
#include <memory>
#include <string_view>
#include <tuple>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/slca_head.hpp"
#include "clprompt/learn/learner.hpp"
#include "clprompt/methods/method.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/model/continual_model.hpp"
#include "clprompt/optim/train_options.hpp"
#include "clprompt/selector/none.hpp"

namespace clprompt {

template <class Head = SLCAHead>
using SLCAModel = ContinualModel<VisionTransformer, NoPrompts, Head>;
using SLCA = SLCAModel<>;

/// SLCA's Split CIFAR-100 stage-1 recipe (exps/slca/slca_cifar.json, models/slca.py): SGD
/// momentum 0.9, weight decay 5e-4 on both groups, batch 128, classifier lr 0.01, backbone lr
/// 0.01 x bcb_lrscale 1/100 = 1e-4, MultiStepLR x0.1 at epoch 18 of 20. Not scaled with the batch.
inline TrainOptions slca_train_options() {
  TrainOptions t;
  t.optim.optimizer = OptimizerKind::sgd;
  t.optim.lr = 0.01;
  t.slow_lr_scale = 0.01;
  t.optim.momentum = 0.9;
  t.optim.weight_decay = 5e-4;
  t.batch_size = 128;
  t.schedule.schedule = ScheduleKind::multistep;
  t.schedule.milestones = {18};
  t.schedule.gamma = 0.1;
  t.epochs = 20;
  return t;
}

/// The slow-learned backbone under any head (SLCAHead for SLCA itself).
template <class Head>
std::shared_ptr<SLCAModel<Head>> make_slca(std::shared_ptr<VisionTransformer> backbone, std::shared_ptr<Head> head) {
  ParameterRoles roles;
  roles.backbone = LearningRole::slow;
  return std::make_shared<SLCAModel<Head>>(std::move(backbone), std::make_shared<NoPrompts>(), std::move(head), roles);
}
/// The SLCA model: backbone slow-learned, SLCAHead.
inline std::shared_ptr<SLCA> make_slca(std::shared_ptr<VisionTransformer> backbone, const SLCAHeadOptions& head = {}) {
  const auto dims = dims_of(*backbone);
  return make_slca(std::move(backbone), make_slca_head(head, dims));
}

struct SLCAMethod {
  static constexpr std::string_view name = "slca";
  static constexpr std::string_view label = "SLCA";
  static constexpr std::string_view description =
      "SLCA (ICCV'23): slow-learned ViT, per-task linear heads, classifier alignment on class statistics";
  static constexpr std::string_view default_head = "slca";
  struct Options {
    static constexpr auto fields() { return std::tuple{}; }
  };
  static TrainOptions recipe() { return slca_train_options(); }
  static constexpr bool lr_scales_with_batch = false;  ///< SLCA's learning rates are fixed
  template <class Head>
  static auto make(const Options&, std::shared_ptr<Head> head, const MethodContext& ctx) {
    return make_slca(ctx.backbone, std::move(head));
  }
};

extern template class ContinualModel<VisionTransformer, NoPrompts, SLCAHead>;
extern template class Learner<SLCA>;
extern template void MethodRegistry::add<SLCAMethod>();

}  // namespace clprompt
