#pragma once
// Linear probe: the pre-trained ViT frozen, only the class-incremental linear head trained.
//
//   auto model = clprompt::make_linear_probe(vit);
#include <memory>
#include <string_view>
#include <tuple>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/learn/learner.hpp"
#include "clprompt/methods/finetune.hpp"
#include "clprompt/methods/method.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/model/continual_model.hpp"
#include "clprompt/selector/none.hpp"

namespace clprompt {

/// The same type as fine-tuning: only the backbone's learning role differs.
template <class Head = LinearHead>
using LinearProbeModel = FineTuneModel<Head>;
using LinearProbe = LinearProbeModel<>;

/// The backbone frozen, under any head.
template <class Head>
std::shared_ptr<LinearProbeModel<Head>> make_linear_probe(std::shared_ptr<VisionTransformer> backbone,
                                                          std::shared_ptr<Head> head) {
  ParameterRoles roles;
  roles.backbone = LearningRole::frozen;
  return std::make_shared<LinearProbeModel<Head>>(std::move(backbone), std::make_shared<NoPrompts>(), std::move(head),
                                                  roles);
}
inline std::shared_ptr<LinearProbe> make_linear_probe(std::shared_ptr<VisionTransformer> backbone,
                                                      const LinearHeadOptions& head = {}) {
  const auto dims = dims_of(*backbone);
  return make_linear_probe(std::move(backbone), std::make_shared<LinearHead>(head, dims));
}

struct LinearProbeMethod {
  static constexpr std::string_view name = "linear-probe";
  static constexpr std::string_view label = "Linear probe (frozen backbone)";
  static constexpr std::string_view description = "frozen ViT, class-incremental linear head";
  static constexpr std::string_view default_head = "linear";
  struct Options {
    static constexpr auto fields() { return std::tuple{}; }
  };
  /// Adam 1e-2: only a linear layer trains.
  static TrainOptions recipe() {
    TrainOptions t;
    t.optim.optimizer = OptimizerKind::adam;
    t.optim.lr = 1e-2;
    t.batch_size = 64;
    return t;
  }
  static constexpr bool lr_scales_with_batch = false;
  template <class Head>
  static auto make(const Options&, std::shared_ptr<Head> head, const MethodContext& ctx) {
    return make_linear_probe(ctx.backbone, std::move(head));
  }
};

extern template void MethodRegistry::add<LinearProbeMethod>();

}  // namespace clprompt
