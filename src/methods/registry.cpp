// Compiled part of include/clprompt/methods/registry.hpp: builtin_methods(), the published methods
// and baselines (and the prompt-free SimpleCIL, APER, RanPAC) in the order `clprompt methods` lists them and the results table reports them.
// Each add<> is compiled in its method's own source.
#include "clprompt/methods/aper.hpp"
#include "clprompt/methods/coda_prompt.hpp"
#include "clprompt/methods/dualprompt.hpp"
#include "clprompt/methods/finetune.hpp"
#include "clprompt/methods/l2p.hpp"
#include "clprompt/methods/linear_probe.hpp"
#include "clprompt/methods/ranpac.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/methods/simplecil.hpp"
#include "clprompt/methods/slca.hpp"
#include "clprompt/methods/star_prompt.hpp"

namespace clprompt {

MethodRegistry builtin_methods() {
  MethodRegistry registry;
  registry.add<FineTuneMethod>();
  registry.add<LinearProbeMethod>();
  registry.add<L2PMethod>();
  registry.add<DualPromptMethod>();
  registry.add<CodaPromptMethod>();
  registry.add<SLCAMethod>();
  registry.add<STARPromptMethod>();
  registry.add<SimpleCILMethod>();
  registry.add<APERMethod>();
  registry.add<RanPACMethod>();
  return registry;
}

}  // namespace clprompt
