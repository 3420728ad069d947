// Compiled part of include/clprompt/methods/finetune.hpp: its model with every head kind and its registration.
#include "clprompt/methods/finetune.hpp"

namespace clprompt {

template class ContinualModel<VisionTransformer, NoPrompts, LinearHead>;
template class Learner<FineTune>;
template void MethodRegistry::add<FineTuneMethod>();

}  // namespace clprompt
