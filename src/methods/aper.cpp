// Compiled part of include/clprompt/methods/aper.hpp: its model and its registration.
#include "clprompt/methods/aper.hpp"

namespace clprompt {

template class ContinualModel<APERBackbone, NoPrompts, PrototypeHead<LinearHead>>;
template class Learner<APER>;
template void MethodRegistry::add<APERMethod>();

}  // namespace clprompt
