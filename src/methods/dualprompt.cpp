// Compiled part of include/clprompt/methods/dualprompt.hpp: its model with every head kind and its registration.
#include "clprompt/methods/dualprompt.hpp"

namespace clprompt {

template class ContinualModel<VisionTransformer, DualPrompt, LinearHead>;
template class Learner<DualPromptModel>;
template void MethodRegistry::add<DualPromptMethod>();

}  // namespace clprompt
