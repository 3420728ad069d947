#pragma once
// Collective: the operations a data-parallel run needs from its process group, and nothing else.
// A single process has none (a null pointer everywhere one is taken); distributed/process_group.hpp
// implements it over c10d (Gloo on CPUs, NCCL on GPUs). Every rank must make the same calls, in
// the same order, with tensors of the same shapes and dtypes (all_gather_rows excepted: the row
// counts may differ).
//
//   if (collective) collective->all_reduce_sum(counts);   // counts of every rank, summed in place
#include <algorithm>
#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

namespace clprompt {

class Collective {
 public:
  virtual ~Collective() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  /// Sums each tensor across the ranks, in place; every rank ends with the same values.
  virtual void all_reduce_sum(std::vector<at::Tensor>& tensors) = 0;
  void all_reduce_sum(at::Tensor& tensor) {
    std::vector<at::Tensor> one{tensor};
    all_reduce_sum(one);
  }
  /// Rank `root`'s tensors, in place on every rank.
  virtual void broadcast(std::vector<at::Tensor>& tensors, int root) = 0;
  /// Every rank's `rows` ([n_r, ...], n_r may differ; the other dimensions and the dtype may not),
  /// in rank order.
  virtual std::vector<at::Tensor> all_gather_rows(const at::Tensor& rows) = 0;
  virtual void barrier() = 0;
};

/// The rows [begin, begin + size) of a global batch of `n` that rank `rank` of `world` trains on:
/// consecutive, balanced shards (the first n % world ranks get one more), as DistributedSampler's
/// contiguous split would give them.
struct RowShard {
  int64_t begin = 0;
  int64_t size = 0;
};
inline RowShard row_shard(int64_t n, int rank, int world) {
  const int64_t base = n / world, extra = n % world;
  const int64_t r = rank;
  return {r * base + std::min(r, extra), base + (r < extra ? 1 : 0)};
}

}  // namespace clprompt
