// libFuzzer target: the CIFAR-10 and CIFAR-100 binary readers (data/cifar.hpp). The input is one
// binary batch file; it is read as CIFAR-10 and as CIFAR-100 (fine and coarse labels).
#include <cstddef>
#include <cstdint>

#include <ATen/ATen.h>

#include "clprompt/core/error.hpp"
#include "clprompt/data/cifar.hpp"
#include "fuzz_input.hpp"

namespace {

void check(const clprompt::TensorDataset& dataset, int64_t classes) {
  const auto shape = dataset.image_shape();
  if (shape != std::array<int64_t, 3>{3, 32, 32} || dataset.size() < 1 || dataset.num_classes() > classes)
    clprompt::fuzz::finding("a CIFAR reader returned an impossible dataset");
  const auto last = dataset.images({dataset.size() - 1});
  (void)clprompt::fuzz::touch_bytes(last.data_ptr(), last.nbytes());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return clprompt::fuzz::single_threaded(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const auto path = clprompt::fuzz::scratch().write("data_batch.bin", data, size);
  // Each reader separately: an input one format refuses may still be valid in another.
  try {
    check(clprompt::read_cifar10_binary(path), 10);
  } catch (const clprompt::Error&) {
  }
  try {
    check(clprompt::read_cifar100_binary(path, clprompt::CifarLabel::fine), 100);
  } catch (const clprompt::Error&) {
  }
  try {
    check(clprompt::read_cifar100_binary(path, clprompt::CifarLabel::coarse), 20);
  } catch (const clprompt::Error&) {
  }
  return 0;
}
