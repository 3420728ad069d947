// libFuzzer target: the CLIP weights loader (clip/clip_loader.hpp) on a safetensors file of either
// naming: naming detection, Hugging Face -> OpenAI conversion, sizes inferred from the shapes, the
// model built with them and the strict load.
#include <cstddef>
#include <cstdint>

#include "clprompt/clip/clip_loader.hpp"
#include "clprompt/core/error.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) { return clprompt::fuzz::single_threaded(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const auto path = clprompt::fuzz::scratch().write("model.safetensors", data, size);
  try {
    (void)clprompt::load_clip_model(path);
  } catch (const clprompt::Error&) {
    // Bad input ends in a documented error: the expected outcome.
  }
  return 0;
}
