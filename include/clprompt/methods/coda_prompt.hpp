#pragma once
// CODA-Prompt — COntinual Decomposed Attention-based Prompting (Smith et al., CVPR'23).
// A frozen ViT; per layer 0-4, a prompt assembled as the attention-weighted sum of learned
// components (100 in total, 10 new per task, length 8), end-to-end trainable, injected by
// prefix tuning; the head on [CLS].
//
//   auto model = clprompt::make_coda_prompt(vit);
//   clprompt::Learner learner(*model, scenario, clprompt::coda_prompt_train_options(), transform, seed);
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/data/transforms.hpp"
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

/// The CODA-Prompt repository's Split CIFAR-100 recipe (GT-RIPL/CODA-Prompt
/// configs/cifar-100_prompt.yaml:4-11): Adam (0.9, 0.999), lr 0.001 not scaled with the batch,
/// batch 128, 20 epochs per task, its CosineSchedule as learners/default.py:92-95 steps it
/// (ScheduleKind::coda_cosine), the training loader with drop_last (trainer.py:185).
inline TrainOptions coda_prompt_train_options() {
  TrainOptions t;
  t.optim.optimizer = OptimizerKind::adam;
  t.batch_size = 128;
  t.optim.lr = 1e-3;
  t.epochs = 20;
  t.schedule.schedule = ScheduleKind::coda_cosine;
  t.drop_last = true;
  return t;
}

/// The CODA-Prompt repository's input pipeline (dataloaders/utils.py:28-65): RandomResizedCrop(224)
/// (torchvision's default scale (0.08, 1), bilinear) and flip; at test on CIFAR Resize(224) (32 px
/// up to 224), on ImageNet-R Resize(256) + CenterCrop(224); no normalisation (Normalize(0, 1)).
inline TransformOptions coda_repo_transform(bool cifar) {
  TransformOptions t = TransformOptions::scaled_reference(224);
  t.test_resize = cifar ? 224 : 256;
  t.mean = {};
  t.std = {};
  return t;
}

/// What every run of the CODA-Prompt repository shares on `benchmark` (its CODA-P, L2P++ and
/// DualPrompt learners differ only in the prompt module): the recipe above with 20 (CIFAR-100)
/// or 50 (ImageNet-R) epochs, its transforms, ImageNet-R as its split files, one trial (REPEAT=1,
/// seed 0: the natural class order, trainer.py:59-68) and timm 0.4.12's default ViT-B/16.
/// False for a benchmark the repository does not run.
template <class Options>
bool coda_repo_protocol(std::string_view benchmark, Preset<Options>& p) {
  const bool cifar = benchmark == "split-cifar100";
  if (!cifar && benchmark.rfind("split-imagenet-r", 0) != 0) return false;
  p.train = coda_prompt_train_options();
  p.train.epochs = cifar ? 20 : 50;  // configs/cifar-100_prompt.yaml:4-5, imnet-r_prompt*.yaml:4-5
  p.train.eval_batch_size = 128;     // trainer.py:198
  p.transform = coda_repo_transform(cifar);
  if (!cifar) p.data.imagenet_r.split = ImageNetRSplit::split_lists;  // dataloaders/dataloader.py:303-316
  p.trials = {{.seed = 0, .order = ClassOrderRule::natural, .order_seed = 0}};  // experiments/*.sh REPEAT=1
  p.weights = "vit_base_patch16_224.augreg_in21k_ft_in1k";  // models/zoo.py:368-371 with timm==0.4.12
  p.sources = {"GT-RIPL/CODA-Prompt:configs/cifar-100_prompt.yaml:2-11", "configs/imnet-r_prompt*.yaml:2-11",
               "learners/default.py:92-95", "utils/schedulers.py:19-57", "dataloaders/utils.py:28-65",
               "trainer.py:59-68,185,198", "experiments/*.sh:13", "requirements.txt:1"};
  return true;
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
    QueryOptions query;  ///< layer 0: the published separate query pass; >= 1: single pass
    static constexpr auto fields() {
      return std::tuple{field("selector", &Options::selector), field("query", &Options::query)};
    }
  };
  static TrainOptions recipe() { return coda_prompt_train_options(); }
  static constexpr bool lr_scales_with_batch = false;  ///< CODA-Prompt's lr is not scaled with the batch
  /// The pool is shared out over the scenario's tasks (100 components over 5 tasks = 20 per task).
  static void adapt(Options& options, const MethodSetting& setting) { options.selector.num_tasks = setting.num_tasks; }
  /// "<name>-single-pass" when the query is read from the prompted pass (method_options.query.layer).
  static std::string run_name(const Options& options) {
    return options.query.layer > 0 ? std::string(name) + "-single-pass" : std::string(name);
  }
  static void check(const Options& options, const std::string& path, const MethodSetting& setting) {
    const auto query_path = detail::join_path(path, "query");
    options.query.check_depth(setting.dims.depth, query_path);
    options.query.check_prompt_layers(options.selector.layers, query_path, detail::join_path(path, "selector.layers"));
  }
  template <class Head>
  static auto make(const Options& options, std::shared_ptr<Head> head, const MethodContext& ctx) {
    auto model = make_coda_prompt(ctx.backbone, options.selector, std::move(head));
    model->set_query_layer(options.query.layer);
    return model;
  }
  static TransformOptions transform() { return coda_repo_transform(/*cifar=*/true); }
  /// The CODA-Prompt repository's runs (experiments/cifar-100.sh, imagenet-r*.sh): pool 100 of
  /// length 8 at layers 0-4 shared out over the benchmark's tasks, ortho weight 0.
  static bool preset(std::string_view benchmark, Preset<Options>& p) {
    if (!coda_repo_protocol(benchmark, p)) return false;
    p.options.selector.num_tasks = p.scenario.num_tasks;  // prompt_param 100 8 0.0: models/zoo.py:99
    p.options.selector.gram_schmidt = GramSchmidtInit::reference;  // models/zoo.py:51-131
    p.sources.push_back("experiments/cifar-100.sh:27-52 (prompt_param 100 8 0.0)");
    return true;
  }
  /// CODA-Prompt, with SLCA's classifier alignment, and with RanPAC's head (a combination no
  /// paper reports).
  static std::vector<ReportedRun> reported_runs() {
    return {{"coda-prompt", "CODA-Prompt", {}},
            {"coda-prompt+align", "CODA-Prompt + CA", {"--head", "slca"}},
            {"coda-prompt+ranpac", "CODA-Prompt + RanPAC head", {"--head", "ranpac"}}};
  }
};

extern template class ContinualModel<VisionTransformer, AttentionDecomposed, LinearHead>;
extern template class Learner<CodaPrompt>;
extern template void MethodRegistry::add<CodaPromptMethod>();

}  // namespace clprompt
