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
#include <string>
#include <string_view>
#include <tuple>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/slca_head.hpp"
#include "clprompt/data/transforms.hpp"
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

/// SLCA's input pipeline on CIFAR-224 (GengDavid/SLCA utils/data.py:35-65): RandomResizedCrop(224,
/// bicubic), flip, ColorJitter(brightness = 63/255); at test Resize(256, bicubic) + CenterCrop(224);
/// CIFAR-100's mean and std.
inline TransformOptions slca_transform() {
  TransformOptions t = TransformOptions::scaled_reference(224);
  t.train_interpolation = Interpolation::bicubic;
  t.test_interpolation = Interpolation::bicubic;
  t.brightness = 63.0 / 255.0;
  t.mean = {0.5071, 0.4867, 0.4408};
  t.std = {0.2675, 0.2565, 0.2761};
  return t;
}

/// SLCA's backbone (GengDavid/SLCA convs/vits.py:701-712): the pre-trained final norm is
/// replaced by a fresh nn.LayerNorm(768) (weight 1, bias 0, PyTorch's eps 1e-5) that is
/// slow-trained with the rest; features, statistics and alignment sit on top of it.
struct SLCAOptions {
  bool reset_final_norm = true;
  double final_norm_eps = 1e-5;

  static constexpr auto fields() {
    return std::tuple{field("reset_final_norm", &SLCAOptions::reset_final_norm),
                      field("final_norm_eps", &SLCAOptions::final_norm_eps)};
  }
  void validate(const std::string& path) const {
    require_option(final_norm_eps > 0, path, "final_norm_eps", fmt::format("must be positive, got {}", final_norm_eps));
  }
};

/// SLCA's head options: SLCAHead with the earlier tasks' classifiers frozen while a new task
/// trains (fc.update(freeze_old=True), convs/linears.py:72-91; models/slca.py:155).
inline SLCAHeadOptions slca_head_options() {
  SLCAHeadOptions h;
  h.freeze_past_tasks = true;
  return h;
}

/// The slow-learned backbone (its final norm reset as options say) under any head (SLCAHead for
/// SLCA itself). Call it after the pre-trained weights are loaded.
template <class Head>
std::shared_ptr<SLCAModel<Head>> make_slca(std::shared_ptr<VisionTransformer> backbone, std::shared_ptr<Head> head,
                                           const SLCAOptions& options = {}) {
  options.validate("");
  if (options.reset_final_norm) backbone->reset_final_norm(options.final_norm_eps);
  ParameterRoles roles;
  roles.backbone = LearningRole::slow;
  return std::make_shared<SLCAModel<Head>>(std::move(backbone), std::make_shared<NoPrompts>(), std::move(head), roles);
}
/// The SLCA model: backbone slow-learned with a fresh final norm, SLCAHead.
inline std::shared_ptr<SLCA> make_slca(std::shared_ptr<VisionTransformer> backbone,
                                       const SLCAHeadOptions& head = slca_head_options(), const SLCAOptions& options = {}) {
  const auto dims = dims_of(*backbone);
  return make_slca(std::move(backbone), make_slca_head(head, dims), options);
}

struct SLCAMethod {
  static constexpr std::string_view name = "slca";
  static constexpr std::string_view label = "SLCA";
  static constexpr std::string_view description =
      "SLCA (ICCV'23): slow-learned ViT, per-task linear heads, classifier alignment on class statistics";
  static constexpr std::string_view default_head = "slca";
  using Options = SLCAOptions;
  static TrainOptions recipe() { return slca_train_options(); }
  static TransformOptions transform() { return slca_transform(); }
  static constexpr bool lr_scales_with_batch = false;  ///< SLCA's learning rates are fixed
  /// SLCA's four configurations (exps/slca/slca_{cifar,imgnetr,cub,cars}.json): three trials that
  /// differ only in the class order (numpy seeds 1993, 1996, 1997; torch re-seeded to 1 every run,
  /// trainer.py:44,105-110); 20 epochs with the milestone at 18 on CIFAR, 50 with it at 40 elsewhere;
  /// ImageNet statistics beyond CIFAR; CUB and Cars resized to 300 x 300 and randomly cropped;
  /// Cars' logit-norm temperature 0.05.
  static bool preset(std::string_view benchmark, Preset<Options>& p) {
    const bool cifar = benchmark == "split-cifar100", imagenet_r = benchmark == "split-imagenet-r";
    const bool cub = benchmark == "split-cub200", cars = benchmark == "split-cars196";
    if (!cifar && !imagenet_r && !cub && !cars) return false;
    p.trials = {{.seed = 1, .order = ClassOrderRule::numpy, .order_seed = 1993},
                {.seed = 1, .order = ClassOrderRule::numpy, .order_seed = 1996},
                {.seed = 1, .order = ClassOrderRule::numpy, .order_seed = 1997}};
    p.weights = "vit_base_patch16_224.augreg_in21k";  // convs/vits.py:125-128
    p.reported = "final accuracy 91.53 / 77.00 / 73.01 / 66.04 on CIFAR-100 / ImageNet-R / CUB / Cars (bar chart "
                 "slca_performance.jpg, \"averaged accuracy\")";
    p.train.eval_batch_size = 128;  // models/slca.py:98-99
    p.sources = {"GengDavid/SLCA:exps/slca/slca_cifar.json", "exps/slca/slca_imgnetr.json", "exps/slca/slca_cub.json",
                 "exps/slca/slca_cars.json", "models/slca.py:17-252", "convs/vits.py:125-128,701-712",
                 "convs/linears.py:72-91", "utils/data.py:35-201", "utils/data_manager.py:15-20,122-134",
                 "trainer.py:44,105-110"};
    if (cifar) return true;
    p.train.epochs = 50;
    p.train.schedule.milestones = {40};
    p.transform.brightness = 0.0;  // ColorJitter on CIFAR only (utils/data.py:126-137,153-165,179-191)
    p.transform.mean = {0.485, 0.456, 0.406};
    p.transform.std = {0.229, 0.224, 0.225};
    if (imagenet_r) {
      // data/imagenet-r/{train,val}: the split itself is not in the repository (utils/data.py:141-149).
      p.data.imagenet_r.split = ImageNetRSplit::split_folders;
      p.data.imagenet_r.test_folder = "val";
      return true;
    }
    p.transform.train_resize = 300;  // Resize((300, 300), bicubic) -> RandomCrop(224) -> flip (utils/data.py:153-157)
    p.transform.train_crop = TrainCrop::random;
    if (cars) p.head_options = {{"logit_norm", {{"temperature", 0.05}}}};  // exps/slca/slca_cars.json:17
    return true;
  }
  static void configure_head(SLCAHeadOptions& head) { head = slca_head_options(); }
  static void configure_head(LinearHeadOptions& head) { head.freeze_past_tasks = true; }
  template <class Head>
  static auto make(const Options& options, std::shared_ptr<Head> head, const MethodContext& ctx) {
    return make_slca(ctx.backbone, std::move(head), options);
  }
};

extern template class ContinualModel<VisionTransformer, NoPrompts, SLCAHead>;
extern template class Learner<SLCA>;
extern template void MethodRegistry::add<SLCAMethod>();

}  // namespace clprompt
