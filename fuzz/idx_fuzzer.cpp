// libFuzzer target: the IDX reader (data/idx.hpp), raw or gzip (io/file_bytes.hpp). The input is
// an images file and a labels file separated by kFileSeparator; each may be gzip-compressed.
#include <cstddef>
#include <cstdint>

#include <ATen/ATen.h>

#include "clprompt/core/error.hpp"
#include "clprompt/data/idx.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) { return clprompt::fuzz::single_threaded(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const auto files = clprompt::fuzz::split_files(data, size);
  const auto& scratch = clprompt::fuzz::scratch();
  const auto images = scratch.write("images-idx3-ubyte", files[0]);
  const auto labels = scratch.write("labels-idx1-ubyte", files.size() > 1 ? files[1] : std::string());
  try {
    const auto dataset = clprompt::read_idx(images, labels, clprompt::fashion_mnist_class_names());
    const auto shape = dataset.image_shape();
    if (shape[0] != 1 || dataset.size() < 1) clprompt::fuzz::finding("read_idx returned an impossible dataset");
    for (int64_t i = 0; i < dataset.size(); ++i)
      if (dataset.label(i) < 0 || dataset.label(i) >= 10) clprompt::fuzz::finding("read_idx returned a label outside [0, 10)");
    const auto first = dataset.images({0});
    (void)clprompt::fuzz::touch_bytes(first.data_ptr(), first.nbytes());
  } catch (const clprompt::Error&) {
    // Bad input ends in a documented error: the expected outcome.
  }
  return 0;
}
