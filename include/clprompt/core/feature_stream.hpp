#pragma once
// FeatureStream: a pass over the current task's training data handed to a policy that needs to
// see the data outside the training loop (a head's class statistics, a selector's prototypes).
#include <functional>

#include <ATen/ATen.h>

namespace clprompt {

/// Receives one batch of (features [B, D], incremental labels [B]).
using FeatureVisitor = std::function<void(const at::Tensor& features, const at::Tensor& labels)>;
/// One pass over the current task's training images without augmentation, through a frozen
/// encoder (no gradient, no task identity), handing each batch's features to the visitor.
/// Calling it again makes another pass.
using FeatureStream = std::function<void(const FeatureVisitor& visit)>;

}  // namespace clprompt
