#pragma once
// RanPAC (McDonnell et al., NeurIPS'23; RanPAC/RanPAC): a pre-trained ViT whose features are
// randomly projected to M = 10 000 dimensions, rectified, and classified by ridge regression
// solved in closed form from Gram statistics accumulated over all tasks (RanPACHead,
// head/ranpac.hpp). Nothing but G and C is kept of old tasks.
//
// The reference's "Phase 1" adapts the backbone on the first task with a PETL module (adapter on
// CIFAR, SSF on ImageNet-R) and freezes it. clprompt has neither module; its first-task
// adaptation fine-tunes the backbone instead (method_options.adapt_backbone with train.epochs > 0
// and train.trained_tasks = 1). The default and the presets are the published "No Phase 1" run
// (args/*_publish.csv: model_name ncm, use_RP True, M 10000): frozen backbone, no training.
//
//   auto model = clprompt::make_ranpac(vit);
#include <memory>
#include <string>
#include <string_view>
#include <tuple>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/ranpac.hpp"
#include "clprompt/learn/learner.hpp"
#include "clprompt/methods/finetune.hpp"
#include "clprompt/methods/l2p.hpp"
#include "clprompt/methods/linear_probe.hpp"
#include "clprompt/methods/method.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/model/continual_model.hpp"
#include "clprompt/selector/none.hpp"

namespace clprompt {

/// Fine-tuning's model (backbone frozen unless adapted) whose head is RanPAC's.
template <class Head = RanPACHead<LinearHead>>
using RanPACModel = FineTuneModel<Head>;
using RanPAC = RanPACModel<>;

struct RanPACMethodOptions {
  /// Fine-tune the backbone in the tasks that train (RanPAC's Phase 1 with fine-tuning in place of
  /// its PETL module); false: the backbone stays frozen.
  bool adapt_backbone = false;

  static constexpr auto fields() { return std::tuple{field("adapt_backbone", &RanPACMethodOptions::adapt_backbone)}; }
};

/// RanPAC's Phase-1 recipe (RanPAC.py:197-201, args/cifar224_publish.csv row 7): SGD momentum 0.9,
/// lr (body_lr) 0.01, weight decay 5e-4, cosine to min_lr 0 over tuned_epoch 20, batch 48, first
/// task only. 0 epochs by default (the "No Phase 1" run); set train.epochs to adapt.
inline TrainOptions ranpac_train_options() {
  TrainOptions t;
  t.optim.optimizer = OptimizerKind::sgd;
  t.optim.lr = 0.01;
  t.optim.momentum = 0.9;
  t.optim.weight_decay = 5e-4;
  t.schedule.schedule = ScheduleKind::cosine;
  t.batch_size = 48;
  t.eval_batch_size = 48;
  t.epochs = 0;
  t.trained_tasks = 1;
  return t;
}

/// RanPAC's input pipeline at 224 px (utils/data.py:82-107 `build_transform`): RandomResizedCrop(224,
/// scale (0.05, 1), ratio (3/4, 4/3)) and flip at training; Resize(256, bicubic) + CenterCrop(224) at
/// test (Resize(224) on CIFAR, set by its preset); ToTensor only, no normalisation. Value for value
/// l2p-pytorch's pipeline, so it is that one.
inline TransformOptions ranpac_transform() { return l2p_transform(); }

/// The backbone (frozen, or fine-tuned in the tasks that train) under any head.
template <class Head>
std::shared_ptr<RanPACModel<Head>> make_ranpac(std::shared_ptr<VisionTransformer> backbone, std::shared_ptr<Head> head,
                                               const RanPACMethodOptions& options = {}) {
  return options.adapt_backbone ? make_finetune(std::move(backbone), std::move(head))
                                : make_linear_probe(std::move(backbone), std::move(head));
}
inline std::shared_ptr<RanPAC> make_ranpac(std::shared_ptr<VisionTransformer> backbone,
                                           const RanPACHeadOptions& head = {}, const RanPACMethodOptions& options = {}) {
  const auto dims = dims_of(*backbone);
  return make_ranpac(std::move(backbone), make_ranpac_head(head, dims), options);
}

struct RanPACMethod {
  static constexpr std::string_view name = "ranpac";
  static constexpr std::string_view label = "RanPAC";
  static constexpr std::string_view description =
      "RanPAC (NeurIPS'23): random projection of frozen ViT features + ridge regression on Gram statistics";
  static constexpr std::string_view default_head = "ranpac";
  using Options = RanPACMethodOptions;
  static TrainOptions recipe() { return ranpac_train_options(); }
  static TransformOptions transform() { return ranpac_transform(); }
  static constexpr bool lr_scales_with_batch = false;
  static void check(const Options& options, const std::string& path, const MethodSetting& setting) {
    require_option(!options.adapt_backbone || setting.train.epochs > 0, path, "adapt_backbone",
                   "needs training epochs: set train.epochs (RanPAC's Phase 1: 20) and train.trained_tasks (1)");
  }
  /// RanPAC's "No Phase 1" run (args/<dataset>_publish.csv row 4: ncm, use_RP True, M 10000, seed
  /// 1993, shuffled class order): CIFAR-100 in 10 tasks of 10 with the in21k ViT-B/16; ImageNet-R and
  /// CUB-200 in 10 tasks of 20 with the in21k-ft-in1k one; Stanford Cars in a first task of 16 then 9
  /// of 20 (init_cls 16, increment 20) with the in21k one. Image folders train/ and test/
  /// (utils/data.py:137-238).
  static bool preset(std::string_view benchmark, Preset<Options>& p) {
    const bool cifar = benchmark == "split-cifar100", imagenet_r = benchmark == "split-imagenet-r";
    const bool cub = benchmark == "split-cub200", cars = benchmark == "split-cars196";
    if (!cifar && !imagenet_r && !cub && !cars) return false;
    p.scenario.num_tasks = 10;
    p.scenario.initial_classes = cars ? 16 : 0;
    p.scenario.classes_per_task = cars ? 20 : 0;
    p.trials = {{.seed = 1993, .order = ClassOrderRule::numpy, .order_seed = 1993}};  // utils/data_manager.py:76-80
    p.train.eval_batch_size = 128;  // RanPAC.py:84-87 (batch_size 128 of the ncm rows)
    p.train.batch_size = 128;
    if (cifar) p.transform.test_resize = 224;  // build_transform(isCifar=True): Resize(224) + CenterCrop(224)
    p.weights = cifar || cars ? "vit_base_patch16_224.augreg_in21k"            // pretrained_vit_b16_224_in21k
                              : "vit_base_patch16_224.augreg2_in21k_ft_in1k";  // pretrained_vit_b16_224 (timm's default tag)
    p.reported = "final accuracy 89.0 (CIFAR-100) / 71.8 (ImageNet-R), row \"No Phase 1\" of "
                 "paper_tables/Table_data_main_{cifar224,imagenetr}.csv (with Phase 1: 92.2 / 77.9); CUB and Cars: "
                 "paper_tables/Table_data_main_{cub,cars}.csv";
    p.sources = {"RanPAC/RanPAC:args/cifar224_publish.csv:5", "args/imagenetr_publish.csv:5", "args/cub_publish.csv:5",
                 "args/cars_publish.csv:5", "RanPAC.py:84-130,170-230", "utils/data.py:82-238",
                 "utils/data_manager.py:9-80", "paper_tables/Table_data_main_cifar224.csv",
                 "paper_tables/Table_data_main_imagenetr.csv"};
    if (imagenet_r) {
      p.data.imagenet_r.split = ImageNetRSplit::split_folders;
      p.data.imagenet_r.test_folder = "test";
    }
    if (cub || cars) p.data.test_folder = "test";
    return true;
  }
  template <class Head>
  static auto make(const Options& options, std::shared_ptr<Head> head, const MethodContext& ctx) {
    return make_ranpac(ctx.backbone, std::move(head), options);
  }
};

extern template class ContinualModel<VisionTransformer, NoPrompts, RanPACHead<LinearHead>>;
extern template class Learner<RanPAC>;
extern template void MethodRegistry::add<RanPACMethod>();

}  // namespace clprompt
