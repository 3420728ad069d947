// Compiled part of include/clprompt/methods/l2p.hpp: its model with every head kind and its registration.
#include "clprompt/methods/l2p.hpp"

namespace clprompt {

template class ContinualModel<VisionTransformer, KeyQueryPool, LinearHead>;
template class Learner<L2P>;
template void MethodRegistry::add<L2PMethod>();

}  // namespace clprompt
