// Compiled part of include/clprompt/methods/linear_probe.hpp: its model with every head kind and its registration.
#include "clprompt/methods/linear_probe.hpp"

namespace clprompt {

template void MethodRegistry::add<LinearProbeMethod>();

}  // namespace clprompt
