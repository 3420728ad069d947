// Compiled part of include/clprompt/data/loader.hpp: batches with a prefetching worker.
#include <algorithm>
#include <future>
#include <memory>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include "clprompt/core/seed.hpp"
#include "clprompt/data/loader.hpp"

namespace clprompt {

namespace {

// Augmentation streams are derived from the epoch's shuffle seed so they never coincide with
// another epoch's shuffle stream.
constexpr uint64_t kAugmentSalt = 0xA0761D6478BD642FULL;

}  // namespace

Loader::Loader(const Dataset& dataset, std::vector<int64_t> indices, const std::vector<int64_t>& label_map,
               const Transform& transform, const LoaderOptions& options)
    : dataset_(&dataset),
      indices_(std::move(indices)),
      transform_(transform),
      batch_size_(options.batch_size),
      train_(options.training),
      drop_last_(options.drop_last),
      pin_memory_(options.pin_memory),
      shard_index_(options.shard_index),
      shard_count_(options.shard_count),
      shuffle_seed_(options.seed) {
  if (batch_size_ < 1) throw ConfigError("batch_size", fmt::format("expected >= 1, got {}", batch_size_));
  if (shard_count_ < 1 || shard_index_ < 0 || shard_index_ >= shard_count_)
    throw ConfigError("shard_index", fmt::format("expected 0 <= shard_index < shard_count, got {} of {}", shard_index_,
                                                 shard_count_));
  detail::check_indices(indices_, dataset.size(), fmt::format("Loader over {}", dataset.description()));
  labels_.reserve(indices_.size());
  for (int64_t i : indices_) {
    const int64_t original = dataset.label(i);
    if (original < 0 || original >= static_cast<int64_t>(label_map.size()) ||
        label_map[static_cast<size_t>(original)] < 0)
      throw ShapeError(fmt::format("Loader: label_map ({} entries) has no incremental label for class {} of {}",
                                   label_map.size(), original, dataset.description()));
    labels_.push_back(label_map[static_cast<size_t>(original)]);
  }
}

std::vector<int64_t> Loader::positions(int64_t epoch) const {
  std::vector<int64_t> positions(indices_.size());
  if (train_ && !positions.empty()) {
    const at::Tensor perm = at::randperm(size(), make_generator(shuffle_seed_, static_cast<uint64_t>(epoch)));
    std::memcpy(positions.data(), perm.data_ptr<int64_t>(), sizeof(int64_t) * positions.size());
  } else {
    std::iota(positions.begin(), positions.end(), int64_t{0});
  }
  return positions;
}

std::vector<int64_t> Loader::order(int64_t epoch) const {
  std::vector<int64_t> out = positions(epoch);
  for (auto& p : out) p = indices_[static_cast<size_t>(p)];
  return out;
}

Batch Loader::batch(int64_t epoch, int64_t b) const {
  if (b < 0 || b >= num_batches())
    throw Error(fmt::format("Loader::batch: batch {} is outside [0, {})", b, num_batches()));
  return make_batch(epoch, positions(epoch), b);
}

Batch Loader::make_batch(int64_t epoch, const std::vector<int64_t>& positions, int64_t b) const {
  const int64_t begin = b * batch_size_;
  const int64_t end = std::min(size(), begin + batch_size_);
  Batch batch;
  batch.indices.reserve(static_cast<size_t>(end - begin));
  batch.labels = at::empty({end - begin}, at::kLong);
  int64_t* labels = batch.labels.data_ptr<int64_t>();
  for (int64_t k = begin; k < end; ++k) {
    const auto p = static_cast<size_t>(positions[static_cast<size_t>(k)]);
    batch.indices.push_back(indices_[p]);
    labels[k - begin] = labels_[p];
  }
  const auto raw = dataset_->stored_images(batch.indices);
  at::Generator generator = make_generator(
      make_generator(shuffle_seed_, static_cast<uint64_t>(epoch)).current_seed() ^ kAugmentSalt,
      static_cast<uint64_t>(b));
  batch.images = transform_(raw, train_, generator);
  if (pin_memory_) {
    batch.images = batch.images.pin_memory();
    batch.labels = batch.labels.pin_memory();
  }
  return batch;
}

Loader::Epoch Loader::epoch(int64_t epoch, int64_t first_batch) const { return Epoch(*this, epoch, first_batch); }

Loader::Epoch::Epoch(const Loader& loader, int64_t epoch, int64_t first_batch)
    : loader_(&loader),
      epoch_(epoch),
      num_batches_(loader.num_batches()),
      shard_index_(loader.shard_index_),
      shard_count_(loader.shard_count_),
      first_batch_(std::max<int64_t>(0, first_batch)),
      order_(std::make_shared<const std::vector<int64_t>>(loader.positions(epoch))) {}

void Loader::Epoch::start(int64_t b) {
  next_ = std::async(std::launch::async,
                     [loader = loader_, epoch = epoch_, order = order_, b] { return loader->make_batch(epoch, *order, b); });
}

// The first batch of this process's shard at or after `position`.
int64_t Loader::Epoch::next_position(int64_t position) const {
  const int64_t count = shard_count_, index = shard_index_;
  if (count == 1) return position;
  const int64_t offset = ((index - position) % count + count) % count;
  return position + offset;
}

Loader::Epoch::iterator Loader::Epoch::begin() {
  if (started_) throw Error("Loader::Epoch: an epoch is an input range and can be iterated only once");
  started_ = true;
  position_ = first_batch_ - 1;
  const int64_t first = next_position(first_batch_);
  if (first < num_batches_) start(first);
  advance();
  return iterator(this);
}

void Loader::Epoch::advance() {
  position_ = next_position(position_ + 1);
  if (position_ >= num_batches_) return;
  try {
    current_ = next_.get();
  } catch (...) {
    position_ = num_batches_;  // the pass ends here
    throw;
  }
  const int64_t next = next_position(position_ + 1);
  if (next < num_batches_) start(next);
}


}  // namespace clprompt
