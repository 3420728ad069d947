// Compiled part of include/clprompt/data/idx.hpp: the IDX reader (MNIST, Fashion-MNIST).
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "clprompt/data/idx.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/io/file_bytes.hpp"

namespace fs = std::filesystem;

namespace clprompt {

namespace {

uint32_t read_be32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 |
         static_cast<uint32_t>(p[3]);
}

// Checks an IDX file of unsigned bytes with `ndims` dimensions and returns its dimensions.
std::vector<int64_t> parse_idx_header(const std::vector<uint8_t>& bytes, const std::string& path, uint32_t ndims,
                                      bool gz, const char* items) {
  const char* after = gz ? " after decompression" : "";
  const uint32_t expected_magic = 0x0800u | ndims;
  if (bytes.size() < 4)
    throw FileError(path, fmt::format("truncated: {} bytes{}, shorter than the 4-byte IDX magic number",
                                      bytes.size(), after));
  const uint32_t magic = read_be32(bytes.data());
  if (magic != expected_magic)
    throw FileError(path, fmt::format("wrong magic number 0x{:08x}; expected 0x{:08x} (IDX file of unsigned "
                                      "bytes with {} dimensions, i.e. {})",
                                      magic, expected_magic, ndims, items));
  const size_t header = 4 + 4 * static_cast<size_t>(ndims);
  if (bytes.size() < header)
    throw FileError(path, fmt::format("truncated: {} bytes{}, shorter than the {}-byte IDX header", bytes.size(),
                                      after, header));
  std::vector<int64_t> dims(ndims);
  uint64_t payload = 1;
  bool overflow = false;
  for (uint32_t d = 0; d < ndims; ++d) {
    dims[d] = read_be32(bytes.data() + 4 + 4 * d);
    overflow = overflow || __builtin_mul_overflow(payload, static_cast<uint64_t>(dims[d]), &payload);
  }
  if (overflow)
    throw FileError(path, fmt::format("the header's dimensions {} multiply to more than 2^64 bytes: corrupt header",
                                      fmt::join(dims, " x ")));
  const uint64_t expected = header + payload;
  if (bytes.size() != expected) {
    const std::string shape = ndims == 3 ? fmt::format("{} images of {}x{}", dims[0], dims[1], dims[2])
                                         : fmt::format("{} labels", dims[0]);
    throw FileError(path, fmt::format("{}: header says {} ({} bytes) but the file has {} bytes{}",
                                      bytes.size() < expected ? "truncated" : "size mismatch", shape, expected,
                                      bytes.size(), after));
  }
  return dims;
}

std::string find_idx_file(const std::string& directory, const std::string& prefix, const std::string& kind,
                          const std::string& dataset) {
  // The official names, gzipped or not, and the dotted variant some mirrors use.
  const std::string base = fmt::format("{}-{}-ubyte", prefix, kind);
  std::string dotted = base;
  dotted[prefix.size() + kind.find('-') + 1] = '.';
  for (const std::string& name : {base, base + ".gz", dotted, dotted + ".gz"}) {
    const fs::path p = fs::path(directory) / name;
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  throw FileError((fs::path(directory) / base).string(),
                  fmt::format("not found (nor with .gz); expected the {} IDX files "
                              "{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz] in {}",
                              dataset, directory));
}

TensorDataset load_idx_dataset(const std::string& directory, Split split, const std::string& dataset,
                               std::vector<std::string> class_names) {
  const std::string prefix = split == Split::train ? "train" : "t10k";
  const std::string images = find_idx_file(directory, prefix, "images-idx3", dataset);
  const std::string labels = find_idx_file(directory, prefix, "labels-idx1", dataset);
  TensorDataset raw = read_idx(images, labels, std::move(class_names));
  const auto shape = raw.image_shape();
  return TensorDataset(raw.all_images(), raw.all_labels(), raw.class_names(),
                       fmt::format("{} {} ({} images, {}x{}x{}) from {}", dataset, to_string(split), raw.size(),
                                   shape[1], shape[2], shape[0], directory));
}

}  // namespace

TensorDataset read_idx(const std::string& images_path, const std::string& labels_path,
                       std::vector<std::string> class_names) {
  bool images_gz = false, labels_gz = false;
  const std::vector<uint8_t> image_bytes = detail::read_file_maybe_gzip(images_path, &images_gz);
  const std::vector<int64_t> dims = parse_idx_header(image_bytes, images_path, 3, images_gz, "N x H x W images");
  const std::vector<uint8_t> label_bytes = detail::read_file_maybe_gzip(labels_path, &labels_gz);
  const std::vector<int64_t> ldims = parse_idx_header(label_bytes, labels_path, 1, labels_gz, "N labels");
  if (ldims[0] != dims[0])
    throw FileError(labels_path, fmt::format("has {} labels but {} has {} images", ldims[0], images_path, dims[0]));

  const int64_t n = dims[0];
  if (n == 0) throw FileError(images_path, "has no images (its header says 0): an empty split cannot be trained or tested on");
  at::Tensor images = at::empty({n, 1, dims[1], dims[2]}, at::kByte);
  if (images.numel() > 0) std::memcpy(images.data_ptr<uint8_t>(), image_bytes.data() + 16, images.numel());
  at::Tensor labels = at::empty({n}, at::kLong);
  int64_t* l = labels.data_ptr<int64_t>();
  const int64_t limit = class_names.empty() ? 256 : static_cast<int64_t>(class_names.size());
  for (int64_t i = 0; i < n; ++i) {
    l[i] = label_bytes[static_cast<size_t>(8 + i)];
    if (l[i] >= limit)
      throw FileError(labels_path, fmt::format("label {} at index {} is outside [0, {}) ({} classes)", l[i], i,
                                               limit, limit));
  }
  return TensorDataset(std::move(images), std::move(labels), std::move(class_names),
                       fmt::format("IDX {} ({} images, {}x{}x1)", images_path, n, dims[1], dims[2]));
}

std::vector<std::string> fashion_mnist_class_names() {
  return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
}

TensorDataset load_fashion_mnist(const std::string& directory, Split split) {
  return load_idx_dataset(directory, split, "Fashion-MNIST", fashion_mnist_class_names());
}

TensorDataset load_mnist(const std::string& directory, Split split) {
  return load_idx_dataset(directory, split, "MNIST", detail::numbered_class_names(10));
}


}  // namespace clprompt
