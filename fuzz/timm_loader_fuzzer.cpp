// libFuzzer target: the timm ViT loader (backbone/timm_loader.hpp) on a safetensors file: the
// geometry read from the header, a VisionTransformer of that geometry, and the load by name with
// positional-embedding resampling (into a model of the file's grid and one of a larger grid).
#include <cstddef>
#include <cstdint>

#include "clprompt/backbone/timm_loader.hpp"
#include "clprompt/backbone/vit.hpp"
#include "clprompt/core/error.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) { return clprompt::fuzz::single_threaded(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const auto path = clprompt::fuzz::scratch().write("vit.safetensors", data, size);
  try {
    // The seeds' geometry as the base: the fields the weights do not give (heads, MLP ratio).
    clprompt::ViTOptions base;
    base.num_heads = 2;
    auto options = clprompt::vit_options_from_weights(path, base);
    options.validate("backbone");
    // clprompt run refuses a ViT beyond the machine's memory before building it
    // (run/experiment.cpp require_sizes_fit); this harness keeps to small ones for speed.
    const int64_t per_block = 12 * options.embed_dim * options.embed_dim;
    if (options.embed_dim > 4096 || options.depth > 64 || options.depth * per_block > (int64_t{1} << 24) ||
        options.image_size > 1024 || options.in_channels > 64)
      return 0;
    clprompt::VisionTransformer same_grid(options);
    (void)clprompt::load_timm_vit(same_grid, path);
    // A model one patch larger on each side: the loader resamples the positional embedding.
    options.image_size += options.patch_size;
    clprompt::VisionTransformer larger_grid(options);
    (void)clprompt::load_timm_vit(larger_grid, path);
  } catch (const clprompt::Error&) {
    // Bad input ends in a documented error: the expected outcome.
  }
  return 0;
}
