#pragma once
// L2P — Learning to Prompt for Continual Learning (Wang et al., CVPR'22).
// A frozen ViT, a key-query prompt pool (top-5 of 10 prompts of length 5 prepended to the
// input tokens), the head on the mean of the prompt outputs, and the pull constraint.
//
//   auto model = clprompt::make_l2p(vit);                       // published options
//   clprompt::Learner learner(*model, scenario, clprompt::l2p_train_options(), transform, seed);
#include <memory>
#include <string_view>
#include <tuple>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/learn/learner.hpp"
#include "clprompt/methods/method.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/optim/train_options.hpp"
#include "clprompt/model/continual_model.hpp"
#include "clprompt/selector/key_query_pool.hpp"

namespace clprompt {

template <class Head = LinearHead>
using L2PModel = ContinualModel<VisionTransformer, KeyQueryPool, Head>;
using L2P = L2PModel<>;

/// l2p-pytorch's CIFAR-100 recipe: Adam (0.9, 0.999), constant lr 0.03 scaled by batch/256
/// (batch 16 -> 0.001875), 5 epochs per task.
inline TrainOptions l2p_train_options() {
  TrainOptions t;
  t.optim.optimizer = OptimizerKind::adam;
  t.batch_size = 16;
  t.optim.lr = 0.03 * 16 / 256.0;
  t.epochs = 5;
  t.schedule.schedule = ScheduleKind::constant;
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
    static constexpr auto fields() { return std::tuple{field("selector", &Options::selector)}; }
  };
  static TrainOptions recipe() { return l2p_train_options(); }
  static constexpr bool lr_scales_with_batch = true;  ///< lr = 0.03 · batch / 256 (l2p-pytorch main.py)
  template <class Head>
  static auto make(const Options& options, std::shared_ptr<Head> head, const MethodContext& ctx) {
    return make_l2p(ctx.backbone, options.selector, std::move(head));
  }
};

extern template class ContinualModel<VisionTransformer, KeyQueryPool, LinearHead>;
extern template class Learner<L2P>;
extern template void MethodRegistry::add<L2PMethod>();

}  // namespace clprompt
