// Compiled part of include/clprompt/methods/star_prompt.hpp: its models (CLIP and fallback
// sources) with every head kind and its registration.
#include "clprompt/methods/star_prompt.hpp"

namespace clprompt {

template class ContinualModel<VisionTransformer, PrototypeKeys<ClipTextPrototypes>, SLCAHead>;
template class ContinualModel<VisionTransformer, PrototypeKeys<ClassMeanPrototypes>, SLCAHead>;
template class Learner<STARPrompt>;
template class Learner<STARPromptFallback>;
template void MethodRegistry::add<STARPromptMethod>();

}  // namespace clprompt
