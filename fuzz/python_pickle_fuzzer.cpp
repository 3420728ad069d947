// libFuzzer target: the bounded pickle reader (data/python_pickle.hpp) and the CIFAR "python
// version" loaders on top of it (data/cifar_python.hpp). The input is a data file, optionally
// followed by kFileSeparator and a meta file (the class names).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <vector>

#include <ATen/ATen.h>

#include "clprompt/core/error.hpp"
#include "clprompt/data/cifar_python.hpp"
#include "clprompt/data/python_pickle.hpp"
#include "fuzz_input.hpp"

namespace {

// Every accessor on every value reachable from `root`. Containers may be cyclic (a list that
// holds itself), so the walk is iterative and visits a bounded number of values.
void walk(const clprompt::PickleValue& root) {
  using Kind = clprompt::PickleValue::Kind;
  std::vector<clprompt::PickleValue> pending{root};
  for (int visited = 0; !pending.empty() && visited < 4096; ++visited) {
    const clprompt::PickleValue value = pending.back();
    pending.pop_back();
    (void)value.describe();
    (void)value.offset();
    switch (value.kind()) {
      case Kind::boolean:
      case Kind::integer: (void)value.as_int(); break;
      case Kind::bytes:
      case Kind::text: (void)value.as_text(); break;
      case Kind::list:
      case Kind::tuple:
        for (int64_t i = 0; i < value.size() && i < 64; ++i) pending.push_back(value.at(i));
        break;
      case Kind::dict:
        for (const auto& [key, item] : value.items()) {
          pending.push_back(key);
          pending.push_back(item);
          if (key.is_string()) (void)value.find(key.as_bytes());
        }
        break;
      case Kind::ndarray: {
        const auto& array = value.array();
        (void)array.dtype_name();
        if (array.nbytes < 0 || (array.nbytes > 0 && array.data == nullptr))
          clprompt::fuzz::finding("a pickled array with an impossible byte count or no data");
        (void)clprompt::fuzz::touch_bytes(array.data, static_cast<std::size_t>(array.nbytes));
        break;
      }
      default: break;
    }
  }
}

void touch(const clprompt::TensorDataset& dataset) {
  const auto last = dataset.images({dataset.size() - 1});
  (void)clprompt::fuzz::touch_bytes(last.data_ptr(), last.nbytes());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return clprompt::fuzz::single_threaded(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const auto files = clprompt::fuzz::split_files(data, size);
  const std::string& batch = files[0];
  try {
    walk(clprompt::parse_pickle(std::vector<uint8_t>(batch.begin(), batch.end()), "fuzz-input"));
  } catch (const clprompt::Error&) {
    // Bad input ends in a documented error: the expected outcome.
  }
  // The loaders read torchvision's layout: the same data file for every batch, the meta file beside.
  const auto& scratch = clprompt::fuzz::scratch();
  const std::string meta = files.size() > 1 ? files[1] : std::string();
  std::filesystem::create_directories(scratch.path() / "cifar-100-python");
  std::filesystem::create_directories(scratch.path() / "cifar-10-batches-py");
  scratch.write("cifar-100-python/train", batch);
  scratch.write("cifar-100-python/meta", meta);
  for (const char* name : {"data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"})
    scratch.write(std::string("cifar-10-batches-py/") + name, batch);
  scratch.write("cifar-10-batches-py/batches.meta", meta);
  const std::string root = scratch.path().string();
  try {
    touch(clprompt::load_cifar100_python(root, clprompt::Split::train, clprompt::CifarLabel::fine));
  } catch (const clprompt::Error&) {
  }
  try {
    touch(clprompt::load_cifar100_python(root, clprompt::Split::train, clprompt::CifarLabel::coarse));
  } catch (const clprompt::Error&) {
  }
  try {
    touch(clprompt::load_cifar10_python(root, clprompt::Split::train));
  } catch (const clprompt::Error&) {
  }
  return 0;
}
