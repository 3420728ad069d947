#pragma once
// LogitNormalized<Head>: SLCA's logit normalisation around any ClassifierHead
// (GengDavid/SLCA models/slca.py, `_stage2_compact_classifier`, `ca_with_logit_norm` 0.1):
//   for each task block k of the logits (the classes of task k), n_k = ||logits_k||_2 + 1e-7;
//   n = mean_k n_k (one number per sample);  loss = CE(logits / n / tau),  tau = 0.1.
// SLCA applies it only to the classifier-alignment loss (stage 2); stage-1 training and test
// use the raw logits. `Options::in_training` also applies it to the wrapped head's training loss.
// At evaluation the logits are returned raw: n is a positive per-sample scalar, so dividing by
// it would not change any prediction (argmax).
//
//   auto head = std::make_shared<LogitNormalized<LinearHead>>(LogitNormOptions{},
//                   std::make_shared<LinearHead>(LinearHeadOptions{}, dims));
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>

#include "clprompt/core/error.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/head/concepts.hpp"
#include "clprompt/head/decorator.hpp"

namespace clprompt {

struct LogitNormOptions {
  double temperature = 0.1;  ///< tau (SLCA `ca_with_logit_norm`)
  double epsilon = 1e-7;     ///< added to each task block's norm
  bool in_alignment = true;  ///< normalise the classifier-alignment loss (SLCA: yes)
  bool in_training = false;  ///< normalise the per-task training loss too (SLCA: no)
  /// true: n = mean over task blocks of each block's norm (SLCA); false: n = the norm of all
  /// seen logits together (STAR-Prompt, mammoth end_to_end_model.py `align`).
  bool per_task_blocks = true;

  static constexpr auto fields() {
    return std::tuple{field("temperature", &LogitNormOptions::temperature),
                      field("epsilon", &LogitNormOptions::epsilon),
                      field("in_alignment", &LogitNormOptions::in_alignment),
                      field("in_training", &LogitNormOptions::in_training),
                      field("per_task_blocks", &LogitNormOptions::per_task_blocks)};
  }
  void validate(const std::string& path) const {
    require_option(temperature > 0, path, "temperature", fmt::format("must be positive, got {}", temperature));
    require_option(epsilon >= 0, path, "epsilon", fmt::format("must be >= 0, got {}", epsilon));
  }
};

/// logits [B, C] divided by the per-sample mean over task blocks of the blocks' L2 norms (+eps)
/// and by tau. Blocks are the tasks up to ctx.task (ctx.task_class_ends); with
/// per_task_blocks = false the whole row is one block.
inline at::Tensor normalize_logits(const at::Tensor& logits, const TaskContext& ctx, double temperature,
                                   double epsilon = 1e-7, bool per_task_blocks = true) {
  if (logits.dim() != 2 || logits.size(1) != ctx.classes_seen())
    throw ShapeError(fmt::format("normalize_logits expects logits [B, {}], got {}", ctx.classes_seen(), logits.sizes()));
  if (!per_task_blocks) return logits / (logits.norm(2, {1}, /*keepdim=*/true) + epsilon) / temperature;
  std::vector<at::Tensor> norms;
  for (int64_t t = 0; t <= ctx.task; ++t) {
    const int64_t begin = ctx.class_begin_of(t), end = ctx.task_class_ends.at(static_cast<std::size_t>(t));
    norms.push_back(logits.narrow(1, begin, end - begin).norm(2, {1}, /*keepdim=*/true) + epsilon);
  }
  const auto n = at::cat(norms, 1).mean(1, /*keepdim=*/true);
  return logits / n / temperature;
}

template <class Head>
class LogitNormalized : public HeadDecorator<Head> {
 public:
  using Options = LogitNormOptions;

  /// Throws ConfigError naming the field (relative to the options) for invalid options.
  LogitNormalized(const Options& options, std::shared_ptr<Head> inner)
      : HeadDecorator<Head>(std::move(inner)), options_(options) {
    options_.validate("");
  }

  // logits(): the wrapped head's raw logits (also at test time, as SLCA), forwarded by the base.

  /// The wrapped head's training loss, on normalised logits when options.in_training.
  at::Tensor loss(const at::Tensor& logits, const at::Tensor& targets, const TaskContext& ctx) {
    if (ctx.training && options_.in_training)
      return this->inner().loss(normalized(logits, ctx), targets, ctx);
    return this->inner().loss(logits, targets, ctx);
  }

  /// The classifier-alignment loss: cross-entropy over every seen class (no masking), on
  /// normalised logits when options.in_alignment (Aligned<> calls this when present).
  at::Tensor alignment_loss(const at::Tensor& logits, const at::Tensor& targets, const TaskContext& ctx) {
    return at::cross_entropy_loss(options_.in_alignment ? normalized(logits, ctx) : logits, targets);
  }

  const Options& options() const { return options_; }

 private:
  at::Tensor normalized(const at::Tensor& logits, const TaskContext& ctx) const {
    return normalize_logits(logits, ctx, options_.temperature, options_.epsilon, options_.per_task_blocks);
  }

  Options options_;
};

}  // namespace clprompt
