// CIFAR-10/100 "python version" readers (include/clprompt/data/cifar_python.hpp).
#include "clprompt/data/cifar_python.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <vector>

#include <ATen/ATen.h>

#include "clprompt/core/error.hpp"

namespace fs = std::filesystem;

namespace clprompt {

namespace {

constexpr int64_t kPixels = 3 * 32 * 32;

struct Part {
  at::Tensor images;  // uint8 [N, 3, 32, 32]
  std::vector<int64_t> labels;
};

std::string keys_of(const PickleValue& dict) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : dict.items()) keys.push_back(k.is_string() ? "'" + k.as_text() + "'" : k.describe());
  return keys.empty() ? "none" : fmt::format("{}", fmt::join(keys, ", "));
}

PickleValue read_dict(const std::string& path, const char* expected, const PickleLimits& limits) {
  const PickleValue root = read_pickle(path, limits);
  if (root.kind() != PickleValue::Kind::dict)
    throw FileError(path, fmt::format("holds {}; expected a pickled dict with {}", root.describe(), expected));
  return root;
}

PickleValue require_key(const PickleValue& dict, const std::string& path, const char* key, const char* expected) {
  std::optional<PickleValue> v = dict.find(key);
  if (!v) throw FileError(path, fmt::format("has no '{}' entry (keys: {}); expected {}", key, keys_of(dict), expected));
  return *v;
}

// 'data' (uint8 [N, 3072] or [N, 3, 32, 32]) and the label list `label_key` with labels below
// `classes`, as torchvision reads them (cifar.py:79-90).
Part read_part(const std::string& path, const char* label_key, int64_t classes, const char* format,
               const PickleLimits& limits) {
  const std::string expected = fmt::format("{} ('data' and '{}')", format, label_key);
  const PickleValue dict = read_dict(path, expected.c_str(), limits);
  const PickleValue data = require_key(dict, path, "data", expected.c_str());
  if (data.kind() != PickleValue::Kind::ndarray)
    throw FileError(path, fmt::format("'data' is {}; expected a uint8 numpy array [N, 3072]", data.describe()));
  const PickleArray& a = data.array();
  const bool flat = a.shape.size() == 2 && a.shape[1] == kPixels;
  const bool chw = a.shape.size() == 4 && a.shape[1] == 3 && a.shape[2] == 32 && a.shape[3] == 32;
  if (a.kind != 'u' || a.itemsize != 1 || !(flat || chw))
    throw FileError(path, fmt::format("'data' is a {} array of shape [{}]; expected uint8 [N, 3072] (N images of "
                                      "3x32x32)",
                                      a.dtype_name(), fmt::join(a.shape, ", ")));
  const int64_t n = a.shape[0];

  const PickleValue labels = require_key(dict, path, label_key, expected.c_str());
  if (labels.kind() != PickleValue::Kind::list && labels.kind() != PickleValue::Kind::tuple)
    throw FileError(path, fmt::format("'{}' is {}; expected a list of {} ints", label_key, labels.describe(), n));
  if (labels.size() != n)
    throw FileError(path, fmt::format("has {} images in 'data' but {} labels in '{}'", n, labels.size(), label_key));
  Part part;
  part.labels.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const PickleValue l = labels.at(i);
    if (l.kind() != PickleValue::Kind::integer)
      throw FileError(path, fmt::format("'{}'[{}] is {}; expected an int", label_key, i, l.describe()));
    const int64_t label = l.as_int();
    if (label < 0 || label >= classes)
      throw FileError(path, fmt::format("'{}'[{}] is {}; expected a label in [0, {}) for {}", label_key, i, label,
                                        classes, format));
    part.labels.push_back(label);
  }

  // The pickle's bytes live as long as `data`; copy them out in C order.
  std::vector<int64_t> shape = a.shape;
  if (!a.fortran_order) {
    part.images = at::empty({n, 3, 32, 32}, at::kByte);
    if (a.nbytes > 0) std::memcpy(part.images.data_ptr<uint8_t>(), a.data, static_cast<size_t>(a.nbytes));
  } else {
    // Fortran order: the bytes are the C-order array of the reversed shape.
    std::vector<int64_t> reversed(shape.rbegin(), shape.rend()), dims(shape.size());
    for (size_t i = 0; i < dims.size(); ++i) dims[i] = static_cast<int64_t>(dims.size() - 1 - i);
    const at::Tensor view = at::from_blob(const_cast<uint8_t*>(a.data), reversed, at::kByte);
    part.images = view.permute(dims).contiguous().reshape({n, 3, 32, 32});
  }
  return part;
}

std::vector<std::string> read_names(const fs::path& path, const char* key, int64_t classes, const char* format,
                                    const PickleLimits& limits) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw FileError(path.string(), fmt::format("not found; expected the {} meta file with '{}' (torchvision "
                                               "needs it as well)",
                                               format, key));
  const std::string expected = fmt::format("'{}'", key);
  const PickleValue dict = read_dict(path.string(), expected.c_str(), limits);
  const PickleValue list = require_key(dict, path.string(), key, fmt::format("a list of {} class names", classes).c_str());
  if (list.kind() != PickleValue::Kind::list && list.kind() != PickleValue::Kind::tuple)
    throw FileError(path.string(), fmt::format("'{}' is {}; expected a list of {} class names", key, list.describe(),
                                               classes));
  if (list.size() != classes)
    throw FileError(path.string(), fmt::format("'{}' has {} names; expected {}", key, list.size(), classes));
  std::vector<std::string> names;
  for (int64_t i = 0; i < classes; ++i) {
    const PickleValue v = list.at(i);
    if (!v.is_string())
      throw FileError(path.string(), fmt::format("'{}'[{}] is {}; expected a string", key, i, v.describe()));
    names.push_back(v.as_text());
  }
  return names;
}

TensorDataset concatenate(std::vector<Part> parts, std::vector<std::string> names, std::string description) {
  std::vector<at::Tensor> images;
  std::vector<int64_t> labels;
  for (Part& p : parts) {
    images.push_back(p.images);
    labels.insert(labels.end(), p.labels.begin(), p.labels.end());
  }
  at::Tensor all = images.size() == 1 ? images.front() : at::cat(images, 0);
  at::Tensor label_tensor = at::empty({static_cast<int64_t>(labels.size())}, at::kLong);
  if (!labels.empty()) std::memcpy(label_tensor.data_ptr<int64_t>(), labels.data(), sizeof(int64_t) * labels.size());
  return TensorDataset(std::move(all), std::move(label_tensor), std::move(names), std::move(description));
}

// `root`/`folder` when that is a directory, else `root` when it holds `probe` (the folder given
// itself), else `root`/`folder` so that the missing-file error names the expected layout.
fs::path python_dir(const std::string& root, const char* folder, const char* probe) {
  std::error_code ec;
  const fs::path nested = fs::path(root) / folder;
  if (fs::is_directory(nested, ec)) return nested;
  if (fs::exists(fs::path(root) / probe, ec)) return fs::path(root);
  return nested;
}

const char* format100(CifarLabel label) {
  return label == CifarLabel::fine ? "CIFAR-100 python (fine labels)" : "CIFAR-100 python (coarse labels)";
}

}  // namespace

TensorDataset read_cifar100_python(const std::string& path, CifarLabel label, const PickleLimits& limits) {
  const int64_t classes = label == CifarLabel::fine ? 100 : 20;
  std::vector<Part> parts;
  parts.push_back(read_part(path, label == CifarLabel::fine ? "fine_labels" : "coarse_labels", classes,
                            format100(label), limits));
  const auto n = parts.front().labels.size();
  return concatenate(std::move(parts), detail::numbered_class_names(classes),
                     fmt::format("CIFAR-100 {} ({} images, 32x32x3, {} labels)", path, n, to_string(label)));
}

TensorDataset load_cifar100_python(const std::string& root, Split split, CifarLabel label, const PickleLimits& limits) {
  const fs::path dir = python_dir(root, "cifar-100-python", "meta");
  const fs::path file = dir / (split == Split::train ? "train" : "test");
  detail::require_data_file(file.string(), "the CIFAR-100 python version (cifar-100-python/train, test, meta, as torchvision downloads it)");
  const int64_t classes = label == CifarLabel::fine ? 100 : 20;
  std::vector<Part> parts;
  parts.push_back(read_part(file.string(), label == CifarLabel::fine ? "fine_labels" : "coarse_labels", classes,
                            format100(label), limits));
  std::vector<std::string> names =
      read_names(dir / "meta", label == CifarLabel::fine ? "fine_label_names" : "coarse_label_names", classes,
                 "CIFAR-100 python", limits);
  const auto n = parts.front().labels.size();
  return concatenate(std::move(parts), std::move(names),
                     fmt::format("CIFAR-100 {} ({} images, 32x32x3, {} labels) from {}", to_string(split), n,
                                 to_string(label), dir.string()));
}

TensorDataset read_cifar10_python(const std::string& path, const PickleLimits& limits) {
  std::vector<Part> parts;
  parts.push_back(read_part(path, "labels", 10, "CIFAR-10 python", limits));
  const auto n = parts.front().labels.size();
  return concatenate(std::move(parts), detail::numbered_class_names(10),
                     fmt::format("CIFAR-10 {} ({} images, 32x32x3)", path, n));
}

TensorDataset load_cifar10_python(const std::string& root, Split split, const PickleLimits& limits) {
  const fs::path dir = python_dir(root, "cifar-10-batches-py", "batches.meta");
  std::vector<fs::path> files;
  if (split == Split::train)
    for (int b = 1; b <= 5; ++b) files.push_back(dir / fmt::format("data_batch_{}", b));
  else
    files.push_back(dir / "test_batch");
  std::vector<Part> parts;
  for (const fs::path& file : files) {
    detail::require_data_file(file.string(), "the CIFAR-10 python version (cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch, "
                       "batches.meta, as torchvision downloads it)");
    parts.push_back(read_part(file.string(), "labels", 10, "CIFAR-10 python", limits));
  }
  std::vector<std::string> names = read_names(dir / "batches.meta", "label_names", 10, "CIFAR-10 python", limits);
  size_t n = 0;
  for (const Part& p : parts) n += p.labels.size();
  return concatenate(std::move(parts), std::move(names),
                     fmt::format("CIFAR-10 {} ({} images, 32x32x3) from {}", to_string(split), n, dir.string()));
}

}  // namespace clprompt
