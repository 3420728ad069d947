// libFuzzer target: `--set FIELD=VALUE` (run/experiment.hpp parse_override), then the patch it
// makes resolved over every built-in method's defaults, as `clprompt run --set` does.
#include <cstddef>
#include <cstdint>
#include <string>

#include "clprompt/core/error.hpp"
#include "clprompt/run/experiment.hpp"
#include "fuzz_input.hpp"
#include "resolve_checked.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) { return clprompt::fuzz::single_threaded(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  clprompt::Json patch;
  try {
    patch = clprompt::parse_override(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const clprompt::Error&) {
    return 0;  // Not FIELD=VALUE, or over a bound: the expected outcome.
  }
  if (!patch.is_object() || patch.size() != 1) clprompt::fuzz::finding("parse_override returned no one-field patch");
  clprompt::fuzz::resolve_checked(patch);
  return 0;
}
