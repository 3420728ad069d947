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

namespace detail {

/// The bytes of `path`, gunzipped when they start with the gzip magic 1f 8b (then
/// `*was_gzip` is set). Throws FileError naming `path` when it is missing, unreadable or corrupt.
std::vector<uint8_t> read_file_maybe_gzip(const std::string& path, bool* was_gzip = nullptr);

/// The bytes of `path` as stored. Throws FileError when missing or unreadable.
std::vector<uint8_t> read_file_bytes(const std::string& path);

/// Decompresses gzip data (concatenated members allowed); `path` names the source in errors.
std::vector<uint8_t> gunzip(const std::vector<uint8_t>& compressed, const std::string& path);

/// Compresses `bytes` into the gzip format (for writing test fixtures and caches).
std::vector<uint8_t> gzip_compress(const std::vector<uint8_t>& bytes);

}  // namespace detail

}  // namespace clprompt
