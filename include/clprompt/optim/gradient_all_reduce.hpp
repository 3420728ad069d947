#pragma once
// Data-parallel gradient reduction: every rank has back-propagated the loss of its shard of the
// global batch, weighted by the shard's share of it (n_r / n), so the sum over the ranks of
// the gradients is the gradient of the global batch's loss. all_reduce_gradients sums them in
// flat buckets (one all-reduce per bucket, all in flight at once), together with the weighted
// loss values, and writes the sums back as the parameters' gradients.
//
// A parameter without a gradient on every rank (unused this step) keeps none, so the optimiser
// skips it as it would in one process; one with a gradient on some rank gets the sum, zeros
// standing in for the others'.
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "clprompt/core/collective.hpp"

namespace clprompt {

/// Buckets of about this many bytes (torch DDP's default bucket_cap_mb is 25).
constexpr int64_t kGradientBucketBytes = int64_t{25} << 20;

/// Sums the gradients of `params` and `values` (double, e.g. the weighted loss) across the ranks.
inline void all_reduce_gradients(const std::vector<at::Tensor>& params, at::Tensor& values, Collective& collective,
                                 int64_t bucket_bytes = kGradientBucketBytes) {
  const auto n = static_cast<int64_t>(params.size());
  std::vector<std::pair<int64_t, int64_t>> buckets;  // [first, last) parameter index
  std::vector<at::Tensor> flats;
  {
    at::NoGradGuard no_grad;
    // Which parameters have a gradient, then the values: one small double tensor.
    const auto host_values = values.detach().to(at::kCPU, at::kDouble).contiguous();
    std::vector<double> header(static_cast<std::size_t>(n + host_values.numel()));
    for (int64_t i = 0; i < n; ++i) header[static_cast<std::size_t>(i)] = params[static_cast<std::size_t>(i)].grad().defined() ? 1.0 : 0.0;
    std::copy_n(host_values.data_ptr<double>(), host_values.numel(), header.begin() + n);
    flats.push_back(at::tensor(header, at::kDouble));  // the collective moves it where its backend needs it
    int64_t first = 0, bytes = 0;
    for (int64_t i = 0; i < n; ++i) {
      const auto& p = params[static_cast<std::size_t>(i)];
      const bool breaks = i > first && (bytes + p.numel() * p.element_size() > bucket_bytes ||
                                        p.scalar_type() != params[static_cast<std::size_t>(first)].scalar_type() ||
                                        p.device() != params[static_cast<std::size_t>(first)].device());
      if (breaks) {
        buckets.emplace_back(first, i);
        first = i;
        bytes = 0;
      }
      bytes += p.numel() * p.element_size();
    }
    if (n > 0) buckets.emplace_back(first, n);
    for (const auto& [begin, end] : buckets) {
      std::vector<at::Tensor> parts;
      for (int64_t i = begin; i < end; ++i) {
        const auto& p = params[static_cast<std::size_t>(i)];
        parts.push_back(p.grad().defined() ? p.grad().reshape({-1}) : at::zeros({p.numel()}, p.options()));
      }
      flats.push_back(at::cat(parts));
    }
  }
  collective.all_reduce_sum(flats);
  at::NoGradGuard no_grad;
  const double* h = flats.front().data_ptr<double>();
  values.copy_(flats.front().narrow(0, n, values.numel()).view(values.sizes()));
  for (std::size_t b = 0; b < buckets.size(); ++b) {
    int64_t offset = 0;
    for (int64_t i = buckets[b].first; i < buckets[b].second; ++i) {
      auto p = params[static_cast<std::size_t>(i)];
      const auto slice = flats[b + 1].narrow(0, offset, p.numel()).view(p.sizes());
      offset += p.numel();
      // Copied, not a view of the bucket: optimisers detach gradients in place (zero_grad).
      if (h[i] == 0) p.mutable_grad() = at::Tensor();  // unused on every rank: none, as in one process
      else if (p.grad().defined()) p.mutable_grad().copy_(slice);
      else p.mutable_grad() = slice.clone();
    }
  }
}

}  // namespace clprompt
