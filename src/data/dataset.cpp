// Compiled part of include/clprompt/data/dataset.hpp: Dataset, TensorDataset and the shared index checks.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "clprompt/core/error.hpp"
#include "clprompt/data/dataset.hpp"

namespace clprompt {

std::vector<int64_t> Dataset::labels() const {
  std::vector<int64_t> out(static_cast<size_t>(size()));
  for (int64_t i = 0; i < size(); ++i) out[static_cast<size_t>(i)] = label(i);
  return out;
}

std::vector<at::Tensor> Dataset::stored_images(const std::vector<int64_t>& indices) const {
  const at::Tensor batch = images(indices);
  std::vector<at::Tensor> out;
  out.reserve(indices.size());
  for (int64_t i = 0; i < batch.size(0); ++i) out.push_back(batch[i]);
  return out;
}

std::array<int64_t, 3> Dataset::image_shape() const {
  if (size() == 0) throw ShapeError(fmt::format("{}: no images, so no image shape", description()));
  const at::Tensor first = images({0});
  return {first.size(1), first.size(2), first.size(3)};
}

std::vector<std::string> Dataset::class_names() const { return detail::numbered_class_names(num_classes()); }

namespace detail {

std::vector<std::string> numbered_class_names(int64_t n) {
  std::vector<std::string> names;
  names.reserve(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) names.push_back(std::to_string(i));
  return names;
}

void check_indices(const std::vector<int64_t>& indices, int64_t dataset_size, const std::string& what) {
  for (size_t k = 0; k < indices.size(); ++k)
    if (indices[k] < 0 || indices[k] >= dataset_size)
      throw ShapeError(fmt::format("{}: index {} (position {}) is outside [0, {})", what, indices[k], k,
                                   dataset_size));
}

}  // namespace detail

TensorDataset::TensorDataset(at::Tensor images, at::Tensor labels, std::vector<std::string> class_names,
                             std::string description)
    : class_names_(std::move(class_names)), description_(std::move(description)) {
  if (!images.defined() || images.scalar_type() != at::kByte || images.dim() != 4 ||
      (images.size(1) != 1 && images.size(1) != 3))
    throw ShapeError(fmt::format("TensorDataset: images must be uint8 [N, C, H, W] with C = 1 or 3, got {} {}",
                                 images.defined() ? std::string(c10::toString(images.scalar_type())) : "undefined",
                                 images.defined() ? c10::str(images.sizes()) : "[]"));
  if (!labels.defined() || labels.scalar_type() != at::kLong || labels.dim() != 1 ||
      labels.size(0) != images.size(0))
    throw ShapeError(fmt::format("TensorDataset: labels must be int64 [{}] (one per image), got {} {}",
                                 images.size(0),
                                 labels.defined() ? std::string(c10::toString(labels.scalar_type())) : "undefined",
                                 labels.defined() ? c10::str(labels.sizes()) : "[]"));
  images_ = images.cpu().contiguous();
  labels_ = labels.cpu().contiguous();
  labels_vector_.assign(labels_.data_ptr<int64_t>(), labels_.data_ptr<int64_t>() + labels_.numel());
  int64_t max_label = -1;
  for (size_t i = 0; i < labels_vector_.size(); ++i) {
    const int64_t l = labels_vector_[i];
    if (l < 0 || (!class_names_.empty() && l >= static_cast<int64_t>(class_names_.size())))
      throw ShapeError(fmt::format("TensorDataset: label {} at index {} is outside [0, {})", l, i,
                                   class_names_.empty() ? std::string("inf") : std::to_string(class_names_.size())));
    max_label = std::max(max_label, l);
  }
  num_classes_ = class_names_.empty() ? max_label + 1 : static_cast<int64_t>(class_names_.size());
  if (class_names_.empty()) class_names_ = detail::numbered_class_names(num_classes_);
  if (description_.empty())
    description_ = fmt::format("tensor dataset ({} images, {}x{}x{})", images_.size(0), images_.size(2),
                               images_.size(3), images_.size(1));
}

int64_t TensorDataset::label(int64_t index) const {
  if (index < 0 || index >= size())
    throw ShapeError(fmt::format("{}: index {} is outside [0, {})", description_, index, size()));
  return labels_vector_[static_cast<size_t>(index)];
}

at::Tensor TensorDataset::images(const std::vector<int64_t>& indices) const {
  detail::check_indices(indices, size(), description_);
  // index_select only reads the index tensor, so it may alias the vector.
  const at::Tensor index = at::from_blob(const_cast<int64_t*>(indices.data()),
                                         {static_cast<int64_t>(indices.size())}, at::kLong);
  return images_.index_select(0, index);
}

std::array<int64_t, 3> TensorDataset::image_shape() const {
  return {images_.size(1), images_.size(2), images_.size(3)};
}


void detail::require_data_file(const std::string& path, const char* expected) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw FileError(path, fmt::format("not found; expected {}", expected));
}

}  // namespace clprompt
