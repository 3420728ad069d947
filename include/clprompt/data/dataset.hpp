#pragma once
// A labelled image collection. Access is per batch (images() returns a whole batch), so the
// virtual call is paid once per batch, never per pixel.
#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "clprompt/core/error.hpp"

namespace clprompt {

/// Which half of a benchmark to load.
enum class Split { train, test };
constexpr auto enum_names(Split) {
  return std::array{std::pair{Split::train, "train"}, std::pair{Split::test, "test"}};
}

/// A labelled image collection with class ids in [0, num_classes()). The loader calls images()
/// from its worker thread, so const members must be safe to call concurrently.
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual int64_t num_classes() const = 0;
  /// Original class id of image `index`, in [0, num_classes()).
  virtual int64_t label(int64_t index) const = 0;
  /// Every label, in index order (the default calls label() per image).
  virtual std::vector<int64_t> labels() const;
  /// uint8 [B, C, H, W] with C = 1 or 3; every index must be in [0, size()).
  virtual at::Tensor images(const std::vector<int64_t>& indices) const = 0;
  /// Each image as stored, uint8 [C, H, W] (sizes may differ: image files at their own size);
  /// what the Loader hands the transforms. The default splits images().
  virtual std::vector<at::Tensor> stored_images(const std::vector<int64_t>& indices) const;
  /// {C, H, W} of one image (the default decodes image 0).
  virtual std::array<int64_t, 3> image_shape() const;
  /// One name per class; the default is "0", "1", ...
  virtual std::vector<std::string> class_names() const;
  /// What was loaded and from where, e.g. "Fashion-MNIST train (60000 images, 28x28x1) from <dir>".
  virtual std::string description() const = 0;
};

/// A dataset held in memory as one uint8 tensor (MNIST, Fashion-MNIST, CIFAR).
class TensorDataset final : public Dataset {
 public:
  /// `images` uint8 [N, C, H, W] (C = 1 or 3), `labels` int64 [N]. The number of classes is
  /// class_names.size() when given (labels must lie below it), else the largest label + 1.
  /// Throws ShapeError when shapes, dtypes or labels do not fit.
  TensorDataset(at::Tensor images, at::Tensor labels, std::vector<std::string> class_names = {},
                std::string description = "");

  int64_t size() const override { return static_cast<int64_t>(labels_vector_.size()); }
  int64_t num_classes() const override { return num_classes_; }
  int64_t label(int64_t index) const override;
  std::vector<int64_t> labels() const override { return labels_vector_; }
  at::Tensor images(const std::vector<int64_t>& indices) const override;
  std::array<int64_t, 3> image_shape() const override;
  std::vector<std::string> class_names() const override { return class_names_; }
  std::string description() const override { return description_; }

  const at::Tensor& all_images() const { return images_; }
  const at::Tensor& all_labels() const { return labels_; }

 private:
  at::Tensor images_;
  at::Tensor labels_;
  std::vector<int64_t> labels_vector_;  // label() is called per sample; avoid a tensor access each time
  std::vector<std::string> class_names_;
  int64_t num_classes_ = 0;
  std::string description_;
};

namespace detail {

/// "0", "1", ..., "n-1".
std::vector<std::string> numbered_class_names(int64_t n);

/// Throws ShapeError unless every index is in [0, dataset_size).
void check_indices(const std::vector<int64_t>& indices, int64_t dataset_size, const std::string& what);

/// Throws FileError(path, "not found; expected <expected>") unless path is a regular file.
void require_data_file(const std::string& path, const char* expected);

}  // namespace detail

}  // namespace clprompt
