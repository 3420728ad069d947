#pragma once
// ClassMeanPrototypes: the PrototypeSource that needs no text encoder. A class's key is the
// L2-normalised mean of the frozen backbone's [CLS] features (the backbone's query) over the
// class's training images, and the query is that same frozen feature. It is what
// `clprompt run --method star-prompt` uses when no CLIP weights are given (`--clip`): a
// nearest-class-mean key in place of STAR-Prompt's CLIP text prototype, so its numbers are not
// STAR-Prompt's and are reported under the name "star-prompt-fallback".
#include <string>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/nn/module.h>

#include "clprompt/backbone/concepts.hpp"
#include "clprompt/core/error.hpp"
#include "clprompt/prototypes/prototype_source.hpp"

namespace clprompt {

class ClassMeanPrototypes : public torch::nn::Module {
 public:
  static constexpr QuerySource query_source = QuerySource::backbone;

  explicit ClassMeanPrototypes(const BackboneDims& dims) : dim_(dims.dim) {}

  int64_t key_dim() const { return dim_; }
  void begin_task(const TaskContext&) {}

  /// Normalised per-class means of the queries; every class of the task must occur.
  at::Tensor prototypes(const TaskContext& ctx, const FeatureStream& queries) {
    at::NoGradGuard no_grad;
    const int64_t classes = ctx.task_classes();
    at::Tensor sums, counts;
    queries([&](const at::Tensor& q, const at::Tensor& labels) {
      if (q.dim() != 2 || q.size(1) != dim_)
        throw ShapeError(fmt::format("ClassMeanPrototypes: queries have shape {}, expected [B, {}]", q.sizes(), dim_));
      if (!sums.defined()) {
        sums = at::zeros({classes, dim_}, q.options().dtype(at::kDouble));
        counts = at::zeros({classes}, q.options().dtype(at::kDouble));
      }
      const auto local = labels - ctx.class_begin;
      if (local.numel() > 0 && (local.min().item<int64_t>() < 0 || local.max().item<int64_t>() >= classes))
        throw ShapeError(fmt::format("ClassMeanPrototypes: labels outside task {}'s classes [{}, {})", ctx.task,
                                     ctx.class_begin, ctx.class_end));
      sums.index_add_(0, local, q.to(at::kDouble));
      counts.index_add_(0, local, at::ones({local.size(0)}, counts.options()));
    });
    if (!sums.defined() || counts.min().item<double>() == 0)
      throw Error(fmt::format("ClassMeanPrototypes: task {} has a class without training images; every class needs "
                              "at least one to have a prototype",
                              ctx.task));
    const auto means = (sums / counts.unsqueeze(1)).to(at::kFloat);
    return means / means.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12);
  }

  std::string description() const {
    return "class means of the frozen backbone's [CLS] features (fallback without CLIP: these are not "
           "STAR-Prompt's CLIP text prototypes)";
  }

 private:
  int64_t dim_;
};

static_assert(check_prototype_source<ClassMeanPrototypes>());

}  // namespace clprompt
