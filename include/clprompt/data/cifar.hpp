#pragma once
// CIFAR-10 and CIFAR-100, "binary version" (https://www.cs.toronto.edu/~kriz/cifar.html):
// fixed-size records of label byte(s) followed by 3072 pixel bytes, the R, G and B planes of a
// 32x32 image in row-major order. Images load as uint8 [N, 3, 32, 32].
#include <array>
#include <string>
#include <utility>

#include "clprompt/data/dataset.hpp"

namespace clprompt {

/// CIFAR-100 has 20 coarse (superclass) and 100 fine labels per image.
enum class CifarLabel { coarse, fine };
constexpr auto enum_names(CifarLabel) {
  return std::array{std::pair{CifarLabel::coarse, "coarse"}, std::pair{CifarLabel::fine, "fine"}};
}

/// Reads one CIFAR-100 binary file: records of coarse byte, fine byte, 3072 pixel bytes.
/// Class names are "0", "1", ...; throws FileError for missing, truncated or invalid files.
TensorDataset read_cifar100_binary(const std::string& path, CifarLabel label = CifarLabel::fine);

/// Loads `directory`/{train,test}.bin (or the same inside `directory`/cifar-100-binary, as the
/// archive unpacks), with names from fine_label_names.txt / coarse_label_names.txt when present.
TensorDataset load_cifar100(const std::string& directory, Split split, CifarLabel label = CifarLabel::fine);

/// Reads one CIFAR-10 binary file: records of label byte, 3072 pixel bytes.
TensorDataset read_cifar10_binary(const std::string& path);

/// Loads `directory`/data_batch_{1..5}.bin (train) or test_batch.bin (test), also inside
/// `directory`/cifar-10-batches-bin, with names from batches.meta.txt when present.
TensorDataset load_cifar10(const std::string& directory, Split split);

}  // namespace clprompt
