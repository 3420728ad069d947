#pragma once
// SimpleCIL (Zhou et al., IJCV'24; zhoudw-zdw/RevisitingCIL models/simplecil.py): the frozen
// pre-trained ViT and a prototype classifier — each class's mean training feature, cosine
// similarity at test (PrototypeHead, head/prototype.hpp). Nothing trains.
//
//   auto model = clprompt::make_simplecil(vit);
#include <memory>
#include <string_view>
#include <tuple>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/prototype.hpp"
#include "clprompt/learn/learner.hpp"
#include "clprompt/methods/linear_probe.hpp"
#include "clprompt/methods/method.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/model/continual_model.hpp"
#include "clprompt/selector/none.hpp"

namespace clprompt {

/// A linear probe's model (the backbone frozen) whose head is the prototype classifier.
template <class Head = PrototypeHead<LinearHead>>
using SimpleCILModel = LinearProbeModel<Head>;
using SimpleCIL = SimpleCILModel<>;

inline std::shared_ptr<SimpleCIL> make_simplecil(std::shared_ptr<VisionTransformer> backbone,
                                                 const PrototypeHeadKindOptions& head = {}) {
  const auto dims = dims_of(*backbone);
  return make_linear_probe(std::move(backbone), make_prototype_head(head, dims));
}

/// The RevisitingCIL protocol shared by SimpleCIL and APER (exps/simplecil/*.json,
/// exps/aper_finetune/*.json): CIFAR-100 and ImageNet-R in tasks of 5 classes (init_cls = increment
/// = 5), CUB-200 in tasks of 10, seed 1993 with a shuffled (numpy) class order, the in21k ViT-B/16.
template <class Options>
bool revisiting_cil_protocol(std::string_view benchmark, Preset<Options>& p) {
  const bool cifar = benchmark == "split-cifar100", imagenet_r = benchmark == "split-imagenet-r";
  const bool cub = benchmark == "split-cub200";
  if (!cifar && !imagenet_r && !cub) return false;
  p.scenario.num_tasks = imagenet_r ? 40 : 20;  // 200 / 5; 100 / 5 (CIFAR), 200 / 10 (CUB)
  p.scenario.initial_classes = 0;
  p.scenario.classes_per_task = 0;
  p.trials = {{.seed = 1993, .order = ClassOrderRule::numpy, .order_seed = 1993}};
  p.weights = "vit_base_patch16_224.augreg_in21k";  // convnet_type pretrained_vit_b16_224_in21k
  if (imagenet_r) p.data.imagenet_r.split = ImageNetRSplit::split_folders;
  p.reported = "not recorded: the repository ships no result files (the APER paper's tables were not audited here)";
  return true;
}

struct SimpleCILMethod {
  static constexpr std::string_view name = "simplecil";
  static constexpr std::string_view label = "SimpleCIL";
  static constexpr std::string_view description =
      "SimpleCIL (IJCV'24): frozen ViT, cosine classifier on class-mean prototypes; nothing trains";
  static constexpr std::string_view default_head = "prototype";
  struct Options {
    static constexpr auto fields() { return std::tuple{}; }
  };
  /// No training (models/simplecil.py: prototypes only).
  static TrainOptions recipe() {
    TrainOptions t;
    t.epochs = 0;
    t.batch_size = 48;       // exps/simplecil/*.json batch_size
    t.eval_batch_size = 48;  // models/simplecil.py: the test loader's batch
    return t;
  }
  static constexpr bool lr_scales_with_batch = false;
  static bool preset(std::string_view benchmark, Preset<Options>& p) {
    if (!revisiting_cil_protocol(benchmark, p)) return false;
    p.sources = {"zhoudw-zdw/RevisitingCIL:exps/simplecil/cifar224_5_5_vit-b_simplecil.json",
                 "exps/simplecil/imagenetr_5_5_vit-b_simplecil.json", "exps/simplecil/cub_10_10_vit-b_simplecil.json",
                 "models/simplecil.py", "utils/data_manager.py (shuffle with seed)"};
    return true;
  }
  template <class Head>
  static auto make(const Options&, std::shared_ptr<Head> head, const MethodContext& ctx) {
    return make_linear_probe(ctx.backbone, std::move(head));
  }
};

extern template class ContinualModel<VisionTransformer, NoPrompts, PrototypeHead<LinearHead>>;
extern template class Learner<SimpleCIL>;
extern template void MethodRegistry::add<SimpleCILMethod>();

}  // namespace clprompt
