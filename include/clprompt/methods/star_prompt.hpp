#pragma once
// STAR-Prompt — Semantic Residual Prompts (Menabue et al., ECCV'24; aimagelab/mammoth
// models/starprompt.py and models/star_prompt_utils/). Two levels, both run for every task:
//   1. ClipTextPrototypes: per-class learned context tokens for CLIP's frozen text encoder,
//      trained against frozen CLIP image features; their text features are the class prototypes;
//   2. PrototypeKeys: the prototypes are the keys of per-layer, per-class residual prompts,
//      selected with CLIP's image embedding of the input and added to the attention values of
//      the frozen ViT; a linear head trained with past logits masked, then aligned on features
//      sampled from class statistics with logit normalisation (the head of SLCA, with
//      STAR-Prompt's settings).
//
//   auto clip = clprompt::load_clip_directory("clip-vit-base-patch16");   // weights + tokenizer
//   auto model = clprompt::make_star_prompt(vit, clip.model, clip.tokenizer, scenario.class_names());
//   clprompt::Learner learner(*model, scenario, clprompt::star_prompt_train_options(), transform, seed);
//
// Without CLIP weights, STARPromptFallback takes its keys from ClassMeanPrototypes (class means
// of the frozen ViT): the same second level, but not STAR-Prompt's prototypes.
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include "clprompt/clip/clip_model.hpp"
#include "clprompt/backbone/vit.hpp"
#include "clprompt/clip/clip_loader.hpp"
#include "clprompt/data/transforms.hpp"
#include "clprompt/head/slca_head.hpp"
#include "clprompt/learn/learner.hpp"
#include "clprompt/methods/method.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/optim/train_options.hpp"
#include "clprompt/model/continual_model.hpp"
#include "clprompt/prototypes/class_mean_prototypes.hpp"
#include "clprompt/prototypes/clip_text_prototypes.hpp"
#include "clprompt/selector/prototype_keys.hpp"

namespace clprompt {

template <class Head = SLCAHead>
using STARPromptModel = ContinualModel<VisionTransformer, PrototypeKeys<ClipTextPrototypes>, Head>;
template <class Head = SLCAHead>
using STARPromptFallbackModel = ContinualModel<VisionTransformer, PrototypeKeys<ClassMeanPrototypes>, Head>;
using STARPrompt = STARPromptModel<>;
using STARPromptFallback = STARPromptFallbackModel<>;

/// STAR-Prompt's second-level classifier (mammoth end_to_end_model.py, starprompt.py): CE with
/// past logits masked while training; after each task (t ≥ 1) alignment for 10 + 5 t epochs with
/// SGD lr 0.001 (no momentum, no weight decay, no schedule) on 256 sampled features per seen
/// class in batches of 128, logits divided by 0.1 · ‖logits‖ over all seen classes; the next
/// task trains from the un-aligned head. Class statistics: a 5-component mixture of diagonal
/// Gaussians per class (gr_model mog), means not shrunk.
inline SLCAHeadOptions star_prompt_head_options() {
  SLCAHeadOptions h;
  h.mask_other_tasks = true;
  h.logit_norm.temperature = 0.1;
  h.logit_norm.per_task_blocks = false;
  h.alignment.epochs = 10;
  h.alignment.epochs_per_task = 5;
  h.alignment.schedule.schedule = ScheduleKind::constant;
  h.alignment.optim.lr = 0.001;
  h.alignment.optim.momentum = 0.0;
  h.alignment.optim.weight_decay = 0.0;
  h.alignment.samples_per_class = 256;
  h.alignment.batch_size = 128;
  h.alignment.mean_shrink = 0.0;
  h.alignment.restore_after_task = true;
  h.alignment.statistics.covariance = CovarianceKind::mixture;
  h.alignment.statistics.mixture.components = 5;
  h.alignment.statistics.mixture.iterations = 500;  // gr_mog_n_iters_second_stage
  return h;
}

/// The second level's recipe (starprompt.py set_defaults, seq-cifar100-224): Adam lr 0.001,
/// batch 128, 20 epochs, mammoth's CosineSchedule per epoch, fresh optimiser per task.
inline TrainOptions star_prompt_train_options() {
  TrainOptions t;
  t.optim.optimizer = OptimizerKind::adam;
  t.optim.lr = 1e-3;
  t.batch_size = 128;
  t.epochs = 20;
  t.schedule.schedule = ScheduleKind::quarter_cosine;
  t.reset_optimizer_each_task = true;
  return t;
}

/// The generic factories: any head on the prototype-keyed second level.
template <class Head>
std::shared_ptr<STARPromptModel<Head>> make_star_prompt(std::shared_ptr<VisionTransformer> backbone,
                                                        std::shared_ptr<ClipTextPrototypes> source,
                                                        const PrototypeKeysOptions& selector, std::shared_ptr<Head> head) {
  const auto dims = dims_of(*backbone);
  ParameterRoles roles;
  roles.backbone = LearningRole::frozen;
  return std::make_shared<STARPromptModel<Head>>(
      std::move(backbone), std::make_shared<PrototypeKeys<ClipTextPrototypes>>(selector, dims, std::move(source)),
      std::move(head), roles);
}
template <class Head>
std::shared_ptr<STARPromptFallbackModel<Head>> make_star_prompt_fallback(std::shared_ptr<VisionTransformer> backbone,
                                                                         const PrototypeKeysOptions& selector,
                                                                         std::shared_ptr<Head> head) {
  const auto dims = dims_of(*backbone);
  ParameterRoles roles;
  roles.backbone = LearningRole::frozen;
  return std::make_shared<STARPromptFallbackModel<Head>>(
      std::move(backbone),
      std::make_shared<PrototypeKeys<ClassMeanPrototypes>>(selector, dims, std::make_shared<ClassMeanPrototypes>(dims)),
      std::move(head), roles);
}

/// mammoth's seq-cifar100-224 input pipeline (datasets/seq_cifar100_224.py:45-57): RandomResizedCrop(224,
/// bicubic) and flip; at test Resize(224, bicubic) (32 px up to 224); ImageNet statistics.
inline TransformOptions star_prompt_transform() {
  TransformOptions t = TransformOptions::scaled_reference(224);
  t.train_interpolation = Interpolation::bicubic;
  t.test_interpolation = Interpolation::bicubic;
  t.test_resize = 224;
  return t;
}

/// STAR-Prompt with CLIP: `class_names[label]` names each incremental label (Scenario::class_names()).
inline std::shared_ptr<STARPrompt> make_star_prompt(std::shared_ptr<VisionTransformer> backbone,
                                                    std::shared_ptr<ClipModel> clip, ClipTokenizer tokenizer,
                                                    std::vector<std::string> class_names,
                                                    PrototypeKeysOptions selector = {},
                                                    ClipPrototypeOptions source = {},
                                                    const SLCAHeadOptions& head = star_prompt_head_options()) {
  const auto dims = dims_of(*backbone);
  auto prototypes = std::make_shared<ClipTextPrototypes>(source, std::move(clip), std::move(tokenizer),
                                                         std::move(class_names));
  return make_star_prompt(std::move(backbone), std::move(prototypes), selector, make_slca_head(head, dims));
}

/// The second level with class-mean keys of the frozen ViT (no CLIP needed).
inline std::shared_ptr<STARPromptFallback> make_star_prompt_fallback(
    std::shared_ptr<VisionTransformer> backbone, PrototypeKeysOptions selector = {},
    const SLCAHeadOptions& head = star_prompt_head_options()) {
  const auto dims = dims_of(*backbone);
  return make_star_prompt_fallback(std::move(backbone), selector, make_slca_head(head, dims));
}

struct STARPromptMethod {
  static constexpr std::string_view name = "star-prompt";
  static constexpr std::string_view label = "STAR-Prompt";
  static constexpr std::string_view description =
      "STAR-Prompt (ECCV'24): CLIP text prototypes key per-class residual prompts (--clip DIR; without it: "
      "class-mean keys, reported as star-prompt-fallback)";
  static constexpr std::string_view default_head = "slca";
  struct Options {
    PrototypeKeysOptions selector;   ///< the second level
    ClipPrototypeOptions source;     ///< the first level (runs only with `clip`)
    /// A directory with CLIP weights (safetensors, Hugging Face or OpenAI/open_clip names) and its
    /// tokenizer files (`--clip DIR`). Empty: the class-mean fallback source.
    std::string clip;
    static constexpr auto fields() {
      return std::tuple{field("selector", &Options::selector), field("source", &Options::source),
                        field("clip", &Options::clip)};
    }
  };
  static TrainOptions recipe() { return star_prompt_train_options(); }
  static TransformOptions transform() { return star_prompt_transform(); }
  static constexpr bool lr_scales_with_batch = false;
  /// mammoth's best settings per benchmark (docs/how_to_run/starprompt.rst:49-102): three trials
  /// with seeds 1993, 1996, 1997 and mammoth's class permutation; both levels' epochs, λ's and
  /// replay settings per benchmark; ImageNet-R at batch 16 for 5 epochs with mean 0 / std 1 and
  /// CODA-Prompt's split; CUB resized to 300 and cropped; ViT-B/16 augreg2 in21k-ft-in1k.
  static bool preset(std::string_view benchmark, Preset<Options>& p) {
    const bool cifar = benchmark == "split-cifar100", imagenet_r = benchmark == "split-imagenet-r";
    const bool cub = benchmark == "split-cub200", cars = benchmark == "split-cars196";
    if (!cifar && !imagenet_r && !cub && !cars) return false;
    p.trials = {{.seed = 1993, .order = ClassOrderRule::numpy_inverse, .order_seed = 1993},
                {.seed = 1996, .order = ClassOrderRule::numpy_inverse, .order_seed = 1996},
                {.seed = 1997, .order = ClassOrderRule::numpy_inverse, .order_seed = 1997}};
    p.weights = "vit_base_patch16_224.augreg2_in21k_ft_in1k";  // backbone/vit.py:670-703 with timm==0.9.8
    p.sources = {"aimagelab/mammoth:docs/how_to_run/starprompt.rst:24-102", "models/starprompt.py:24-176",
                 "models/star_prompt_utils/end_to_end_model.py:145-292", "datasets/seq_cifar100_224.py:41-57,113-119",
                 "datasets/seq_imagenet_r.py:71-132", "datasets/seq_cub200.py:170-183", "datasets/seq_cars196.py:237-248",
                 "datasets/utils/continual_dataset.py:228-232"};
    auto& o = p.options;
    o.source.epochs = cifar || imagenet_r ? 20 : 50;  // --first_stage_epochs
    p.train.epochs = cifar ? 20 : imagenet_r ? 5 : 50;  // --n_epochs
    o.selector.ortho_weight = cifar ? 2.0 : cub ? 30.0 : 10.0;  // --lambda_ortho_second_stage
    o.source.ortho_weight = cifar ? 10.0 : 30.0;                // --lambda_ortho_first_stage
    if (cub) o.source.replay_epochs = 50;                       // --num_epochs_gr_first_stage
    if (cars) o.source.replay_lr = 0.01;                        // --learning_rate_gr_first_stage
    if (cub || cars) p.head_options = {{"alignment", {{"lr", 0.01}}}};  // --learning_rate_gr_second_stage
    if (imagenet_r) {
      p.train.batch_size = 16;  // starprompt.rst:90-92
      p.data.imagenet_r.split = ImageNetRSplit::split_lists;  // seq_imagenet_r.py:71-78: CODA-Prompt's split files
      p.transform.test_resize = 256;
      p.transform.test_resize_square = true;  // Resize((256, 256)) + CenterCrop(224): seq_imagenet_r.py:128-132
      p.transform.mean = {};                  // mean 0 / std 1: seq_imagenet_r.py:119
      p.transform.std = {};
    } else if (cub) {
      p.transform.train_resize = 300;  // Resize((300, 300)) -> RandomCrop(224) -> flip: seq_cub200.py:174-179
      p.transform.train_crop = TrainCrop::random;
      p.transform.test_resize = 256;
    } else if (cars) {
      // Images stored as Resize(224) + CenterCrop(224), then only flipped (seq_cars196.py:71-74,243-248).
      p.transform.train_crop = TrainCrop::none;
      p.transform.test_resize = 224;
      p.transform.mean = {};
      p.transform.std = {};
    }
    return true;
  }
  static void configure_head(SLCAHeadOptions& head) { head = star_prompt_head_options(); }
  /// Both levels get the same epochs (the reference's first_stage_epochs defaults to n_epochs).
  static void adapt(Options& options, const MethodSetting& setting) { options.source.epochs = setting.train.epochs; }
  /// A CLIP directory that is not there fails now, not after the data is loaded.
  static void check(const Options& options, const std::string&, const MethodSetting&) {
    if (!options.clip.empty()) (void)find_clip_files(options.clip);
  }
  static std::string run_name(const Options& options) {
    return options.clip.empty() ? "star-prompt-fallback" : "star-prompt";
  }
  static std::vector<ReportedRun> reported_runs() {
    return {{"star-prompt-fallback", "STAR-Prompt level 2, class-mean keys (fallback, no CLIP)", {}}};
  }
  /// The model type depends on whether CLIP is given: the continuation gets whichever is built.
  template <class Head, class Continuation>
  static auto with_model(const Options& options, std::shared_ptr<Head> head, const MethodContext& ctx,
                         Continuation&& continuation) {
    if (options.clip.empty()) {
      ctx.note("prototype source: " + ClassMeanPrototypes(ctx.dims).description() +
               "; level 1 (method_options.source) needs --clip and does not run");
      return continuation(make_star_prompt_fallback(ctx.backbone, options.selector, std::move(head)));
    }
    auto clip = load_clip_directory(options.clip);
    auto source_options = options.source;
    source_options.input_mean = ctx.transform.mean;
    source_options.input_std = ctx.transform.std;
    auto source = std::make_shared<ClipTextPrototypes>(source_options, clip.model, clip.tokenizer, ctx.class_names);
    ctx.note(fmt::format("prototype source: {}; CLIP weights {} ({} names)", source->description(), clip.files.weights,
                         clip.naming == ClipNaming::huggingface ? "Hugging Face" : "OpenAI/open_clip"));
    return continuation(make_star_prompt(ctx.backbone, std::move(source), options.selector, std::move(head)));
  }
};

extern template class ContinualModel<VisionTransformer, PrototypeKeys<ClipTextPrototypes>, SLCAHead>;
extern template class ContinualModel<VisionTransformer, PrototypeKeys<ClassMeanPrototypes>, SLCAHead>;
extern template class Learner<STARPrompt>;
extern template class Learner<STARPromptFallback>;
extern template void MethodRegistry::add<STARPromptMethod>();

}  // namespace clprompt
