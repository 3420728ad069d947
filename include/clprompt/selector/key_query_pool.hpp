#pragma once
// KeyQueryPool: L2P (Wang et al., CVPR'22, "Learning to Prompt for Continual Learning"), as
// JH-LEE-KR/l2p-pytorch (prompt.py, vision_transformer.py, configs/cifar100_l2p.py) does it:
// a pool of M prompts with a key each; the frozen backbone's query picks the top-k keys by
// cosine similarity; the k selected prompts (k * length tokens) are inserted after [CLS]
// (prompt tuning) and the classifier reads the mean of their outputs. The selected keys are
// pulled towards the query (pull constraint, coefficient 0.1).
//
// `Options::l2p_plus_plus()` is L2P++ of GT-RIPL/CODA-Prompt (models/zoo.py class L2P): the same
// selection, but prefix tuning at layer 0 with pool 30, length 20, [CLS] readout.
//
// Options that reproduce a reference exactly (defaults keep the paper's form):
//   - shared_prompt_pool / shared_prompt_key (l2p-pytorch engine.py:183-225): with the prompt
//     mask, at the start of task t > 0 the prompts (keys) of task t-1, [(t-1) k, t k), are copied
//     into task t's [t k, (t+1) k). Off in configs/cifar100_l2p.py:86-87; the pool copy is on in
//     configs/five_datasets_l2p.py:86 (`Options::five_datasets()`). Two details of the reference
//     are not copied: its key copy reuses the slice variables of the prompt copy, so it only runs
//     when shared_prompt_pool is on too (a NameError otherwise), and it silently skips the copy
//     when task t's slots run past the pool (here that is an error, see check_task).
//   - pull_loss = all_pairs, pull_loss_chunk (CODA-Prompt models/zoo.py:265-267): L2P++'s key
//     loss over all B x B x k (query, key selected by any sample) pairs, per DataParallel chunk
//     (`Options::l2p_plus_plus_coda_repo()`; see detail::all_pairs_pull_loss).
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "clprompt/backbone/concepts.hpp"
#include "clprompt/backbone/prompts.hpp"
#include "clprompt/core/error.hpp"
#include "clprompt/core/query_source.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/selector/concepts.hpp"
#include "clprompt/selector/prompt_pool.hpp"

namespace clprompt {

/// Where the selected prompts go.
enum class PromptInjection {
  prompt_tuning,  ///< tokens inserted after [CLS] at the input (L2P)
  prefix_tuning,  ///< key/value prefixes at `prefix_layers` (L2P++ of the CODA-Prompt repo)
};
constexpr auto enum_names(PromptInjection) {
  return std::array{std::pair{PromptInjection::prompt_tuning, "prompt_tuning"},
                    std::pair{PromptInjection::prefix_tuning, "prefix_tuning"}};
}

/// The form of the pull constraint.
enum class PullLossKind {
  /// mean over the batch of sum over the keys each sample selected of (1 - cos(q_b, k)): the
  /// L2P paper's constraint, the same gradient as l2p-pytorch's -reduce_sim (prompt.py:97-104)
  own_keys,
  /// sum over every (query, key selected by any sample of the batch or chunk) pair of (1 - cos):
  /// GT-RIPL/CODA-Prompt's L2P++ (models/zoo.py:265-267), see detail::all_pairs_pull_loss
  all_pairs,
};
constexpr auto enum_names(PullLossKind) {
  return std::array{std::pair{PullLossKind::own_keys, "own_keys"}, std::pair{PullLossKind::all_pairs, "all_pairs"}};
}

struct KeyQueryPoolOptions {
  int64_t pool_size = 10;         ///< M prompts (and keys) in the pool
  int64_t length = 5;             ///< tokens per prompt
  int64_t top_k = 5;              ///< prompts selected per sample
  double pull_coefficient = 0.1;  ///< weight of the pull constraint (l2p: pull_constraint_coeff)
  /// Batch-wise selection while training: every sample uses the top_k prompts most often in the
  /// per-sample top-k over the batch (l2p-pytorch batchwise_prompt, on in its configs).
  bool batchwise_train = true;
  /// Batch-wise selection at evaluation. l2p-pytorch keeps it on at evaluation too, which makes a
  /// test sample's prediction depend on the other samples of its batch (it leaks batch
  /// statistics, e.g. that a test batch holds one task); off by default, on to reproduce it.
  bool batchwise_eval = false;
  /// l2p-pytorch use_prompt_mask: while training task t, every sample uses prompts
  /// [t * top_k, (t + 1) * top_k) (needs pool_size >= num_tasks * top_k); evaluation selects
  /// from the whole pool.
  bool prompt_mask_by_task = false;
  double init_low = -1.0;  ///< prompts and keys start uniform(init_low, init_high) (l2p: -1, 1)
  double init_high = 1.0;
  PromptInjection injection = PromptInjection::prompt_tuning;
  std::vector<int64_t> prefix_layers = {0};        ///< layers that get prefixes (prefix_tuning only)
  PrefixStyle prefix_style = PrefixStyle::halves;  ///< (prefix_tuning only)
  /// prompt_mean: mean of the outputs at the prompt tokens (L2P's "prompt" head; needs
  /// prompt_tuning); class_token: the [CLS] output.
  Readout readout = Readout::prompt_mean;
  /// l2p-pytorch shared_prompt_pool (engine.py:183-206): at the start of task t > 0, prompts
  /// [(t-1) top_k, t top_k) are copied into [t top_k, (t+1) top_k) (every layer; key and value
  /// parts), so task t starts from task t-1's prompts. Needs prompt_mask_by_task. Off in
  /// configs/cifar100_l2p.py:86, on in configs/five_datasets_l2p.py:86.
  bool shared_prompt_pool = false;
  /// l2p-pytorch shared_prompt_key (engine.py:208-225): the same copy for the keys. Needs
  /// prompt_mask_by_task. Off in both l2p-pytorch configs.
  bool shared_prompt_key = false;
  /// own_keys: the paper's pull constraint (mean over the batch); all_pairs: the CODA-Prompt
  /// repository's L2P++ loss over all B x B x top_k pairs, summed (see PullLossKind).
  PullLossKind pull_loss = PullLossKind::own_keys;
  /// all_pairs only: the loss is summed over consecutive chunks of this many samples, each chunk
  /// pairing only its own queries and keys, as each GPU of the CODA repository's 4-GPU
  /// DataParallel run did (batch 128 = 4 x 32: chunk 32). 0: the whole batch is one chunk.
  int64_t pull_loss_chunk = 0;

  /// L2P++ as GT-RIPL/CODA-Prompt re-implements it (configs prompt_param [30, 20, -1]): prefix
  /// tuning at layer 0 only, pool 30, length 20 split in key/value halves, top-5, [CLS] readout,
  /// uniform(0, 1) init (its tensor_prompt), no batch-wise selection.
  static KeyQueryPoolOptions l2p_plus_plus() {
    KeyQueryPoolOptions o;
    o.pool_size = 30;
    o.length = 20;
    o.top_k = 5;
    o.batchwise_train = false;
    o.init_low = 0.0;
    o.init_high = 1.0;
    o.injection = PromptInjection::prefix_tuning;
    o.prefix_layers = {0};
    o.prefix_style = PrefixStyle::halves;
    o.readout = Readout::class_token;
    return o;
  }

  /// L2P++ with the CODA-Prompt repository's key loss as its published runs computed it: the
  /// all-pairs sum (models/zoo.py:265-267) with coefficient 1 (learners/prompt.py:37 adds
  /// `prompt_loss.sum()` unweighted), per chunk of 32 samples (4-GPU DataParallel at batch 128,
  /// experiments/cifar-100.sh:10, learners/prompt.py:87-88). Otherwise as l2p_plus_plus().
  static KeyQueryPoolOptions l2p_plus_plus_coda_repo() {
    KeyQueryPoolOptions o = l2p_plus_plus();
    o.pull_loss = PullLossKind::all_pairs;
    o.pull_loss_chunk = 32;
    o.pull_coefficient = 1.0;
    return o;
  }

  /// l2p-pytorch's 5-datasets configuration (configs/five_datasets_l2p.py:79-92): pool 20,
  /// length 10, top-4, prompt mask by task with the shared prompt pool (keys not shared), pull
  /// coefficient 0.5. Batch-wise selection at evaluation stays off (see batchwise_eval).
  static KeyQueryPoolOptions five_datasets() {
    KeyQueryPoolOptions o;
    o.pool_size = 20;
    o.length = 10;
    o.top_k = 4;
    o.prompt_mask_by_task = true;
    o.shared_prompt_pool = true;
    o.shared_prompt_key = false;
    o.pull_coefficient = 0.5;
    return o;
  }

  static constexpr auto fields() {
    using O = KeyQueryPoolOptions;
    return std::tuple{field("pool_size", &O::pool_size),
                      field("length", &O::length),
                      field("top_k", &O::top_k),
                      field("pull_coefficient", &O::pull_coefficient),
                      field("batchwise_train", &O::batchwise_train),
                      field("batchwise_eval", &O::batchwise_eval),
                      field("prompt_mask_by_task", &O::prompt_mask_by_task),
                      field("init_low", &O::init_low),
                      field("init_high", &O::init_high),
                      field("injection", &O::injection),
                      field("prefix_layers", &O::prefix_layers),
                      field("prefix_style", &O::prefix_style),
                      field("readout", &O::readout),
                      field("shared_prompt_pool", &O::shared_prompt_pool),
                      field("shared_prompt_key", &O::shared_prompt_key),
                      field("pull_loss", &O::pull_loss),
                      field("pull_loss_chunk", &O::pull_loss_chunk)};
  }

  void validate(const std::string& path) const {
    require_option(pool_size > 0, path, "pool_size", fmt::format("must be positive, got {}", pool_size));
    require_option(length > 0, path, "length", fmt::format("must be positive, got {}", length));
    require_option(top_k > 0 && top_k <= pool_size, path, "top_k",
                   fmt::format("must be in [1, pool_size = {}], got {}", pool_size, top_k));
    require_option(pull_coefficient >= 0, path, "pull_coefficient",
                   fmt::format("must be non-negative, got {}", pull_coefficient));
    require_option(init_low < init_high, path, "init_high",
                   fmt::format("must be greater than init_low ({}), got {}", init_low, init_high));
    if (injection == PromptInjection::prefix_tuning) {
      require_option(!prefix_layers.empty(), path, "prefix_layers", "must name at least one layer for prefix_tuning");
      detail::check_layers(prefix_layers, /*depth=*/0, detail::join_path(path, "prefix_layers"));
      require_option(prefix_style != PrefixStyle::halves || length % 2 == 0, path, "length",
                     fmt::format("must be even with prefix_style halves (key and value halves), got {}", length));
    }
    require_option(readout != Readout::prompt_mean || injection == PromptInjection::prompt_tuning, path, "readout",
                   "prompt_mean reads the outputs at the input prompt tokens; it needs injection prompt_tuning");
    require_option(!shared_prompt_pool || prompt_mask_by_task, path, "shared_prompt_pool",
                   "copies task t-1's prompts into the slots task t trains, [t * top_k, (t + 1) * top_k); without "
                   "prompt_mask_by_task no task owns those slots: set prompt_mask_by_task or turn this off");
    require_option(!shared_prompt_key || prompt_mask_by_task, path, "shared_prompt_key",
                   "copies task t-1's keys into the slots task t trains, [t * top_k, (t + 1) * top_k); without "
                   "prompt_mask_by_task no task owns those slots: set prompt_mask_by_task or turn this off");
    require_option(pull_loss_chunk >= 0, path, "pull_loss_chunk",
                   fmt::format("must be >= 0 (0: the whole batch), got {}", pull_loss_chunk));
    require_option(pull_loss_chunk == 0 || pull_loss == PullLossKind::all_pairs, path, "pull_loss_chunk",
                   fmt::format("only applies to pull_loss all_pairs (own_keys is per sample); got {} with own_keys",
                               pull_loss_chunk));
  }
  /// The checks that need the backbone: prefix layers inside its depth.
  void validate(const std::string& path, const BackboneDims& dims) const {
    if (injection == PromptInjection::prefix_tuning)
      detail::check_layers(prefix_layers, dims.depth, detail::join_path(path, "prefix_layers"));
  }
};

class KeyQueryPool : public torch::nn::Module {
 public:
  using Options = KeyQueryPoolOptions;
  static constexpr QuerySource query_source = QuerySource::backbone;  // keys match the frozen backbone's [CLS]

  /// State-dict names: "pool.keys" [pool_size, D]; "pool.prompts" [pool_size, length, D]
  /// (prompt_tuning) or [pool_size, layers, length, D] / [pool_size, layers, 2, length, D]
  /// (prefix_tuning, halves / key_value).
  KeyQueryPool(const Options& options, const BackboneDims& dims) : options_(options), dim_(dims.dim) {
    options_.validate("");
    options_.validate("", dims);
    std::vector<int64_t> shape;
    if (options_.injection == PromptInjection::prefix_tuning) {
      shape = prefix_prompt_shape(options_.prefix_style, options_.length, dim_);
      shape.insert(shape.begin(), static_cast<int64_t>(options_.prefix_layers.size()));
    } else {
      shape = {options_.length, dim_};
    }
    pool = register_module("pool", std::make_shared<PromptPool>(options_.pool_size, dim_, shape, options_.init_low,
                                                                options_.init_high));
  }

  /// With prompt_mask_by_task, checks that the pool has the task's prompts; then, for task t > 0,
  /// the shared-pool copies of task t-1's prompts and keys (shared_prompt_pool / shared_prompt_key).
  void begin_task(const TaskContext& ctx) {
    check_task(ctx.task);
    if (options_.shared_prompt_pool) detail::copy_previous_task_entries(pool->prompts, 0, ctx.task, options_.top_k);
    if (options_.shared_prompt_key) detail::copy_previous_task_entries(pool->keys, 0, ctx.task, options_.top_k);
  }

  /// The prompts of the batch; ctx.training picks the training behaviour (prompt mask,
  /// batchwise_train) over the evaluation one (batchwise_eval).
  Selection select(const at::Tensor& query, const TaskContext& ctx) {
    const int64_t B = query.size(0), k = options_.top_k;
    auto similarity = pool->similarity(query);  // checks query is [B, D]
    at::Tensor indices = selected(similarity, ctx);

    Selection out;
    auto chosen = pool->gather(indices);  // [B, k, ...]
    if (options_.injection == PromptInjection::prompt_tuning) {
      out.prompts.input_tokens = chosen.reshape({B, k * options_.length, dim_});
    } else {
      for (std::size_t j = 0; j < options_.prefix_layers.size(); ++j) {
        auto [key, value] = to_prefixes(chosen.select(2, static_cast<int64_t>(j)), options_.prefix_style);
        out.prompts.add_prefix(options_.prefix_layers[j], key, value);
      }
    }
    out.prompts.readout = options_.readout;
    // own_keys: the paper's pull constraint, each sample pulls the keys it used. all_pairs:
    // GT-RIPL/CODA-Prompt's L2P++, (1 - cos_sim[:, k_idx]).sum() with a [B, k] index, i.e. over all
    // B x B x k (sample, other sample's key) pairs (models/zoo.py:265-267).
    if (ctx.training && options_.pull_coefficient > 0) {
      auto pull = options_.pull_loss == PullLossKind::own_keys
                      ? detail::pull_loss(similarity, indices)
                      : detail::all_pairs_pull_loss(similarity, indices, options_.pull_loss_chunk);
      out.aux_loss = options_.pull_coefficient * pull;
    }
    return out;
  }

  /// The prompt indices [B, top_k] the selector uses for `query` under `ctx`.
  at::Tensor select_indices(const at::Tensor& query, const TaskContext& ctx) {
    at::NoGradGuard no_grad;
    return selected(pool->similarity(query), ctx);
  }

  const Options& options() const { return options_; }
  std::shared_ptr<PromptPool> pool;

 private:
  at::Tensor selected(const at::Tensor& similarity, const TaskContext& ctx) const {
    const int64_t B = similarity.size(0), k = options_.top_k;
    if (ctx.training && options_.prompt_mask_by_task) {
      check_task(ctx.task);
      return detail::task_indices(ctx.task, k, B, similarity.options());
    }
    auto indices = detail::top_k(similarity, k);
    if (ctx.training ? options_.batchwise_train : options_.batchwise_eval)
      indices = detail::batchwise_top_k(indices, options_.pool_size, k, ctx).unsqueeze(0).expand({B, k});
    return indices;
  }

  void check_task(int64_t task) const {
    // l2p-pytorch silently falls back to key-query selection when the mask runs past the pool;
    // an explicit error is better than a method that changes behaviour at task pool_size / top_k.
    if (options_.prompt_mask_by_task && (task + 1) * options_.top_k > options_.pool_size)
      throw ConfigError("pool_size",
                        fmt::format("prompt_mask_by_task gives task {} prompts [{}, {}), but the pool has {}; "
                                    "pool_size must be at least num_tasks * top_k",
                                    task, task * options_.top_k, (task + 1) * options_.top_k, options_.pool_size));
  }

  Options options_;
  int64_t dim_;
};

}  // namespace clprompt
