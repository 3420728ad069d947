// Compiled part of include/clprompt/data/cifar.hpp: the CIFAR-10/100 binary readers.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "clprompt/data/cifar.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/io/file_bytes.hpp"

namespace fs = std::filesystem;

namespace clprompt {

namespace {

constexpr int64_t kCifarPixels = 3 * 32 * 32;

struct CifarRecords {
  std::vector<uint8_t> pixels;
  std::vector<int64_t> labels;
};

// Appends the records of one file: `label_bytes` label bytes (the label used is at
// `label_offset`, and must be below `num_classes`) followed by 3072 pixel bytes.
void append_cifar_file(const std::string& path, int64_t label_bytes, int64_t label_offset, int64_t num_classes,
                       const char* format, CifarRecords& out) {
  const std::vector<uint8_t> bytes = detail::read_file_bytes(path);
  const int64_t record = label_bytes + kCifarPixels;
  const auto size = static_cast<int64_t>(bytes.size());
  if (size == 0) throw FileError(path, fmt::format("is empty; expected {} records of {} bytes", format, record));
  if (size % record != 0)
    throw FileError(path, fmt::format("truncated or not {}: {} bytes is not a whole number of {}-byte records "
                                      "({} records and {} bytes left over)",
                                      format, size, record, size / record, size % record));
  const int64_t n = size / record;
  const size_t first_pixel = out.pixels.size();
  out.pixels.resize(first_pixel + static_cast<size_t>(n * kCifarPixels));
  out.labels.reserve(out.labels.size() + static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* r = bytes.data() + i * record;
    const int64_t label = r[label_offset];
    if (label >= num_classes)
      throw FileError(path, fmt::format("record {} has label {}; expected a label in [0, {}) for {}", i, label,
                                        num_classes, format));
    out.labels.push_back(label);
    std::memcpy(out.pixels.data() + first_pixel + i * kCifarPixels, r + label_bytes, kCifarPixels);
  }
}

TensorDataset to_dataset(CifarRecords&& records, std::vector<std::string> class_names, std::string description) {
  const auto n = static_cast<int64_t>(records.labels.size());
  at::Tensor images = at::empty({n, 3, 32, 32}, at::kByte);
  if (n > 0) std::memcpy(images.data_ptr<uint8_t>(), records.pixels.data(), records.pixels.size());
  at::Tensor labels = at::empty({n}, at::kLong);
  if (n > 0) std::memcpy(labels.data_ptr<int64_t>(), records.labels.data(), sizeof(int64_t) * n);
  return TensorDataset(std::move(images), std::move(labels), std::move(class_names), std::move(description));
}

// Names one per line, blank lines skipped; empty when the file is absent.
std::vector<std::string> read_class_names(const fs::path& path, int64_t expected) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return {};
  std::ifstream in(path);
  if (!in) throw FileError(path.string(), "cannot be opened for reading");
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  if (static_cast<int64_t>(names.size()) != expected)
    throw FileError(path.string(), fmt::format("has {} class names; expected {} (one per line)", names.size(),
                                               expected));
  return names;
}

// `directory`, or its sub-folder as the archive unpacks, whichever holds `probe`.
fs::path cifar_directory(const std::string& directory, const char* probe, const char* archive_folder) {
  std::error_code ec;
  const fs::path nested = fs::path(directory) / archive_folder;
  if (!fs::exists(fs::path(directory) / probe, ec) && fs::exists(nested / probe, ec)) return nested;
  return directory;
}

const char* cifar100_format(CifarLabel label) {
  return label == CifarLabel::fine ? "CIFAR-100 binary (fine labels)" : "CIFAR-100 binary (coarse labels)";
}

}  // namespace

TensorDataset read_cifar100_binary(const std::string& path, CifarLabel label) {
  const int64_t classes = label == CifarLabel::fine ? 100 : 20;
  CifarRecords records;
  append_cifar_file(path, 2, label == CifarLabel::fine ? 1 : 0, classes, cifar100_format(label), records);
  const auto n = records.labels.size();
  return to_dataset(std::move(records), detail::numbered_class_names(classes),
                    fmt::format("CIFAR-100 {} ({} images, 32x32x3, {} labels)", path, n, to_string(label)));
}

TensorDataset load_cifar100(const std::string& directory, Split split, CifarLabel label) {
  const fs::path dir = cifar_directory(directory, "train.bin", "cifar-100-binary");
  const fs::path file = dir / (split == Split::train ? "train.bin" : "test.bin");
  detail::require_data_file(file.string(), "the CIFAR-100 binary version (train.bin, test.bin)");
  const int64_t classes = label == CifarLabel::fine ? 100 : 20;
  CifarRecords records;
  append_cifar_file(file.string(), 2, label == CifarLabel::fine ? 1 : 0, classes, cifar100_format(label), records);
  std::vector<std::string> names =
      read_class_names(dir / (label == CifarLabel::fine ? "fine_label_names.txt" : "coarse_label_names.txt"), classes);
  if (names.empty()) names = detail::numbered_class_names(classes);
  const auto n = records.labels.size();
  return to_dataset(std::move(records), std::move(names),
                    fmt::format("CIFAR-100 {} ({} images, 32x32x3, {} labels) from {}", to_string(split), n,
                                to_string(label), dir.string()));
}

TensorDataset read_cifar10_binary(const std::string& path) {
  CifarRecords records;
  append_cifar_file(path, 1, 0, 10, "CIFAR-10 binary", records);
  const auto n = records.labels.size();
  return to_dataset(std::move(records), detail::numbered_class_names(10),
                    fmt::format("CIFAR-10 {} ({} images, 32x32x3)", path, n));
}

TensorDataset load_cifar10(const std::string& directory, Split split) {
  const fs::path dir = cifar_directory(directory, "test_batch.bin", "cifar-10-batches-bin");
  std::vector<fs::path> files;
  if (split == Split::train)
    for (int b = 1; b <= 5; ++b) files.push_back(dir / fmt::format("data_batch_{}.bin", b));
  else
    files.push_back(dir / "test_batch.bin");
  CifarRecords records;
  for (const fs::path& file : files) {
    detail::require_data_file(file.string(), "the CIFAR-10 binary version (data_batch_1.bin ... data_batch_5.bin, test_batch.bin)");
    append_cifar_file(file.string(), 1, 0, 10, "CIFAR-10 binary", records);
  }
  std::vector<std::string> names = read_class_names(dir / "batches.meta.txt", 10);
  if (names.empty()) names = detail::numbered_class_names(10);
  const auto n = records.labels.size();
  return to_dataset(std::move(records), std::move(names),
                    fmt::format("CIFAR-10 {} ({} images, 32x32x3) from {}", to_string(split), n, dir.string()));
}


}  // namespace clprompt
