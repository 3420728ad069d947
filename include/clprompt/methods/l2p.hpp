#pragma once
// L2P — Learning to Prompt for Continual Learning (Wang et al., CVPR'22).
// A frozen ViT, a key-query prompt pool (top-5 of 10 prompts of length 5 prepended to the
// input tokens), the head on the mean of the prompt outputs, and the pull constraint.
//
//   auto model = clprompt::make_l2p(vit);                       // published options
//   clprompt::Learner learner(*model, scenario, clprompt::l2p_train_options(), transform, seed);
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/data/transforms.hpp"
#include "clprompt/learn/learner.hpp"
#include "clprompt/methods/coda_prompt.hpp"
#include "clprompt/methods/method.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/optim/train_options.hpp"
#include "clprompt/model/continual_model.hpp"
#include "clprompt/selector/key_query_pool.hpp"

namespace clprompt {

template <class Head = LinearHead>
using L2PModel = ContinualModel<VisionTransformer, KeyQueryPool, Head>;
using L2P = L2PModel<>;

/// l2p-pytorch's CIFAR-100 recipe (JH-LEE-KR/l2p-pytorch configs/cifar100_l2p.py:4-36,
/// main.py:117-128, engine.py:78): Adam (0.9, 0.999), constant lr 0.03 scaled by batch/256
/// (batch 16 -> 0.001875), 5 epochs per task, the total gradient norm clipped to 1.0 every step.
inline TrainOptions l2p_train_options() {
  TrainOptions t;
  t.optim.optimizer = OptimizerKind::adam;
  t.batch_size = 16;
  t.optim.lr = 0.03 * 16 / 256.0;
  t.optim.clip_grad_norm = 1.0;
  t.epochs = 5;
  t.schedule.schedule = ScheduleKind::constant;
  return t;
}

/// l2p-pytorch's and dualprompt-pytorch's input pipeline (datasets.py:195-216): RandomResizedCrop(224,
/// scale (0.05, 1)) (bilinear) and flip; at test Resize(256) (bicubic, the shorter side) +
/// CenterCrop(224); no normalisation: [0, 1] images.
inline TransformOptions l2p_transform() {
  TransformOptions t = TransformOptions::scaled_reference(224, /*scale_min=*/0.05);
  t.test_interpolation = Interpolation::bicubic;
  t.mean = {};
  t.std = {};
  return t;
}

template <class Head>
std::shared_ptr<L2PModel<Head>> make_l2p(std::shared_ptr<VisionTransformer> backbone, const KeyQueryPool::Options& selector,
                                         std::shared_ptr<Head> head) {
  const auto dims = dims_of(*backbone);
  return std::make_shared<L2PModel<Head>>(std::move(backbone), std::make_shared<KeyQueryPool>(selector, dims),
                                          std::move(head));
}
inline std::shared_ptr<L2P> make_l2p(std::shared_ptr<VisionTransformer> backbone, KeyQueryPool::Options selector = {},
                                     LinearHeadOptions head = {}) {
  const auto dims = dims_of(*backbone);
  return make_l2p(std::move(backbone), selector, std::make_shared<LinearHead>(head, dims));
}

struct L2PMethod {
  static constexpr std::string_view name = "l2p";
  static constexpr std::string_view label = "L2P";
  static constexpr std::string_view description =
      "L2P (CVPR'22): key-query prompt pool, top-k prompts prepended to the input";
  static constexpr std::string_view default_head = "linear";
  struct Options {
    KeyQueryPoolOptions selector;
    QueryOptions query;  ///< layer 0: the published separate query pass; >= 1: single pass
    static constexpr auto fields() {
      return std::tuple{field("selector", &Options::selector), field("query", &Options::query)};
    }
  };
  static TrainOptions recipe() { return l2p_train_options(); }
  static TransformOptions transform() { return l2p_transform(); }
  static constexpr bool lr_scales_with_batch = true;  ///< lr = 0.03 · batch / 256 (l2p-pytorch main.py)
  /// split-cifar100: l2p-pytorch's run (seed 42, natural class order, batch-wise prompt selection
  /// also at evaluation with its eval batch of 16). ImageNet-R: no L2P recipe exists in the L2P
  /// repositories; the CODA-Prompt repository's L2P++ is the one that runs (its paper's baseline).
  static bool preset(std::string_view benchmark, Preset<Options>& p) {
    if (benchmark == "split-cifar100") {
      p.trials = {{.seed = 42, .order = ClassOrderRule::natural, .order_seed = 42}};  // configs/cifar100_l2p.py:55,58
      p.options.selector.batchwise_eval = true;  // configs/cifar100_l2p.py:88 (also at test)
      p.train.eval_batch_size = 16;              // datasets.py:94-99: the test loader's batch is the selection's
      p.weights = "vit_base_patch16_224.orig_in21k";  // vision_transformer.py:89-93 (imagenet21k/ViT-B_16.npz)
      p.reported = "final average accuracy 83.83, forgetting 7.63 (paper); 83.77 / 6.63 (l2p-pytorch)";
      p.sources = {"JH-LEE-KR/l2p-pytorch:configs/cifar100_l2p.py:4-97", "main.py:38-41,117-130",
                   "engine.py:59-78,227-229", "datasets.py:84-99,159-216", "prompt.py:19-104",
                   "vision_transformer.py:89-93", "README.md:111-113"};
      return true;
    }
    if (!coda_repo_protocol(benchmark, p)) return false;
    // prompt_param 30 20 -1 (models/zoo.py:321-351) with the repository's all-pairs pull loss per
    // DataParallel chunk (models/zoo.py:265-267, learners/prompt.py:37,87-88)
    p.options.selector = KeyQueryPoolOptions::l2p_plus_plus_coda_repo();
    p.sources.push_back("experiments/imagenet-r*.sh (L2P++: prompt_param 30 20 -1)");
    return true;
  }
  /// L2P, and L2P with its query read at layer 3 of the prompted pass itself (issue 17).
  static std::vector<ReportedRun> reported_runs() {
    return {{"l2p", "L2P", {}},
            {"l2p-single-pass", "L2P, single-pass query (layer 3)", {"--set", "method_options.query.layer=3"}}};
  }
  /// "<name>-single-pass" when the query is read from the prompted pass (method_options.query.layer).
  static std::string run_name(const Options& options) {
    return options.query.layer > 0 ? std::string(name) + "-single-pass" : std::string(name);
  }
  static void check(const Options& options, const std::string& path, const MethodSetting& setting) {
    options.query.check_depth(setting.dims.depth, detail::join_path(path, "query"));
    if (options.selector.injection == PromptInjection::prefix_tuning)
      options.query.check_prompt_layers(options.selector.prefix_layers, detail::join_path(path, "query"),
                                        detail::join_path(path, "selector.prefix_layers"));
  }
  template <class Head>
  static auto make(const Options& options, std::shared_ptr<Head> head, const MethodContext& ctx) {
    auto model = make_l2p(ctx.backbone, options.selector, std::move(head));
    model->set_query_layer(options.query.layer);
    return model;
  }
};

extern template class ContinualModel<VisionTransformer, KeyQueryPool, LinearHead>;
extern template class Learner<L2P>;
extern template void MethodRegistry::add<L2PMethod>();

}  // namespace clprompt
