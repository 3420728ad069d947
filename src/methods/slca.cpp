// Compiled part of include/clprompt/methods/slca.hpp: its model with every head kind and its registration.
#include "clprompt/methods/slca.hpp"

namespace clprompt {

template class ContinualModel<VisionTransformer, NoPrompts, SLCAHead>;
template class Learner<SLCA>;
template void MethodRegistry::add<SLCAMethod>();

}  // namespace clprompt
