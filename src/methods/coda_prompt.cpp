// Compiled part of include/clprompt/methods/coda_prompt.hpp: its model with every head kind and its registration.
#include "clprompt/methods/coda_prompt.hpp"

namespace clprompt {

template class ContinualModel<VisionTransformer, AttentionDecomposed, LinearHead>;
template class Learner<CodaPrompt>;
template void MethodRegistry::add<CodaPromptMethod>();

}  // namespace clprompt
