#pragma once
// ContinualModel<Backbone, Selector, Head>: the composition every method is an alias of.
//
//   using FineTune = clprompt::ContinualModel<clprompt::VisionTransformer, clprompt::NoPrompts, clprompt::LinearHead>;
//   auto vit = std::make_shared<clprompt::VisionTransformer>(vit_options);
//   FineTune model(vit, std::make_shared<clprompt::NoPrompts>(),
//                  std::make_shared<clprompt::LinearHead>(clprompt::LinearHeadOptions{}, clprompt::dims_of(*vit)),
//                  {.backbone = clprompt::LearningRole::normal});
//
// One training step (docs/architecture in the README):
//   q = selector.query(x)            Selector::query_source == own (its own encoder), or
//   q = backbone.query(x)            Selector::query_source == backbone (frozen, no grad), or [B, 0]
//   prompts, aux = selector.select(q, ctx)
//   f = backbone.forward(x, prompts); logits = head.logits(f, ctx)
//   loss = head.loss(logits, y, ctx) + aux
// With a single-pass query (set_query_layer(l), QueryOptions) the backbone runs layers [0, l)
// once, q is read from the tokens entering layer l, and the prompted forward continues from them.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>

#include "clprompt/backbone/concepts.hpp"
#include "clprompt/core/error.hpp"
#include "clprompt/core/nvtx.hpp"
#include "clprompt/core/query_source.hpp"
#include "clprompt/head/concepts.hpp"
#include "clprompt/io/safetensors.hpp"
#include "clprompt/io/state_dict.hpp"
#include "clprompt/optim/parameter_groups.hpp"
#include "clprompt/core/task_context.hpp"
#include "clprompt/selector/concepts.hpp"

namespace clprompt {

/// The result of one forward pass.
struct ModelOutput {
  at::Tensor logits;    ///< [B, classes seen]
  at::Tensor features;  ///< [B, D] backbone features fed to the head
  at::Tensor aux_loss;  ///< the selector's auxiliary loss (undefined if none)
};

template <class B, class S, class H>
class ContinualModel : public torch::nn::Module {
  // Checked first so that a policy's missing member heads the compiler's error output.
  static_assert(check_backbone<B>());
  static_assert(check_prompt_selector<S>());
  static_assert(check_classifier_head<H>());

 public:
  using BackboneType = B;
  using SelectorType = S;
  using HeadType = H;

  ContinualModel(std::shared_ptr<B> backbone, std::shared_ptr<S> selector, std::shared_ptr<H> head,
                 ParameterRoles roles = {})
      : backbone_(register_module("backbone", std::move(backbone))),
        selector_(register_module("selector", std::move(selector))),
        head_(register_module("head", std::move(head))),
        roles_(roles) {
    apply_roles();
  }

  B& backbone() { return *backbone_; }
  S& selector() { return *selector_; }
  H& head() { return *head_; }
  const ParameterRoles& roles() const { return roles_; }
  /// Context of the task being learned or last learned; tasks_learned() == 0 before the first.
  const TaskContext& context() const { return context_; }
  int64_t tasks_started() const { return static_cast<int64_t>(classes_per_task_.size()); }

  /// Enters task ctx.task: grows the head, lets the selector add or re-initialise prompts.
  void begin_task(const TaskContext& ctx) {
    if (ctx.task != tasks_started())
      throw Error(fmt::format("begin_task({}) called after {} tasks; tasks must be learned in order", ctx.task,
                              tasks_started()));
    classes_per_task_.push_back(ctx.task_classes());
    context_ = ctx;
    if constexpr (detail::SelectorHasBeginTask<S>) selector_->begin_task(ctx);
    head_->begin_task(ctx);
    // Parameters created just now live where the rest of the model is, and follow their part's role.
    for (const auto& p : backbone_->parameters()) {
      selector_->to(p.device());
      head_->to(p.device());
      break;
    }
    apply_roles();
  }

  /// Whether the selector wants a pass over the task's training queries before training.
  static constexpr bool selector_prepares = detail::SelectorHasPrepareTask<S>;

  /// Before training the current task: hands the selector a stream of the task's training
  /// queries (the learner provides it, without augmentation) when the selector asks for one.
  void prepare_task(const FeatureStream& queries) {
    if constexpr (selector_prepares) {
      selector_->prepare_task(context_, queries);
      apply_roles();
    }
  }

  /// Whether the head wants a pass over the task's training features after training.
  static constexpr bool head_consolidates = detail::HeadHasConsolidate<H>;

  /// After training the current task: hands the head a stream of the task's training features
  /// (the learner provides it, without augmentation) when the head asks for one.
  void consolidate(const FeatureStream& features) {
    if constexpr (head_consolidates) head_->consolidate(context_, features);
  }

  /// Features [B, D] without gradient and without task identity, as at evaluation.
  at::Tensor extract_features(const at::Tensor& images) {
    at::NoGradGuard no_grad;
    return select_and_forward(images, context_.for_evaluation()).first;
  }

  /// Reads the query of a key-query selector (QuerySource::backbone) from the tokens entering
  /// `layer` of the prompted forward itself instead of a separate pass; 0 restores the separate
  /// pass. ConfigError (field "query.layer") where the selector takes no backbone query, the
  /// backbone cannot split its forward, or the layer does not exist.
  void set_query_layer(int64_t layer) {
    if (layer == 0) {
      query_layer_ = 0;
      return;
    }
    if constexpr (S::query_source != QuerySource::backbone || !detail::BackboneSplitsForward<B>) {
      throw ConfigError("query.layer", "a single-pass query needs a selector whose query comes from the backbone "
                                       "(QuerySource::backbone) and a backbone with tokens_before/query_of/"
                                       "forward_features_from");
    } else {
      QueryOptions{.layer = layer}.check_depth(backbone_->depth(), "query");
      query_layer_ = layer;
    }
  }
  int64_t query_layer() const { return query_layer_; }

  /// Leaves the current task: selectors freeze components, heads may consolidate.
  void end_task() {
    const auto ctx = context_.for_evaluation();
    if constexpr (detail::SelectorHasEndTask<S>) selector_->end_task(ctx);
    if constexpr (detail::HeadHasEndTask<H>) head_->end_task(ctx);
  }

  /// The query for the selector, from where S::query_source says: the selector's own encoder,
  /// the frozen backbone's [B, D] feature, or [B, 0] when it needs none.
  at::Tensor query(const at::Tensor& images) {
    NvtxRange range("query");
    if constexpr (S::query_source == QuerySource::backbone && detail::BackboneSplitsForward<B>) {
      if (query_layer_ > 0) {
        at::NoGradGuard no_grad;
        return backbone_->query_of(backbone_->tokens_before(images, query_layer_));
      }
    }
    if constexpr (S::query_source == QuerySource::own) {
      at::NoGradGuard no_grad;
      return selector_->query(images);
    } else if constexpr (S::query_source == QuerySource::backbone) {
      return backbone_->query(images);
    } else {
      return at::empty({images.size(0), 0}, images.options());
    }
  }

  /// One forward pass under `ctx` (ctx.training selects task-identity-aware behaviour).
  ModelOutput forward(const at::Tensor& images, const TaskContext& ctx) {
    auto [features, aux_loss] = select_and_forward(images, ctx);
    at::Tensor logits;
    {
      NvtxRange range("head");
      logits = head_->logits(features, ctx);
    }
    return {std::move(logits), std::move(features), std::move(aux_loss)};
  }

  /// The training objective: the head's loss plus the selector's auxiliary loss.
  at::Tensor loss(const ModelOutput& output, const at::Tensor& targets, const TaskContext& ctx) {
    NvtxRange range("loss");
    auto loss = head_->loss(output.logits, targets, ctx);
    return output.aux_loss.defined() ? loss + output.aux_loss : loss;
  }

  /// Predicted labels without task identity, over every class seen so far.
  at::Tensor predict(const at::Tensor& images) {
    at::NoGradGuard no_grad;
    return forward(images, context_.for_evaluation()).logits.argmax(1);
  }

  /// Trainable parameters by learning-rate role (see ParameterRoles).
  ParameterGroups parameter_groups() {
    ParameterGroups groups;
    auto add = [&](torch::nn::Module& part, LearningRole role) {
      for (auto& p : part.parameters()) {
        if (role == LearningRole::frozen || !p.requires_grad()) groups.frozen_elements += p.numel();
        else (role == LearningRole::slow ? groups.slow : groups.normal).push_back(p);
      }
    };
    add(*backbone_, roles_.backbone);
    add(*selector_, roles_.selector);
    add(*head_, roles_.head);
    return groups;
  }

  /// Writes every parameter and buffer plus the task history to a safetensors file, atomically.
  void save(const std::string& path, Metadata metadata = {}) const {
    metadata["clprompt.format"] = "clprompt-checkpoint-1";
    metadata["clprompt.classes_per_task"] = Json(classes_per_task_).dump();
    metadata["clprompt.num_tasks"] = std::to_string(context_.num_tasks);
    write_safetensors(path, state_dict(*this), metadata);
  }

  /// Loads a checkpoint written by save() into a freshly constructed model of the same type:
  /// the task history is replayed (begin_task/end_task) so that grown heads and prompt pools
  /// have the checkpoint's shapes, then every tensor is loaded by name. Returns the metadata.
  Metadata load(const std::string& path) {
    auto contents = read_safetensors(path);
    const auto& meta = contents.metadata;
    auto format = meta.find("clprompt.format");
    if (format == meta.end() || format->second != "clprompt-checkpoint-1")
      throw CheckpointError(fmt::format("{}: not a clprompt model checkpoint (metadata 'clprompt.format' is {}); "
                                        "use load_timm_vit for backbone weights",
                                        path, format == meta.end() ? "missing" : "'" + format->second + "'"));
    std::vector<int64_t> classes_per_task;
    int64_t num_tasks = 0;
    try {
      classes_per_task = Json::parse(meta.at("clprompt.classes_per_task")).get<std::vector<int64_t>>();
      num_tasks = std::stoll(meta.at("clprompt.num_tasks"));
    } catch (const std::exception& e) {
      throw CheckpointError(fmt::format("{}: invalid task history in the metadata ({})", path, e.what()));
    }
    if (tasks_started() != 0)
      throw CheckpointError(fmt::format("{}: load() needs a freshly constructed model, this one has started {} tasks",
                                        path, tasks_started()));
    for (int64_t t = 0; t < static_cast<int64_t>(classes_per_task.size()); ++t) {
      begin_task(TaskContext::for_task(t, num_tasks, classes_per_task, /*training=*/true));
      end_task();
    }
    LoadOptions options;
    options.source = path;
    load_state_dict(*this, contents.tensors, options);
    return meta;
  }

 private:
  /// The backbone's features under the selected prompts, and the selector's auxiliary loss.
  std::pair<at::Tensor, at::Tensor> select_and_forward(const at::Tensor& images, const TaskContext& ctx) {
    if constexpr (S::query_source == QuerySource::backbone && detail::BackboneSplitsForward<B>) {
      if (query_layer_ > 0) {
        at::Tensor tokens, q;
        {
          NvtxRange range("backbone before the query");
          tokens = backbone_->tokens_before(images, query_layer_);
        }
        {
          NvtxRange range("query");
          at::NoGradGuard no_grad;
          q = backbone_->query_of(tokens);
        }
        Selection selection;
        {
          NvtxRange range("selection");
          selection = selector_->select(q, ctx);
        }
        NvtxRange range("backbone");
        return {backbone_->forward_features_from(tokens, query_layer_, selection.prompts), std::move(selection.aux_loss)};
      }
    }
    const auto q = query(images);
    Selection selection;
    {
      NvtxRange range("selection");
      selection = selector_->select(q, ctx);
    }
    NvtxRange range("backbone");
    return {backbone_->forward(images, selection.prompts), std::move(selection.aux_loss)};
  }

  void apply_roles() {
    auto set = [](torch::nn::Module& part, LearningRole role) {
      if (role == LearningRole::frozen)
        for (auto& p : part.parameters()) p.set_requires_grad(false);
    };
    set(*backbone_, roles_.backbone);
    set(*selector_, roles_.selector);
    set(*head_, roles_.head);
  }

  std::shared_ptr<B> backbone_;
  std::shared_ptr<S> selector_;
  std::shared_ptr<H> head_;
  ParameterRoles roles_;
  int64_t query_layer_ = 0;
  TaskContext context_;
  std::vector<int64_t> classes_per_task_;
};

}  // namespace clprompt
