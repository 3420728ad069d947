// Compiled part of include/clprompt/methods/ranpac.hpp: its model and its registration.
#include "clprompt/methods/ranpac.hpp"

namespace clprompt {

template class ContinualModel<VisionTransformer, NoPrompts, RanPACHead<LinearHead>>;
template class Learner<RanPAC>;
template void MethodRegistry::add<RanPACMethod>();

}  // namespace clprompt
