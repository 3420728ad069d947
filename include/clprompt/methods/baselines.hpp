#pragma once
// The two baselines every continual-learning table starts from:
//   - FineTune: sequential fine-tuning of the whole ViT and a linear head (the lower bound:
//     it forgets everything but the last task);
//   - LinearProbe: frozen ViT, only the class-incremental linear head is trained.
// Both are the same type; they differ in the backbone's learning role.
#include <memory>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/model/continual_model.hpp"
#include "clprompt/selector/none.hpp"

namespace clprompt {

using FineTune = ContinualModel<VisionTransformer, NoPrompts, LinearHead>;
using LinearProbe = FineTune;

/// A fine-tuning model (backbone trained at the normal lr) or, with `train_backbone` false, a
/// linear probe.
inline std::shared_ptr<FineTune> make_linear_model(std::shared_ptr<VisionTransformer> backbone,
                                                   const LinearHeadOptions& head, bool train_backbone) {
  const auto dims = dims_of(*backbone);
  ParameterRoles roles;
  roles.backbone = train_backbone ? LearningRole::normal : LearningRole::frozen;
  return std::make_shared<FineTune>(std::move(backbone), std::make_shared<NoPrompts>(),
                                    std::make_shared<LinearHead>(head, dims), roles);
}

// Compiled once in the library (src/methods.cpp).
extern template class ContinualModel<VisionTransformer, NoPrompts, LinearHead>;

}  // namespace clprompt
