#pragma once
// resolve_config as `clprompt run` calls it, for the configuration fuzz targets.
#include <string>

#include "clprompt/core/error.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/run/experiment.hpp"
#include "fuzz_input.hpp"

namespace clprompt::fuzz {

/// Resolves `overrides` for the method they name (or the default); a configuration that resolves
/// must resolve again, from its own JSON, to itself.
inline void resolve_checked(Json overrides) {
  static const MethodRegistry registry = builtin_methods();
  // "pretrained" names a weights file that resolve_config reads the header of: a fuzzed name
  // would read arbitrary files of this machine (a FIFO would block). The safetensors header
  // reader has its own target.
  if (overrides.is_object()) overrides.erase("pretrained");
  RunConfig config;
  try {
    config = resolve_config(registry, "", overrides);
  } catch (const Error&) {
    return;  // An invalid configuration ends in a documented error: the expected outcome.
  }
  Json written = write_options(config);
  written.erase("pretrained");
  try {
    if (write_options(resolve_config(registry, "", written)) != write_options(config))
      finding("a resolved configuration resolves to something else from its own JSON");
  } catch (const Error& e) {
    finding(std::string("a resolved configuration is refused from its own JSON: ") + e.what());
  }
}

}  // namespace clprompt::fuzz
