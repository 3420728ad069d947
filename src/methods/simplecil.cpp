// Compiled part of include/clprompt/methods/simplecil.hpp: its model and its registration.
#include "clprompt/methods/simplecil.hpp"

namespace clprompt {

template class ContinualModel<VisionTransformer, NoPrompts, PrototypeHead<LinearHead>>;
template class Learner<SimpleCIL>;
template void MethodRegistry::add<SimpleCILMethod>();

}  // namespace clprompt
