// Compiled part of include/clprompt/data/data_options.hpp: reading both halves of a dataset.
#include "clprompt/data/data_options.hpp"

#include <filesystem>

#include "clprompt/data/cifar.hpp"
#include "clprompt/data/cifar_python.hpp"
#include "clprompt/data/idx.hpp"

namespace clprompt {

namespace {

namespace fs = std::filesystem;

/// torchvision's python pickles when their folder is there (root itself or root/<folder>),
/// else the binary version.
bool has_python_version(const std::string& root, const char* folder) {
  std::error_code ec;
  const fs::path r(root);
  return fs::is_directory(r / folder, ec) || (r.filename() == folder && fs::is_directory(r, ec)) ||
         fs::exists(r / "meta", ec) || fs::exists(r / "batches.meta", ec);
}

}  // namespace

std::pair<std::shared_ptr<const Dataset>, std::shared_ptr<const Dataset>> load_datasets(const DataOptions& data) {
  data.validate("data");
  using Pair = std::pair<std::shared_ptr<const Dataset>, std::shared_ptr<const Dataset>>;
  auto both = [](auto&& load) { return Pair{load(Split::train), load(Split::test)}; };
  auto tensors = [](TensorDataset d) { return std::make_shared<TensorDataset>(std::move(d)); };
  if (data.dataset == "fashion-mnist") return both([&](Split s) { return tensors(load_fashion_mnist(data.root, s)); });
  if (data.dataset == "mnist") return both([&](Split s) { return tensors(load_mnist(data.root, s)); });
  if (data.dataset == "cifar100") {
    const bool python = has_python_version(data.root, "cifar-100-python");
    return both([&](Split s) {
      return tensors(python ? load_cifar100_python(data.root, s) : load_cifar100(data.root, s));
    });
  }
  if (data.dataset == "cifar10") {
    const bool python = has_python_version(data.root, "cifar-10-batches-py");
    return both([&](Split s) { return tensors(python ? load_cifar10_python(data.root, s) : load_cifar10(data.root, s)); });
  }
  if (data.dataset == "imagenet-r")
    return both([&](Split s) { return std::make_shared<ImageNetRDataset>(data.root, s, data.imagenet_r); });
  return Pair{std::make_shared<ImageFolderDataset>((fs::path(data.root) / data.train_folder).string(), data.image_folder),
              std::make_shared<ImageFolderDataset>((fs::path(data.root) / data.test_folder).string(), data.image_folder)};
}

}  // namespace clprompt
