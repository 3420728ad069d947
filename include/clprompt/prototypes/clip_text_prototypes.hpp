#pragma once
// ClipTextPrototypes: STAR-Prompt's first level (aimagelab/mammoth
// models/star_prompt_utils/first_stage_model.py `Prompter`, end_to_end_model.py
// `train_first_stage_on_task`), a PrototypeSource whose keys are CLIP text features.
//
// Each class c has one learned context token ctx_c ∈ R^{W_text} (CoOp with class-specific
// context of length 1, init N(0, 0.02²)). Its text "X <class name>." is tokenised once; the "X"
// embedding is replaced by ctx_c and CLIP's frozen text encoder gives the prototype
// key_c = normalize(text(ctx_c)). The query of an image is CLIP's frozen image embedding.
//
// prototypes(task t), before the ViT is trained on the task:
//   1. CLIP image features of the task's training images (one pass, no augmentation);
//   2. `epochs` of SGD on the task's contexts only: CE(exp(logit_scale) · ⟨normalize(f), key⟩)
//      over the task's classes (past logits masked) + ortho_weight · mean ⟨ctx_c, ctx_c'⟩² over
//      current c and past c' (zero on the first task);
//   3. generative replay (also on task 0): a per-class model of the image features is stored
//      (a 5-component mixture of diagonal Gaussians, as the reference); for `replay_epochs`,
//      `replay_samples_per_class` samples per seen class are drawn and the current contexts are
//      trained against all seen classes' keys;
//   4. the keys of the task's classes, fixed from then on.
// Earlier prototypes stay exactly as they were: past contexts never receive a gradient (they are
// frozen parameters, each task has a fresh optimiser without weight decay) and the selector
// snapshots each task's keys once. The replay instead calibrates the new classes against them.
//
// Deviations from the reference, documented in docs/methods.md: CLIP runs in fp32 (the reference
// casts it to fp16 for level 1); the image features of step 1 are computed once per task instead
// of once per epoch (no augmentation: identical); the mixture's E-step (head/gaussian_mixture.hpp).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/nn/module.h>

#include "clprompt/clip/clip_model.hpp"
#include "clprompt/core/error.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/core/seed.hpp"
#include "clprompt/optim/optimizer_options.hpp"
#include "clprompt/optim/trainer.hpp"
#include "clprompt/stats/class_statistics.hpp"
#include "clprompt/prototypes/prototype_source.hpp"
#include "clprompt/clip/clip_tokenizer.hpp"

namespace clprompt {

struct ClipPrototypeOptions {
  static ClassStatisticsOptions default_replay_statistics() {
    ClassStatisticsOptions s;
    s.covariance = CovarianceKind::mixture;
    s.mixture.components = 5;
    s.mixture.iterations = 200;
    return s;
  }

  static OptimizerOptions level1_optimizer() {
    OptimizerOptions o;
    o.optimizer = OptimizerKind::sgd;
    o.lr = 0.002;       // first_stage_lr
    o.momentum = 0.0;   // first_stage_momentum
    o.weight_decay = 0.0;  // first_stage_weight_decay
    return o;
  }

  int64_t epochs = 20;         ///< first_stage_epochs (reference: = n_epochs unless set)
  OptimizerOptions optim = level1_optimizer();  ///< SGD lr 0.002, no momentum, no weight decay
  int64_t batch_size = 128;
  double ortho_weight = 30.0;  ///< lambda_ortho_first_stage
  bool replay = true;          ///< enable_gr (level-1 generative replay)
  int64_t replay_epochs = 10;  ///< num_epochs_gr_first_stage
  double replay_lr = 0.05;     ///< learning_rate_gr_first_stage
  int64_t replay_samples_per_class = 256;  ///< num_samples_gr
  int64_t replay_batch_size = 128;         ///< batch_size_gr
  int64_t seed = 1993;         ///< shuffling and replay sampling
  /// The replay's class model: gr_model mog, 5 components, gr_mog_n_iters_first_stage 200
  /// (`covariance = diagonal` is the reference's `--gr_model gaussian`).
  ClassStatisticsOptions replay_statistics = default_replay_statistics();
  /// The normalisation of the images the learner feeds (TransformOptions mean/std), undone
  /// before CLIP's own is applied; empty = images are in [0, 1]. Set from the transform by the
  /// experiment runner, hence not a configuration field.
  std::vector<double> input_mean{0.485, 0.456, 0.406};
  std::vector<double> input_std{0.229, 0.224, 0.225};

  static constexpr auto fields() {
    using O = ClipPrototypeOptions;
    return std::tuple{field("epochs", &O::epochs), inline_fields(&O::optim), field("batch_size", &O::batch_size),
                      field("ortho_weight", &O::ortho_weight), field("replay", &O::replay),
                      field("replay_epochs", &O::replay_epochs), field("replay_lr", &O::replay_lr),
                      field("replay_samples_per_class", &O::replay_samples_per_class),
                      field("replay_batch_size", &O::replay_batch_size), field("seed", &O::seed),
                      field("replay_statistics", &O::replay_statistics)};
  }
  void validate(const std::string& path) const {
    require_option(epochs >= 0, path, "epochs", fmt::format("must be >= 0, got {}", epochs));
    optim.validate(path);
    require_option(batch_size > 0, path, "batch_size", "must be positive");
    require_option(ortho_weight >= 0, path, "ortho_weight", "must be >= 0");
    require_option(replay_epochs >= 0, path, "replay_epochs", "must be >= 0");
    require_option(replay_lr > 0, path, "replay_lr", "must be positive");
    require_option(replay_samples_per_class > 0, path, "replay_samples_per_class", "must be positive");
    require_option(replay_batch_size > 0, path, "replay_batch_size", "must be positive");
    require_option(seed >= 0, path, "seed", "must be >= 0");
    replay_statistics.validate(detail::join_path(path, "replay_statistics"));
    require_option(input_mean.size() == input_std.size() && (input_mean.empty() || input_mean.size() == 3), path,
                   "input_std", "input_mean and input_std must both be empty or both have 3 entries");
    for (double s : input_std) require_option(s > 0, path, "input_std", "entries must be positive");
  }
};

class ClipTextPrototypes : public torch::nn::Module {
 public:
  using Options = ClipPrototypeOptions;
  static constexpr QuerySource query_source = QuerySource::own;

  /// `class_names[label]` names the class with incremental label `label` (Scenario::class_names()).
  /// CLIP is frozen and not registered: checkpoints hold the learned contexts, not CLIP's weights.
  ClipTextPrototypes(const Options& options, std::shared_ptr<ClipModel> clip, ClipTokenizer tokenizer,
                     std::vector<std::string> class_names)
      : options_(options), clip_(std::move(clip)), tokenizer_(std::move(tokenizer)), names_(std::move(class_names)) {
    options_.validate("");
    if (!clip_) throw Error("ClipTextPrototypes: no CLIP model was given");
    for (auto& p : clip_->parameters()) p.set_requires_grad(false);
    clip_->eval();
    statistics_ = register_module("statistics", std::make_shared<ClassStatistics>(options_.replay_statistics, key_dim()));
  }

  int64_t key_dim() const { return clip_->embed_dim(); }

  /// CLIP is not a registered submodule (it is not saved), so it follows the model here.
  using torch::nn::Module::to;
  void to(torch::Device device, bool non_blocking = false) override {
    torch::nn::Module::to(device, non_blocking);
    clip_->to(device, non_blocking);
    for (auto& ids : token_ids_) ids = ids.to(device);
  }

  /// CLIP's image embedding [B, embed_dim] (not normalised) of learner-normalised images
  /// [B, 3, H, W]: the input normalisation undone, resized to CLIP's resolution, CLIP-normalised.
  at::Tensor query(const at::Tensor& images) {
    at::NoGradGuard no_grad;
    if (images.dim() != 4 || images.size(1) != 3)
      throw ShapeError(fmt::format("ClipTextPrototypes: images have shape {}, expected [B, 3, H, W]", images.sizes()));
    const auto device = clip_device();
    auto x = images.to(device, at::kFloat);
    if (!options_.input_mean.empty()) x = x * channel(options_.input_std, device) + channel(options_.input_mean, device);
    const int64_t S = clip_->image_size();
    if (x.size(2) != S || x.size(3) != S)
      x = at::upsample_bicubic2d(x, {S, S}, /*align_corners=*/false).clamp(0.0, 1.0);
    x = (x - channel(ClipModel::kMean, device)) / channel(ClipModel::kStd, device);
    return clip_->encode_image(x).to(images.device());
  }

  /// Adds the task's context tokens (frozen outside level-1 training) and replay statistics.
  void begin_task(const TaskContext& ctx) {
    statistics_->begin_task(ctx);
    while (static_cast<int64_t>(contexts_.size()) <= ctx.task) {
      const auto t = static_cast<int64_t>(contexts_.size());
      const int64_t begin = ctx.class_begin_of(t), end = ctx.task_class_ends.at(static_cast<std::size_t>(t));
      if (end > static_cast<int64_t>(names_.size()))
        throw ConfigError("class_names", fmt::format("task {} has classes up to {}, but only {} class names were "
                                                         "given",
                                                         t, end, names_.size()));
      const auto device = clip_device();
      auto context = at::empty({end - begin, clip_->text_width()}, at::TensorOptions(device));
      {
        at::NoGradGuard no_grad;
        context.normal_(0.0, 0.02);
      }
      contexts_.push_back(register_parameter(fmt::format("context_{}", t), context, /*requires_grad=*/false));
      token_ids_.push_back(tokenize_classes(begin, end).to(device));
    }
  }

  /// Level 1 on the task (steps 1-3 above), then the task's keys [C_t, embed_dim].
  at::Tensor prototypes(const TaskContext& ctx, const FeatureStream& queries) {
    std::vector<at::Tensor> fs, ys;
    queries([&](const at::Tensor& f, const at::Tensor& y) {
      fs.push_back(f.detach().to(clip_device(), at::kFloat));
      ys.push_back(y.to(clip_device()) - ctx.class_begin);
    });
    if (fs.empty()) throw Error(fmt::format("ClipTextPrototypes: task {} has no training images", ctx.task));
    const auto features = at::cat(fs), labels = at::cat(ys);
    const auto t = static_cast<std::size_t>(ctx.task);
    auto& context = contexts_.at(t);
    const auto past = past_contexts(ctx);
    at::Tensor past_keys;
    if (past.defined()) {
      at::NoGradGuard no_grad;
      past_keys = text_keys(past, past_ids(ctx));
    }
    auto generator = make_generator(static_cast<uint64_t>(options_.seed), static_cast<uint64_t>(ctx.task));
    at::AutoGradMode grad(true);
    context.set_requires_grad(true);
    last_loss_.clear();
    last_replay_loss_.clear();
    {
      Trainer trainer(fmt::format("STAR-Prompt level-1 training (task {})", ctx.task), {{{context}}}, options_.optim,
                      {}, divergence_hint());
      const auto x = normalized(features);
      for (int64_t epoch = 0; epoch < options_.epochs; ++epoch) {
        trainer.begin_epoch(epoch, options_.epochs, fmt::format("epoch {}", epoch));
        const auto order = at::randperm(x.size(0), generator, at::kLong).to(x.device());
        for_each_slice(x.size(0), options_.batch_size, [&](int64_t begin, int64_t size) {
          const auto idx = order.narrow(0, begin, size);
          const auto keys = text_keys(context, token_ids_.at(t));
          auto loss = at::cross_entropy_loss(logit_scale() * at::matmul(x.index_select(0, idx), keys.t()),
                                             labels.index_select(0, idx));
          if (past.defined() && options_.ortho_weight > 0)
            loss = loss + options_.ortho_weight * at::matmul(context, past.t()).pow(2).mean();
          trainer.step(loss);
        });
        last_loss_.push_back(trainer.epoch_loss());
      }
    }
    if (options_.replay) {
      statistics_->update(features, labels + ctx.class_begin);
      statistics_->fit_mixtures(generator);
      replay(ctx, past_keys, generator);
    }
    context.set_requires_grad(false);
    at::NoGradGuard no_grad;
    return text_keys(context, token_ids_.at(t));
  }

  std::string description() const {
    return fmt::format("CLIP text prototypes (STAR-Prompt level 1: learned per-class context, CLIP embed_dim {})",
                       key_dim());
  }

  /// Normalised text features [C, embed_dim] of context tokens [C, W] in the texts `ids` [C, L].
  at::Tensor text_keys(const at::Tensor& context, const at::Tensor& ids) {
    const auto tokens = clip_->embed_tokens(ids);  // [C, L, W]; position 0 <|startoftext|>, 1 the "X"
    const auto prompted =
        at::cat({tokens.narrow(1, 0, 1), context.unsqueeze(1), tokens.narrow(1, 2, tokens.size(1) - 2)}, 1);
    return normalized(clip_->encode_text_embeddings(prompted, ids));
  }

  /// The context tokens [C_t, W] and token ids [C_t, L] of task t.
  const at::Tensor& context(int64_t t) const { return contexts_.at(static_cast<std::size_t>(t)); }
  const at::Tensor& token_ids(int64_t t) const { return token_ids_.at(static_cast<std::size_t>(t)); }
  ClipModel& clip() { return *clip_; }
  /// The replay's per-class feature statistics (CLIP image features of every seen class).
  ClassStatistics& statistics() { return *statistics_; }
  const Options& options() const { return options_; }
  /// Mean loss per epoch of the last level-1 training and of its replay.
  const std::vector<double>& last_loss() const { return last_loss_; }
  const std::vector<double>& last_replay_loss() const { return last_replay_loss_; }

 private:
  c10::Device clip_device() const {
    for (const auto& p : clip_->parameters()) return p.device();
    return c10::kCPU;
  }
  double logit_scale() const { return clip_->logit_scale_value(); }
  template <class Values>
  static at::Tensor channel(const Values& v, c10::Device device) {
    return at::tensor(std::vector<double>(v.begin(), v.end()), at::TensorOptions(at::kFloat)).to(device).view({1, 3, 1, 1});
  }
  static at::Tensor normalized(const at::Tensor& x) { return x / x.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12); }

  /// "X <name>." per class, cut to CLIP's context (names must fit with the end token).
  at::Tensor tokenize_classes(int64_t begin, int64_t end) const {
    const int64_t L = clip_->options().context_length;
    std::vector<int64_t> flat;
    for (int64_t c = begin; c < end; ++c) {
      const auto& name = names_.at(static_cast<std::size_t>(c));
      auto ids = tokenizer_.tokenize("X " + name + ".");
      const auto eot = std::find(ids.begin(), ids.end(), tokenizer_.end_token());
      if (eot == ids.end() || eot - ids.begin() >= L)
        throw ConfigError("class_names", fmt::format("class name '{}' does not fit CLIP's text context of {} "
                                                         "tokens",
                                                         name, L));
      if (ids.at(1) != tokenizer_.encode("X").at(0))
        throw Error(fmt::format("ClipTextPrototypes: the placeholder 'X' of class '{}' is not one token", name));
      ids.resize(static_cast<std::size_t>(L));
      flat.insert(flat.end(), ids.begin(), ids.end());
    }
    return at::tensor(flat, at::kLong).view({end - begin, L});
  }

  at::Tensor past_contexts(const TaskContext& ctx) const {
    if (ctx.task == 0) return {};
    std::vector<at::Tensor> parts(contexts_.begin(), contexts_.begin() + ctx.task);
    return at::cat(parts).detach();
  }
  at::Tensor past_ids(const TaskContext& ctx) const {
    std::vector<at::Tensor> parts(token_ids_.begin(), token_ids_.begin() + ctx.task);
    return at::cat(parts);
  }

  std::string divergence_hint() const {
    return fmt::format("lower method_options.source.lr ({}) or .replay_lr ({})", options_.optim.lr, options_.replay_lr);
  }

  /// Trains the current contexts on features sampled for every seen class.
  void replay(const TaskContext& ctx, const at::Tensor& past_keys, at::Generator& generator) {
    const auto t = static_cast<std::size_t>(ctx.task);
    auto& context = contexts_.at(t);
    OptimizerOptions plain_sgd;  // the replay's SGD: learning_rate_gr_first_stage, nothing else
    plain_sgd.optimizer = OptimizerKind::sgd;
    plain_sgd.lr = options_.replay_lr;
    plain_sgd.momentum = 0.0;
    Trainer trainer(fmt::format("STAR-Prompt level-1 replay (task {})", ctx.task), {{{context}}}, plain_sgd, {},
                    divergence_hint());
    const int64_t n = options_.replay_samples_per_class, classes = ctx.classes_seen();
    for (int64_t epoch = 0; epoch < options_.replay_epochs; ++epoch) {
      trainer.begin_epoch(epoch, options_.replay_epochs, fmt::format("epoch {}", epoch));
      auto [sampled, sampled_labels] = statistics_->sample_shuffled(classes, n, generator);
      const auto x = normalized(sampled.to(context.device())), labels = sampled_labels.to(context.device());
      for_each_slice(x.size(0), options_.replay_batch_size, [&](int64_t begin, int64_t size) {
        auto keys = text_keys(context, token_ids_.at(t));
        if (past_keys.defined()) keys = at::cat({past_keys, keys});
        trainer.step(at::cross_entropy_loss(logit_scale() * at::matmul(x.narrow(0, begin, size), keys.t()),
                                            labels.narrow(0, begin, size)));
      });
      last_replay_loss_.push_back(trainer.epoch_loss());
    }
  }

  Options options_;
  std::shared_ptr<ClipModel> clip_;
  ClipTokenizer tokenizer_;
  std::vector<std::string> names_;
  std::shared_ptr<ClassStatistics> statistics_;
  std::vector<at::Tensor> contexts_, token_ids_;
  std::vector<double> last_loss_, last_replay_loss_;
};

static_assert(check_prototype_source<ClipTextPrototypes>());

}  // namespace clprompt
