#pragma once
// DualPrompt — Complementary Prompting for Rehearsal-free Continual Learning (Wang et al.,
// ECCV'22). A frozen ViT, a shared G-prompt (layers 0-1) and a task-keyed E-prompt pool
// (layers 2-4), both by prefix tuning; the head on [CLS].
//
//   auto model = clprompt::make_dualprompt(vit);
//   clprompt::Learner learner(*model, scenario, clprompt::dualprompt_train_options(), transform, seed);
#include <memory>
#include <string>
#include <string_view>
#include <tuple>

#include <fmt/format.h>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/learn/learner.hpp"
#include "clprompt/methods/method.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/optim/train_options.hpp"
#include "clprompt/model/continual_model.hpp"
#include "clprompt/selector/dualprompt.hpp"

namespace clprompt {

template <class Head = LinearHead>
using DualPromptModelWith = ContinualModel<VisionTransformer, DualPrompt, Head>;
using DualPromptModel = DualPromptModelWith<>;

/// dualprompt-pytorch's CIFAR-100 recipe: Adam, constant lr 0.03 scaled by batch/256
/// (batch 24 -> 0.0028125), 5 epochs per task.
inline TrainOptions dualprompt_train_options() {
  TrainOptions t;
  t.optim.optimizer = OptimizerKind::adam;
  t.batch_size = 24;
  t.optim.lr = 0.03 * 24 / 256.0;
  t.epochs = 5;
  t.schedule.schedule = ScheduleKind::constant;
  return t;
}

template <class Head>
std::shared_ptr<DualPromptModelWith<Head>> make_dualprompt(std::shared_ptr<VisionTransformer> backbone,
                                                           const DualPrompt::Options& selector,
                                                           std::shared_ptr<Head> head) {
  const auto dims = dims_of(*backbone);
  return std::make_shared<DualPromptModelWith<Head>>(std::move(backbone), std::make_shared<DualPrompt>(selector, dims),
                                                     std::move(head));
}
inline std::shared_ptr<DualPromptModel> make_dualprompt(std::shared_ptr<VisionTransformer> backbone,
                                                        DualPrompt::Options selector = {}, LinearHeadOptions head = {}) {
  const auto dims = dims_of(*backbone);
  return make_dualprompt(std::move(backbone), selector, std::make_shared<LinearHead>(head, dims));
}

struct DualPromptMethod {
  static constexpr std::string_view name = "dualprompt";
  static constexpr std::string_view label = "DualPrompt";
  static constexpr std::string_view description =
      "DualPrompt (ECCV'22): G-prompt + task-keyed E-prompts, prefix tuning";
  static constexpr std::string_view default_head = "linear";
  struct Options {
    DualPromptOptions selector;
    static constexpr auto fields() { return std::tuple{field("selector", &Options::selector)}; }
  };
  static TrainOptions recipe() { return dualprompt_train_options(); }
  static constexpr bool lr_scales_with_batch = true;  ///< lr = 0.03 · batch / 256 (dualprompt-pytorch main.py)
  /// Every task needs its own top_k E-prompts (training uses the task's own).
  static void check(const Options& options, const std::string& path, const MethodSetting& setting) {
    const auto needed = setting.num_tasks * options.selector.top_k;
    require_option(options.selector.e_pool_size >= needed, detail::join_path(path, "selector"), "e_pool_size",
                   fmt::format("must be at least num_tasks × top_k = {} × {} = {} (each task trains its own E-prompts), "
                               "got {}",
                               setting.num_tasks, options.selector.top_k, needed, options.selector.e_pool_size));
  }
  template <class Head>
  static auto make(const Options& options, std::shared_ptr<Head> head, const MethodContext& ctx) {
    return make_dualprompt(ctx.backbone, options.selector, std::move(head));
  }
};

extern template class ContinualModel<VisionTransformer, DualPrompt, LinearHead>;
extern template class Learner<DualPromptModel>;
extern template void MethodRegistry::add<DualPromptMethod>();

}  // namespace clprompt
