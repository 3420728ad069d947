#pragma once
// Batches over a subset of a dataset, labels remapped to incremental labels, transformed, with
// the next batch prepared on a worker thread while the current one is used (decoding JPEGs
// must not stall training).
//
//   Loader loader(scenario.train_set(), task.train_indices, scenario.label_map(), transform,
//                 {.batch_size = 64, .training = true, .seed = seed});
//   for (const Batch& batch : loader.epoch(e)) ...
//
// Reproducibility: with train = true, epoch e is shuffled with make_generator(shuffle_seed, e)
// and batch b of it is augmented with a generator of its own, so every batch depends only on
// (shuffle_seed, e, b) - not on how many batches or epochs were consumed before.
#include <cstdint>
#include <future>
#include <iterator>
#include <memory>
#include <vector>

#include <ATen/ATen.h>

#include "clprompt/data/dataset.hpp"
#include "clprompt/data/transforms.hpp"

namespace clprompt {

struct Batch {
  at::Tensor images;             ///< float [B, 3, S, S]
  at::Tensor labels;             ///< int64 [B], incremental labels
  std::vector<int64_t> indices;  ///< the dataset indices of the samples
};

/// How a Loader walks its subset.
struct LoaderOptions {
  int64_t batch_size = 64;
  /// true: every epoch in a new order drawn from (seed, epoch), with the transform's random
  /// augmentations; false: the subset's order, no augmentation (evaluation, statistics).
  bool training = false;
  uint64_t seed = 0;  ///< of the shuffle and augmentation streams
  /// Leave out the last batch of an epoch when it is partial (torch DataLoader drop_last;
  /// CODA-Prompt's training loader, trainer.py:185).
  bool drop_last = false;
  /// Batches in page-locked memory, so that copies to a GPU do not wait (the worker thread pins).
  bool pin_memory = false;
  /// This process's share of the batches in a data-parallel pass (evaluation, feature passes):
  /// an epoch visits batches shard_index, shard_index + shard_count, ... of the whole pass, each
  /// exactly the batch one process would build. num_batches() stays the whole pass's.
  int64_t shard_index = 0;
  int64_t shard_count = 1;
};

class Loader {
 public:
  class Epoch;

  /// `dataset` must outlive the loader (it is held by reference); `indices` index into it and
  /// `label_map` maps its class ids to incremental labels. The transform is copied.
  /// Throws ConfigError for batch_size < 1 and ShapeError for an index or label the map or
  /// dataset does not cover.
  Loader(const Dataset& dataset, std::vector<int64_t> indices, const std::vector<int64_t>& label_map,
         const Transform& transform, const LoaderOptions& options);

  /// Number of samples.
  int64_t size() const { return static_cast<int64_t>(indices_.size()); }
  /// Number of batches per epoch; the last may be partial unless drop_last.
  int64_t num_batches() const { return drop_last_ ? size() / batch_size_ : (size() + batch_size_ - 1) / batch_size_; }
  int64_t batch_size() const { return batch_size_; }
  bool train() const { return train_; }

  /// Sample positions of epoch e: a permutation of the dataset indices (train) or them as given.
  std::vector<int64_t> order(int64_t epoch) const;
  /// Batch b of epoch e, built on the calling thread.
  Batch batch(int64_t epoch, int64_t b) const;
  /// An input range over the batches of epoch e with one batch prefetched; iterate it once.
  /// From first_batch on (a resumed epoch: the batches before it are not built).
  Epoch epoch(int64_t epoch, int64_t first_batch = 0) const;

 private:
  std::vector<int64_t> positions(int64_t epoch) const;  // into indices_
  Batch make_batch(int64_t epoch, const std::vector<int64_t>& positions, int64_t b) const;

  const Dataset* dataset_;
  std::vector<int64_t> indices_;
  std::vector<int64_t> labels_;  // incremental label per entry of indices_
  Transform transform_;
  int64_t batch_size_;
  bool train_;
  bool drop_last_ = false;
  bool pin_memory_ = false;
  int64_t shard_index_ = 0, shard_count_ = 1;
  uint64_t shuffle_seed_;
};

/// One pass over the data. While batch b is used, batch b+1 is built by a worker thread; an
/// exception there is rethrown by the increment that would have produced that batch. The
/// loader must outlive the epoch; destroying an epoch early waits for the batch in flight.
class Loader::Epoch {
 public:
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    using pointer = const Batch*;
    using reference = const Batch&;

    iterator() = default;
    const Batch& operator*() const { return epoch_->current_; }
    const Batch* operator->() const { return &epoch_->current_; }
    iterator& operator++() {
      epoch_->advance();
      return *this;
    }
    void operator++(int) { epoch_->advance(); }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    friend class Epoch;
    explicit iterator(Epoch* epoch) : epoch_(epoch) {}
    bool at_end() const { return epoch_ == nullptr || epoch_->position_ >= epoch_->num_batches_; }
    Epoch* epoch_ = nullptr;
  };

  Epoch(const Loader& loader, int64_t epoch, int64_t first_batch = 0);
  Epoch(Epoch&&) noexcept = default;
  Epoch& operator=(Epoch&&) noexcept = default;
  Epoch(const Epoch&) = delete;
  Epoch& operator=(const Epoch&) = delete;
  ~Epoch() = default;  // std::async futures wait for the batch in flight

  /// Starts the pass (builds batch 0, starts batch 1); call once.
  iterator begin();
  std::default_sentinel_t end() const { return {}; }
  int64_t num_batches() const { return num_batches_; }

 private:
  int64_t next_position(int64_t position) const;
  void start(int64_t b);
  void advance();

  const Loader* loader_;
  int64_t epoch_;
  int64_t num_batches_;
  int64_t shard_index_ = 0, shard_count_ = 1;  // copied: an empty pass never touches the loader
  int64_t first_batch_ = 0;
  int64_t position_ = 0;  // index of current_
  bool started_ = false;
  std::shared_ptr<const std::vector<int64_t>> order_;  // positions, shared with the worker
  Batch current_;
  std::future<Batch> next_;
};

}  // namespace clprompt
