#pragma once
// RanPACHead<Inner>: RanPAC's classifier (McDonnell et al., "RanPAC: Random Projections and
// Pre-trained Models for Continual Learning", NeurIPS'23; RanPAC/RanPAC RanPAC.py) around any
// ClassifierHead. After each task (the Learner's consolidate hook) the task's training features
// f [N, D] (no augmentation, the model in eval mode) are projected by a fixed Gaussian matrix and
// rectified, h = ReLU(f W_rand) with W_rand ~ N(0, 1) [D, M] (`setup_RP`), G = Σ hhᵀ and C = Σ hyᵀ
// are accumulated in double over all tasks, λ is chosen on the task's features and the classifier
// W = ((G + λI)⁻¹ C)ᵀ is solved in closed form (stats/ridge_regression.hpp). At evaluation the
// logits are h Wᵀ over every seen class.
//
// In training the wrapped head's logits and loss are used unchanged: a method that trains
// anything (prompts, RanPAC's first-task adaptation) trains it with the wrapped head, whose own
// classifier RanPAC never evaluates — as the reference trains its PETL module with a linear
// head and then replaces the head by the projection (`replace_fc`).
//
// Differences from the reference: G and C in double (the reference accumulates in float32), and
// the task's feature rows shuffled with this head's seeded generator before λ's 80/20 split (the
// reference's loader shuffles them, RanPAC.py:164).
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "clprompt/backbone/concepts.hpp"
#include "clprompt/core/error.hpp"
#include "clprompt/core/nvtx.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/head/concepts.hpp"
#include "clprompt/head/decorator.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/stats/ridge_regression.hpp"

namespace clprompt {

struct RanPACOptions {
  int64_t projection_dim = 10000;  ///< M (args/*_publish.csv column M: 10000); 0 = no projection, h = f
  int64_t seed = 1993;             ///< of W_rand and of the rows' shuffle before λ's split
  RidgeOptions ridge;

  static constexpr auto fields() {
    return std::tuple{field("projection_dim", &RanPACOptions::projection_dim), field("seed", &RanPACOptions::seed),
                      field("ridge", &RanPACOptions::ridge)};
  }
  void validate(const std::string& path) const {
    require_option(projection_dim >= 0, path, "projection_dim", fmt::format("must be >= 0, got {}", projection_dim));
    require_option(seed >= 0, path, "seed", "must be >= 0");
    ridge.validate(detail::join_path(path, "ridge"));
  }
};

template <class Inner>
class RanPACHead : public HeadDecorator<Inner> {
 public:
  using Options = RanPACOptions;

  /// Throws ConfigError naming the field (relative to the options) for invalid options.
  RanPACHead(const Options& options, std::shared_ptr<Inner> inner, const BackboneDims& dims)
      : HeadDecorator<Inner>(std::move(inner)), options_(options) {
    options_.validate("");
    const int64_t m = options_.projection_dim > 0 ? options_.projection_dim : dims.dim;
    auto generator = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(options_.seed));
    if (options_.projection_dim > 0)
      projection_ = this->register_buffer("projection", at::normal(0.0, 1.0, {dims.dim, m}, generator));
    ridge_ = this->register_module("ridge", std::make_shared<RidgeRegression>(m));
    shuffle_state_ = this->register_buffer("shuffle_state", generator.get_state());
    lambda_ = this->register_buffer("lambda", at::zeros({}, at::kDouble));
  }

  void begin_task(const TaskContext& ctx) {
    this->inner().begin_task(ctx);
    ridge_->grow(ctx.task_class_ends);
    while (static_cast<int64_t>(weights_.size()) <= ctx.task) {
      const auto t = static_cast<int64_t>(weights_.size());
      const int64_t classes = ctx.task_class_ends.at(static_cast<std::size_t>(t)) - ctx.class_begin_of(t);
      weights_.push_back(this->register_buffer(fmt::format("weight_{}", t),
                                               at::zeros({classes, ridge_->dim()}, ridge_->gram().options().dtype(at::kFloat))));
    }
  }

  /// In training, the wrapped head's; at evaluation, h Wᵀ over the classes seen (the wrapped head's
  /// until the first task is consolidated).
  at::Tensor logits(const at::Tensor& features, const TaskContext& ctx) {
    if (ctx.training || solved_tasks() <= ctx.task) return this->inner().logits(features, ctx);
    std::vector<at::Tensor> blocks(weights_.begin(), weights_.begin() + ctx.task + 1);
    const auto w = blocks.size() == 1 ? blocks.front() : at::cat(blocks, 0);
    return at::matmul(project(features), w.to(features.scalar_type()).t());
  }

  /// Projects the task's features, accumulates G and C, chooses λ on them and solves.
  void consolidate(const TaskContext& ctx, const FeatureStream& features) {
    NvtxRange range("RanPAC ridge regression");
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> hs, ys;
    features([&](const at::Tensor& f, const at::Tensor& y) {
      hs.push_back(project(f.to(at::kFloat)));
      ys.push_back(y);
    });
    this->forward_consolidate(ctx, features);
    if (hs.empty()) throw Error(fmt::format("RanPACHead: task {} has no training features to fit", ctx.task));
    const auto h = at::cat(hs, 0), labels = at::cat(ys, 0).to(at::kLong);
    ridge_->accumulate(h, labels);
    // λ on the task's rows in a seeded random order (the reference's shuffled loader).
    auto generator = at::make_generator<at::CPUGeneratorImpl>();
    generator.set_state(shuffle_state_.cpu());
    const auto order = at::randperm(h.size(0), generator, at::TensorOptions(at::kLong)).to(h.device());
    shuffle_state_.copy_(generator.get_state());
    const auto onehot = RidgeRegression::one_hot(labels.index_select(0, order.to(labels.device())), ctx.classes_seen());
    last_selection_ = select_ridge_lambda(h.index_select(0, order), onehot, options_.ridge);
    lambda_.fill_(last_selection_.lambda);
    const auto w = ridge_->solve(last_selection_.lambda);
    int64_t begin = 0;
    for (auto& block : weights_) {
      block.copy_(w.narrow(0, begin, block.size(0)));
      begin += block.size(0);
    }
    solved_tasks_ = ctx.task + 1;
  }

  /// h = ReLU(f W_rand) [B, M] (f itself with projection_dim 0), in f's type.
  at::Tensor project(const at::Tensor& features) const {
    if (!projection_.defined()) return features;
    return at::relu(at::matmul(features, projection_.to(features.scalar_type())));
  }

  const Options& options() const { return options_; }
  RidgeRegression& ridge() { return *ridge_; }
  /// λ of the last solve (0 before the first).
  double lambda() const { return lambda_.item<double>(); }
  /// The λ search of the last task (empty before the first).
  const RidgeSelection& last_selection() const { return last_selection_; }

 private:
  /// Tasks whose classifier is solved: after a checkpoint load, those with a non-zero λ.
  int64_t solved_tasks() const {
    if (solved_tasks_ == 0 && lambda_.item<double>() > 0) return static_cast<int64_t>(weights_.size());
    return solved_tasks_;
  }

  Options options_;
  at::Tensor projection_;
  std::shared_ptr<RidgeRegression> ridge_;
  at::Tensor shuffle_state_;  ///< the shuffle generator's state between tasks (a buffer: checkpoints carry it)
  at::Tensor lambda_;
  std::vector<at::Tensor> weights_;  ///< per task [classes of t, M]: the ridge solution's rows
  RidgeSelection last_selection_;
  int64_t solved_tasks_ = 0;
};

/// RanPACHead over LinearHead as one options object (the head kind "ranpac"): the training head's
/// fields and RanPAC's, flat.
struct RanPACHeadOptions {
  LinearHeadOptions linear;
  RanPACOptions ranpac;

  static constexpr auto fields() {
    return std::tuple{inline_fields(&RanPACHeadOptions::linear), inline_fields(&RanPACHeadOptions::ranpac)};
  }
  void validate(const std::string& path) const { ranpac.validate(path); }
};

inline std::shared_ptr<RanPACHead<LinearHead>> make_ranpac_head(const RanPACHeadOptions& options,
                                                                const BackboneDims& dims) {
  return std::make_shared<RanPACHead<LinearHead>>(options.ranpac, std::make_shared<LinearHead>(options.linear, dims),
                                                  dims);
}

}  // namespace clprompt
