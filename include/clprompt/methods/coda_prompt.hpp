#pragma once
// CODA-Prompt — COntinual Decomposed Attention-based Prompting (Smith et al., CVPR'23).
// A frozen ViT; per layer 0-4, a prompt assembled as the attention-weighted sum of learned
// components (100 in total, 10 new per task, length 8), end-to-end trainable, injected by
// prefix tuning; the head on [CLS].
//
//   auto model = clprompt::make_coda_prompt(vit);
//   clprompt::Learner learner(*model, scenario, clprompt::coda_prompt_train_options(), transform, seed);
#include <memory>
#include <string_view>
#include <tuple>
#include <vector>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/learn/learner.hpp"
#include "clprompt/methods/method.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/optim/train_options.hpp"
#include "clprompt/model/continual_model.hpp"
#include "clprompt/selector/attention_decomposed.hpp"

namespace clprompt {

template <class Head = LinearHead>
using CodaPromptModel = ContinualModel<VisionTransformer, AttentionDecomposed, Head>;
using CodaPrompt = CodaPromptModel<>;

/// The CODA-Prompt repository's Split CIFAR-100 recipe (configs/cifar-100_prompt.yaml): Adam,
/// lr 0.001, cosine schedule, batch 128, 20 epochs per task (ImageNet-R: 50).
inline TrainOptions coda_prompt_train_options() {
  TrainOptions t;
  t.optim.optimizer = OptimizerKind::adam;
  t.batch_size = 128;
  t.optim.lr = 1e-3;
  t.epochs = 20;
  t.schedule.schedule = ScheduleKind::cosine;
  return t;
}

template <class Head>
std::shared_ptr<CodaPromptModel<Head>> make_coda_prompt(std::shared_ptr<VisionTransformer> backbone,
                                                        const AttentionDecomposed::Options& selector,
                                                        std::shared_ptr<Head> head) {
  const auto dims = dims_of(*backbone);
  return std::make_shared<CodaPromptModel<Head>>(std::move(backbone),
                                                 std::make_shared<AttentionDecomposed>(selector, dims), std::move(head));
}
inline std::shared_ptr<CodaPrompt> make_coda_prompt(std::shared_ptr<VisionTransformer> backbone,
                                                    AttentionDecomposed::Options selector = {},
                                                    LinearHeadOptions head = {}) {
  const auto dims = dims_of(*backbone);
  return make_coda_prompt(std::move(backbone), selector, std::make_shared<LinearHead>(head, dims));
}

struct CodaPromptMethod {
  static constexpr std::string_view name = "coda-prompt";
  static constexpr std::string_view label = "CODA-Prompt";
  static constexpr std::string_view description =
      "CODA-Prompt (CVPR'23): attention-weighted prompt components, prefix tuning";
  static constexpr std::string_view default_head = "linear";
  struct Options {
    AttentionDecomposedOptions selector;
    static constexpr auto fields() { return std::tuple{field("selector", &Options::selector)}; }
  };
  static TrainOptions recipe() { return coda_prompt_train_options(); }
  static constexpr bool lr_scales_with_batch = false;  ///< CODA-Prompt's lr is not scaled with the batch
  /// The pool is shared out over the scenario's tasks (100 components over 5 tasks = 20 per task).
  static void adapt(Options& options, const MethodSetting& setting) { options.selector.num_tasks = setting.num_tasks; }
  template <class Head>
  static auto make(const Options& options, std::shared_ptr<Head> head, const MethodContext& ctx) {
    return make_coda_prompt(ctx.backbone, options.selector, std::move(head));
  }
  /// CODA-Prompt, and CODA-Prompt with SLCA's classifier alignment.
  static std::vector<ReportedRun> reported_runs() {
    return {{"coda-prompt", "CODA-Prompt", {}}, {"coda-prompt+align", "CODA-Prompt + CA", {"--head", "slca"}}};
  }
};

extern template class ContinualModel<VisionTransformer, AttentionDecomposed, LinearHead>;
extern template class Learner<CodaPrompt>;
extern template void MethodRegistry::add<CodaPromptMethod>();

}  // namespace clprompt
