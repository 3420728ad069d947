// libFuzzer target: a configuration file as `clprompt run --config` reads it: bounded JSON
// (core/json_parse.hpp), strict options (core/options.hpp, RunConfig) and the merge patch over a
// method's defaults (run/experiment.hpp resolve_config, over every built-in method). A resolved
// configuration must write and read back unchanged.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "clprompt/core/error.hpp"
#include "clprompt/core/json_parse.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/run/experiment.hpp"
#include "clprompt/run/run_config.hpp"
#include "fuzz_input.hpp"
#include "resolve_checked.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) { return clprompt::fuzz::single_threaded(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  clprompt::Json config;
  try {
    config = clprompt::parse_json<clprompt::Json>(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const clprompt::Error&) {
    return 0;  // Not JSON, or over a bound: the expected outcome.
  }
  try {
    const auto options = clprompt::options_from_json<clprompt::RunConfig>(config);
    const auto written = clprompt::write_options(options);
    if (clprompt::write_options(clprompt::options_from_json<clprompt::RunConfig>(written)) != written)
      clprompt::fuzz::finding("RunConfig changed in a write/read round trip");
  } catch (const clprompt::Error&) {
  }
  clprompt::fuzz::resolve_checked(config);
  return 0;
}
