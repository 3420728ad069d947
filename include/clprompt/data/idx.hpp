#pragma once
// MNIST and Fashion-MNIST in the IDX format (http://yann.lecun.com/exdb/mnist/): a big-endian
// header (magic 0x00000803 for images, 0x00000801 for labels, then one uint32 per dimension)
// followed by raw uint8 data. Files may be gzip-compressed; that is detected from the magic
// bytes 1f 8b, not from the name.
#include <cstdint>
#include <string>
#include <vector>

#include "clprompt/data/dataset.hpp"

namespace clprompt {

/// Reads an images file (N x H x W) and a labels file (N) into uint8 [N, 1, H, W] images.
/// Throws FileError for missing, truncated, corrupt or inconsistent files.
TensorDataset read_idx(const std::string& images_path, const std::string& labels_path,
                       std::vector<std::string> class_names = {});

/// Loads `directory`/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] with the
/// Fashion-MNIST class names (T-shirt/top, Trouser, ...).
TensorDataset load_fashion_mnist(const std::string& directory, Split split);

/// As load_fashion_mnist, with class names "0" ... "9".
TensorDataset load_mnist(const std::string& directory, Split split);

/// The ten Fashion-MNIST class names, in label order.
std::vector<std::string> fashion_mnist_class_names();

}  // namespace clprompt
