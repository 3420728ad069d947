#pragma once
// Sequential fine-tuning: the whole ViT and a linear head trained task after task, the lower bound
// of every continual-learning table (it forgets everything but the last task). As "FT" of the
// CODA-Prompt paper it trains with plain cross-entropy over all seen classes; with the prompt
// methods' train-time masking (head_options.mask_other_tasks) it becomes "FT++".
//
//   auto model = clprompt::make_finetune(vit);
#include <memory>
#include <string_view>
#include <tuple>
#include <vector>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/learn/learner.hpp"
#include "clprompt/methods/method.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/model/continual_model.hpp"
#include "clprompt/selector/none.hpp"

namespace clprompt {

template <class Head = LinearHead>
using FineTuneModel = ContinualModel<VisionTransformer, NoPrompts, Head>;
using FineTune = FineTuneModel<>;

/// The backbone trained at the normal learning rate, under any head.
template <class Head>
std::shared_ptr<FineTuneModel<Head>> make_finetune(std::shared_ptr<VisionTransformer> backbone,
                                                   std::shared_ptr<Head> head) {
  ParameterRoles roles;
  roles.backbone = LearningRole::normal;
  return std::make_shared<FineTuneModel<Head>>(std::move(backbone), std::make_shared<NoPrompts>(), std::move(head),
                                               roles);
}
inline std::shared_ptr<FineTune> make_finetune(std::shared_ptr<VisionTransformer> backbone,
                                               const LinearHeadOptions& head = {}) {
  const auto dims = dims_of(*backbone);
  return make_finetune(std::move(backbone), std::make_shared<LinearHead>(head, dims));
}

struct FineTuneMethod {
  static constexpr std::string_view name = "finetune";
  static constexpr std::string_view label = "Sequential fine-tuning";
  static constexpr std::string_view description = "sequential fine-tuning of the whole ViT and a linear head (lower bound)";
  static constexpr std::string_view default_head = "linear";
  struct Options {
    static constexpr auto fields() { return std::tuple{}; }
  };
  /// Adam 1e-3 (no published recipe: the lower bound trains like the methods it bounds).
  static TrainOptions recipe() {
    TrainOptions t;
    t.optim.optimizer = OptimizerKind::adam;
    t.optim.lr = 1e-3;
    t.batch_size = 64;
    return t;
  }
  static constexpr bool lr_scales_with_batch = false;
  /// "FT": cross-entropy over all seen classes, no train-time masking.
  static void configure_head(LinearHeadOptions& head) { head.mask_other_tasks = false; }
  template <class Head>
  static auto make(const Options&, std::shared_ptr<Head> head, const MethodContext& ctx) {
    return make_finetune(ctx.backbone, std::move(head));
  }
  /// The table's first rows: joint training (all classes as one task, the upper bound) and FT.
  static std::vector<ReportedRun> reported_runs() {
    return {{"joint", "Joint training (upper bound)", {"--set", "scenario.num_tasks=1"}},
            {"finetune", "Sequential fine-tuning", {}}};
  }
};

extern template class ContinualModel<VisionTransformer, NoPrompts, LinearHead>;
extern template class Learner<FineTune>;
extern template void MethodRegistry::add<FineTuneMethod>();

}  // namespace clprompt
