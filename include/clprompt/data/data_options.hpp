#pragma once
// DataOptions: where a run's images come from, and load_datasets(), which reads both halves.
//
//   dataset         root
//   fashion-mnist   IDX files (gzip or raw), e.g. Debian's /usr/share/datasets/fashion-mnist
//   mnist           IDX files
//   cifar100        torchvision's download (root/cifar-100-python/{train,test,meta}: Python
//                   pickles) or the binary version (train.bin, test.bin); whichever is there
//   cifar10         likewise (cifar-10-batches-py/ or data_batch_*.bin)
//   imagenet-r      imagenet-r/<wnid>/*.jpg as distributed, split by imagenet_r.split
//                   (random_split as l2p/dualprompt-pytorch, split_lists as CODA-Prompt and
//                   mammoth, split_folders for already-split copies)
//   image-folder    root/<train_folder>/<class>/* and root/<test_folder>/<class>/* (CUB-200,
//                   Cars-196 as SLCA's split scripts write them)
#include <algorithm>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "clprompt/core/options.hpp"
#include "clprompt/data/dataset.hpp"
#include "clprompt/data/image_folder.hpp"
#include "clprompt/data/imagenet_r.hpp"

namespace clprompt {

struct DataOptions {
  std::string dataset = "fashion-mnist";  ///< see the file comment
  std::string root = "/usr/share/datasets/fashion-mnist";
  ImageFolderOptions image_folder;  ///< image-folder only
  std::string train_folder = "train";  ///< image-folder: the training half under root
  std::string test_folder = "test";    ///< image-folder: the test half under root ("val" for SLCA's splits)
  ImageNetROptions imagenet_r;      ///< imagenet-r only

  static constexpr auto fields() {
    return std::tuple{field("dataset", &DataOptions::dataset), field("root", &DataOptions::root),
                      field("image_folder", &DataOptions::image_folder),
                      field("train_folder", &DataOptions::train_folder), field("test_folder", &DataOptions::test_folder),
                      field("imagenet_r", &DataOptions::imagenet_r)};
  }
  static const std::vector<std::string>& known_datasets() {
    static const std::vector<std::string> known{"fashion-mnist", "mnist", "cifar100", "cifar10", "imagenet-r",
                                                "image-folder"};
    return known;
  }
  void validate(const std::string& path) const {
    const auto& known = known_datasets();
    require_option(std::find(known.begin(), known.end(), dataset) != known.end(), path, "dataset",
                   fmt::format("unknown dataset '{}'; expected one of: {}", dataset, fmt::join(known, ", ")));
    require_option(!train_folder.empty() && !test_folder.empty(), path, "train_folder",
                   "the image-folder halves need folder names");
  }
};

/// The training and test halves of `data`. Throws FileError naming the path and what was
/// expected when files are missing or malformed.
std::pair<std::shared_ptr<const Dataset>, std::shared_ptr<const Dataset>> load_datasets(const DataOptions& data);

}  // namespace clprompt
