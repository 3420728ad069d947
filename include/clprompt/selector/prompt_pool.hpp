#pragma once
// Building blocks shared by the key-query selectors (L2P's KeyQueryPool, DualPrompt):
//   - PromptPool: M learnable keys [M, D] and M prompts [M, ...], both registered parameters;
//   - cosine key-query matching with l2p-pytorch's normalisation x * rsqrt(max(|x|^2, 1e-12))
//     (prompt.py `l2_normalize`), per-sample top-k and batch-wise top-k;
//   - the pull constraint, mean (or sum) over the batch of sum over the selected keys of
//     (1 - cos(q_b, k)), and the CODA-Prompt repository's all-pairs form;
//   - the shared-pool copy of task t-1's prompts (or keys) into task t's slots;
//   - prefix helpers that turn selected prompts into a layer's key/value prefixes in either of the
//     two published conventions (PrefixStyle).
#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "clprompt/core/collective.hpp"
#include "clprompt/core/error.hpp"
#include "clprompt/core/task_context.hpp"

namespace clprompt {

/// How a prefix-tuning prompt of length L becomes a layer's key and value prefixes.
enum class PrefixStyle {
  /// One [L, D] prompt; its first L/2 tokens are the key prefix, the last L/2 the value prefix
  /// (GT-RIPL/CODA-Prompt models/zoo.py, also for its L2P++ and DualPrompt re-implementations).
  halves,
  /// Separate [L, D] key and value prompts, stored as [2, L, D]: each prefix has the full length L
  /// (JH-LEE-KR/dualprompt-pytorch prompt.py, prompt shape (layers, 2, pool, length, heads, hd)).
  key_value,
};
constexpr auto enum_names(PrefixStyle) {
  return std::array{std::pair{PrefixStyle::halves, "halves"}, std::pair{PrefixStyle::key_value, "key_value"}};
}

/// How the pull constraint is reduced over the batch.
enum class PullReduction {
  /// mean over the batch (the L2P/DualPrompt papers; JH-LEE-KR ports: reduce_sim / B)
  mean,
  /// sum over the batch (GT-RIPL/CODA-Prompt models/zoo.py:262, `(1.0 - cos_sim[:, task_id]).sum()`)
  sum,
};
constexpr auto enum_names(PullReduction) {
  return std::array{std::pair{PullReduction::mean, "mean"}, std::pair{PullReduction::sum, "sum"}};
}

/// Shape of one stored prefix prompt of `length` tokens: {length, dim} or {2, length, dim}.
inline std::vector<int64_t> prefix_prompt_shape(PrefixStyle style, int64_t length, int64_t dim) {
  return style == PrefixStyle::halves ? std::vector<int64_t>{length, dim} : std::vector<int64_t>{2, length, dim};
}

/// Tokens each of the key and value prefixes gets from one prompt of `length`.
inline int64_t prefix_tokens(PrefixStyle style, int64_t length) {
  return style == PrefixStyle::halves ? length / 2 : length;
}

/// Turns k prompts per sample into one layer's (key prefix, value prefix), each [B, k * Lp, D],
/// the prompts concatenated along the token axis in selection order.
///   halves:    prompts [B, k, L, D]    -> key = p[:, :, :L/2], value = p[:, :, L/2:]
///   key_value: prompts [B, k, 2, L, D] -> key = p[:, :, 0],    value = p[:, :, 1]
/// The halves split is per prompt, then concatenated (as CODA-Prompt's zoo.py does for L2P++'s
/// top-5), not a split of the concatenation. For key_value this is what dualprompt-pytorch's
/// prompt.py intends; its `prompt[:, :, idx].reshape(layers, B, dual, ...)` swaps the dual and
/// batch axes without a permute (JH-LEE-KR/dualprompt-pytorch issue #8), which mixes the key and
/// value prompts across samples when B > 1. We do not copy that.
inline std::pair<at::Tensor, at::Tensor> to_prefixes(const at::Tensor& prompts, PrefixStyle style) {
  if (style == PrefixStyle::halves) {
    if (prompts.dim() != 4 || prompts.size(2) % 2 != 0)
      throw ShapeError(fmt::format("to_prefixes(halves) expects prompts [B, k, L, D] with an even L, got {}",
                                   prompts.sizes()));
    const int64_t B = prompts.size(0), half = prompts.size(2) / 2, D = prompts.size(3);
    return {prompts.narrow(2, 0, half).reshape({B, -1, D}), prompts.narrow(2, half, half).reshape({B, -1, D})};
  }
  if (prompts.dim() != 5 || prompts.size(2) != 2)
    throw ShapeError(fmt::format("to_prefixes(key_value) expects prompts [B, k, 2, L, D], got {}", prompts.sizes()));
  const int64_t B = prompts.size(0), D = prompts.size(4);
  return {prompts.select(2, 0).reshape({B, -1, D}), prompts.select(2, 1).reshape({B, -1, D})};
}

namespace detail {

/// l2p-pytorch's l2_normalize: x * rsqrt(max(sum(x^2), 1e-12)) along the last axis. Unlike
/// F.normalize (x / max(|x|, eps)) it is what both JH-LEE-KR ports use for keys and queries.
inline at::Tensor l2_normalize(const at::Tensor& x) {
  return x * at::rsqrt(at::clamp_min(x.pow(2).sum(-1, /*keepdim=*/true), 1e-12));
}

/// Cosine similarities [B, M] between queries [B, D] and keys [M, D].
inline at::Tensor cosine_similarity(const at::Tensor& query, const at::Tensor& keys) {
  return at::matmul(l2_normalize(query), l2_normalize(keys).t());
}

/// Per-sample top-k: indices [B, k] of the k most similar keys, most similar first.
inline at::Tensor top_k(const at::Tensor& similarity, int64_t k) {
  return std::get<1>(at::topk(similarity, k, /*dim=*/1, /*largest=*/true, /*sorted=*/true));
}

/// Batch-wise top-k: the k prompts that occur most often in the per-sample top-k `indices` [B, k]
/// over the batch, as [k] (most frequent first), to be used for every sample.
/// Reference (l2p-pytorch / dualprompt-pytorch prompt.py): torch.unique(idx, return_counts=True,
/// sorted=True) then torch.topk(counts, k). Candidates are the ids in ascending order; torch.topk
/// does not document which of equal counts it returns (the JAX original's lax.top_k and
/// jnp.unique return the lower index first). We make that explicit: ties go to the lower index.
/// (The reference's padding of the unique ids with count 0 never matters: every row of `indices`
/// holds k distinct ids, so at least k ids have a count >= 1.)
/// In data-parallel training the counts of every rank's shard are summed first, so that every
/// rank picks the prompts the whole global batch would (exact: the counts are integers).
inline at::Tensor batchwise_top_k(const at::Tensor& indices, int64_t pool_size, int64_t k, const TaskContext& ctx = {}) {
  auto counts = at::bincount(indices.flatten(), /*weights=*/{}, pool_size);
  if (ctx.collective != nullptr) {
    if (ctx.padding_shard) counts.zero_();
    ctx.collective->all_reduce_sum(counts);
  }
  // A stable sort keeps equal counts in ascending index order.
  auto order = std::get<1>(at::sort(counts, /*stable=*/true, /*dim=*/0, /*descending=*/true));
  return order.narrow(0, 0, k);
}

/// Pull constraint: mean over the batch of sum over j of (1 - similarity[b, indices[b, j]]).
/// Equal, up to the constant k, to l2p-pytorch's -reduce_sim = -sum(q_hat * k_hat) / B, so it
/// has the same gradient; each sample pulls only the keys it used.
inline at::Tensor pull_loss(const at::Tensor& similarity, const at::Tensor& indices) {
  return (1.0 - similarity.gather(1, indices)).sum(1).mean();
}

/// The pull constraint reduced over the batch by `reduction`: pull_loss (mean), or
/// sum_b sum_j (1 - similarity[b, indices[b, j]]) (sum).
inline at::Tensor pull_loss(const at::Tensor& similarity, const at::Tensor& indices, PullReduction reduction) {
  if (reduction == PullReduction::mean) return pull_loss(similarity, indices);
  return (1.0 - similarity.gather(1, indices)).sum();
}

/// GT-RIPL/CODA-Prompt's L2P++ key loss (models/zoo.py:265-267): `(1.0 - cos_sim[:, k_idx]).sum()`
/// with cos_sim [B, M] and k_idx [B, k] indexes a [B, B, k] tensor, so it is
///   sum_i sum_j sum_m (1 - similarity[i, indices[j, m]])
/// over every (query i, key selected by sample j) pair of the batch. Under its 4-GPU
/// `DataParallel` each replica computes this on its own consecutive chunk of the batch and the
/// replicas' losses are summed (models/vit.py:186-192, learners/prompt.py:37); `chunk` > 0 does the
/// same with consecutive chunks of `chunk` samples (the last one may be smaller), 0 = one chunk.
inline at::Tensor all_pairs_pull_loss(const at::Tensor& similarity, const at::Tensor& indices, int64_t chunk) {
  const int64_t B = similarity.size(0);
  const int64_t step = chunk > 0 ? chunk : B;
  at::Tensor total;
  for (int64_t begin = 0; begin < B; begin += step) {
    const int64_t n = std::min(step, B - begin);
    auto part = (1.0 - similarity.narrow(0, begin, n).index_select(1, indices.narrow(0, begin, n).flatten())).sum();
    total = total.defined() ? total + part : part;
  }
  return total;
}

/// The shared-pool copy (l2p-pytorch / dualprompt-pytorch engine.py:183-225, `shared_prompt_pool`
/// and `shared_prompt_key`): at the start of task t > 0, the k entries reserved for task t - 1,
/// [(t - 1) k, t k) along `dim` of `x`, are copied into task t's [t k, (t + 1) k), in place and
/// without gradient. The caller checks that (t + 1) k fits.
inline void copy_previous_task_entries(const at::Tensor& x, int64_t dim, int64_t task, int64_t k) {
  if (task <= 0) return;
  at::NoGradGuard no_grad;
  x.narrow(dim, task * k, k).copy_(x.narrow(dim, (task - 1) * k, k));
}

/// Rows [task * k, (task + 1) * k) for every sample: the prompts reserved for `task`
/// (l2p-pytorch use_prompt_mask; dualprompt-pytorch's E-prompt of the task when k = 1).
inline at::Tensor task_indices(int64_t task, int64_t k, int64_t batch, const at::TensorOptions& options) {
  return at::arange(task * k, (task + 1) * k, options.dtype(at::kLong)).unsqueeze(0).expand({batch, k});
}

/// Throws ConfigError(field) unless every layer index is in [0, depth) and none repeats.
inline void check_layers(const std::vector<int64_t>& layers, int64_t depth, const std::string& field) {
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (layers[i] < 0 || (depth > 0 && layers[i] >= depth))
      throw ConfigError(fmt::format("{}[{}]", field, i),
                        fmt::format("layer {} is outside the backbone's layers [0, {})", layers[i], depth));
    for (std::size_t j = 0; j < i; ++j)
      if (layers[j] == layers[i])
        throw ConfigError(fmt::format("{}[{}]", field, i), fmt::format("layer {} is listed twice", layers[i]));
  }
}

}  // namespace detail

/// M learnable keys [M, key_dim] and prompts [M, prompt_shape...], initialised uniform(low, high)
/// (l2p-pytorch / dualprompt-pytorch: uniform(-1, 1) for both; CODA-Prompt's repo: uniform(0, 1)).
/// State-dict names: "keys", "prompts". With key_dim == PromptPool::no_keys the pool holds only
/// the prompts ("keys" is undefined and not registered): its owner keeps the keys, e.g.
/// DualPrompt's one key set per E-layer.
class PromptPool : public torch::nn::Module {
 public:
  static constexpr int64_t no_keys = 0;

  PromptPool(int64_t pool_size, int64_t key_dim, std::vector<int64_t> prompt_shape, double init_low = -1.0,
             double init_high = 1.0)
      : pool_size_(pool_size), key_dim_(key_dim) {
    if (pool_size <= 0 || key_dim < 0)
      throw ShapeError(fmt::format("PromptPool needs a positive pool size and a positive key dim (or no_keys), got {} "
                                   "and {}",
                                   pool_size, key_dim));
    std::vector<int64_t> shape{pool_size};
    shape.insert(shape.end(), prompt_shape.begin(), prompt_shape.end());
    at::Tensor k = key_dim > 0 ? at::empty({pool_size, key_dim}) : at::Tensor();
    at::Tensor p = at::empty(shape);
    {
      at::NoGradGuard no_grad;
      if (k.defined()) k.uniform_(init_low, init_high);
      p.uniform_(init_low, init_high);
    }
    if (k.defined()) keys = register_parameter("keys", k);
    prompts = register_parameter("prompts", p);
  }

  int64_t pool_size() const { return pool_size_; }
  int64_t key_dim() const { return key_dim_; }

  /// Cosine similarities [B, M] of queries [B, key_dim] to every key.
  at::Tensor similarity(const at::Tensor& query) const {
    if (!keys.defined()) throw Error("PromptPool::similarity: this pool was built without keys (no_keys)");
    if (query.dim() != 2 || query.size(1) != key_dim_)
      throw ShapeError(fmt::format("PromptPool expects queries [B, {}] ([batch, key_dim]), got {}", key_dim_,
                                   query.sizes()));
    return detail::cosine_similarity(query, keys);
  }

  /// The prompts of `indices` [B, k]: [B, k, prompt_shape...]. Rows not selected get no gradient.
  at::Tensor gather(const at::Tensor& indices) const {
    if (indices.dim() != 2)
      throw ShapeError(fmt::format("PromptPool::gather expects indices [B, k], got {}", indices.sizes()));
    std::vector<int64_t> shape{indices.size(0), indices.size(1)};
    for (int64_t d = 1; d < prompts.dim(); ++d) shape.push_back(prompts.size(d));
    return prompts.index_select(0, indices.flatten()).view(shape);
  }

  at::Tensor keys, prompts;

 private:
  int64_t pool_size_, key_dim_;
};

}  // namespace clprompt
