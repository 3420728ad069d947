// libFuzzer target: bounded JPEG / PNG / BMP decoding (data/image_decode.hpp). The input is an
// image file's bytes.
#include <cstddef>
#include <cstdint>

#include <ATen/ATen.h>

#include "clprompt/core/error.hpp"
#include "clprompt/data/image_decode.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) { return clprompt::fuzz::single_threaded(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  // A smaller pixel bound than the default 8192 x 8192 x 3 keeps each execution fast; the
  // bound is checked by the same code whatever its value.
  clprompt::ImageDecodeOptions options;
  options.max_values = int64_t{1} << 22;
  try {
    const at::Tensor rgb = clprompt::decode_image_memory(data, size, "fuzz-input", options);
    if (rgb.dim() != 3 || rgb.size(0) != 3 || rgb.scalar_type() != at::kByte || !rgb.is_contiguous() ||
        rgb.size(1) < 1 || rgb.size(2) < 1 || rgb.numel() > options.max_values)
      clprompt::fuzz::finding("decode_image_memory returned a tensor that is not uint8 [3, H, W] within the bound");
    (void)clprompt::fuzz::touch_bytes(rgb.data_ptr(), rgb.nbytes());
  } catch (const clprompt::Error&) {
    // Bad input ends in a documented error: the expected outcome.
  }
  return 0;
}
