#pragma once
// PretrainedAndAdapted<B>: APER's feature (Zhou et al., IJCV'24; zhoudw-zdw/RevisitingCIL
// models/aper_finetune.py `construct_dual_branch_network`): the concatenation of the frozen
// pre-trained backbone's features and those of a copy adapted on the first task(s),
// [B, 2·D]. A Backbone policy, so that any head (PrototypeHead for APER) sees the concatenation.
//
// In training mode the pre-trained half is zeros and its forward is skipped: a head on the 2·D
// features then trains exactly as on the adapted model's D features (the zero half gets no
// gradient), as APER trains the adapted model alone before building the two branches. In eval
// mode (evaluation and the feature passes after a task) both branches run.
// Prompts go to the adapted branch only; the selector's query is the pre-trained branch's.
#include <memory>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "clprompt/backbone/concepts.hpp"
#include "clprompt/backbone/prompts.hpp"

namespace clprompt {

template <class B>
class PretrainedAndAdapted : public torch::nn::Module {
 public:
  /// `backbone` becomes the adapted branch; the pre-trained branch is a frozen copy of it as it is now
  /// (call after the pre-trained weights are loaded).
  explicit PretrainedAndAdapted(std::shared_ptr<B> backbone) {
    auto copy = std::make_shared<B>(backbone->options());
    {
      at::NoGradGuard no_grad;
      auto source = backbone->named_parameters();
      for (auto& p : copy->named_parameters()) p.value().copy_(source[p.key()]);
      auto source_buffers = backbone->named_buffers();
      for (auto& b : copy->named_buffers()) b.value().copy_(source_buffers[b.key()]);
    }
    for (auto& p : copy->parameters()) p.set_requires_grad(false);
    pretrained_ = register_module("pretrained", std::move(copy));
    adapted_ = register_module("adapted", std::move(backbone));
  }

  int64_t dim() const { return 2 * adapted_->dim(); }
  int64_t depth() const { return adapted_->depth(); }
  int64_t num_heads() const { return adapted_->num_heads(); }

  at::Tensor query(const at::Tensor& images) { return pretrained_->query(images); }

  /// [pre-trained features, adapted features]: [B, 2·D] (the first half zero in training mode).
  at::Tensor forward(const at::Tensor& images, const Prompts& prompts = {}) {
    auto adapted = adapted_->forward(images, prompts);
    if (is_training()) return at::cat({at::zeros_like(adapted), adapted}, 1);
    at::Tensor pretrained;
    {
      at::NoGradGuard no_grad;
      pretrained = pretrained_->forward(images);
    }
    return at::cat({pretrained.to(adapted.scalar_type()), adapted}, 1);
  }

  B& pretrained() { return *pretrained_; }
  B& adapted() { return *adapted_; }

 private:
  std::shared_ptr<B> pretrained_, adapted_;
};

}  // namespace clprompt
