#pragma once
// DualPrompt (Wang et al., ECCV'22), as JH-LEE-KR/dualprompt-pytorch (prompt.py, attention.py,
// vision_transformer.py, configs/cifar100_dualprompt.py) does it:
//   - a G(eneral)-prompt shared by all tasks, prefix-tuned into layers g_layers = {0, 1};
//   - an E(xpert)-prompt pool with one key per entry, prefix-tuned into e_layers = {2, 3, 4}.
//     While training task t (task identity known) the E-prompt of the task is used
//     (use_prompt_mask: entries [t * top_k, (t + 1) * top_k), i.e. entry t with top_k = 1) and
//     its key is pulled towards the query; at evaluation the entry whose key is most similar to
//     the query (top-1 by cosine) is used, optionally batch-wise.
//   - the classifier reads the [CLS] output.
// Built from the blocks of prompt_pool.hpp. `Options::coda_repo()` is GT-RIPL/CODA-Prompt's
// re-implementation (models/zoo.py class DualPrompt).
//
// Options that reproduce a reference exactly:
//   - shared_prompt_pool (default on, as both dualprompt-pytorch configs,
//     configs/cifar100_dualprompt.py:98, configs/imr_dualprompt.py:98): at the start of task t > 0
//     the E-prompt of task t-1 (entries [(t-1) k, t k), every E-layer, key and value parts) is
//     copied into task t's entries (engine.py:183-206). shared_prompt_key (default off, :99) does
//     the same for the keys (engine.py:208-225; in the reference that code indexes the 2-D key
//     tensor with the 3-index slice built for the prefix-tuned prompts and would fail, so it has
//     never run with these configs). DualPrompt always trains the task's own E-prompt (the task
//     mask, configs :96), the setting these copies need.
//   - e_keys = per_layer and pull_reduction = sum (`Options::coda_repo()`): the CODA-Prompt
//     repository's one key set per E-layer (`e_k_{l}`, models/zoo.py:220-225), a separate top-k per
//     E-layer at evaluation (zoo.py:269-272), and the pull loss sum_b (1 - cos(q_b, K^l[t])) per
//     E-layer (zoo.py:262), summed over the E-layers (models/vit.py:186-192) with coefficient 1
//     (learners/prompt.py:37). The repository has no shared-pool copy, so coda_repo() turns it off.
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

/// Where the E-prompt keys live.
enum class EKeySets {
  /// one key per E-prompt, shared by all E-layers (dualprompt-pytorch prompt.py:54-60)
  shared,
  /// one key set per E-layer, each layer selecting with its own keys (GT-RIPL/CODA-Prompt
  /// models/zoo.py:220-225,251-272)
  per_layer,
};
constexpr auto enum_names(EKeySets) {
  return std::array{std::pair{EKeySets::shared, "shared"}, std::pair{EKeySets::per_layer, "per_layer"}};
}

struct DualPromptOptions {
  int64_t g_length = 5;                    ///< G-prompt tokens (per layer, before the key/value split)
  std::vector<int64_t> g_layers = {0, 1};  ///< layers with the G-prompt (empty: no G-prompt)
  int64_t e_pool_size = 10;                ///< E-prompts (and keys); at least num_tasks * top_k
  int64_t e_length = 5;                    ///< E-prompt tokens (per layer, before the key/value split)
  std::vector<int64_t> e_layers = {2, 3, 4};  ///< layers with the E-prompt
  int64_t top_k = 1;               ///< E-prompts per sample (task t trains [t * top_k, (t + 1) * top_k))
  double pull_coefficient = 1.0;   ///< weight of the key pull constraint
  /// Batch-wise E-prompt selection at evaluation (dualprompt-pytorch batchwise_prompt, on in its
  /// configs): every test sample uses the E-prompt most often chosen in its batch. That leaks
  /// batch statistics (a test batch drawn from one task votes for that task's prompt), so it is
  /// off by default. Training always uses the task's own E-prompt.
  bool batchwise_eval = false;
  /// key_value: full-length key and value prompts (dualprompt-pytorch); halves: one prompt split
  /// in two (CODA-Prompt repo).
  PrefixStyle prefix_style = PrefixStyle::key_value;
  double init_low = -1.0;  ///< prompts and keys start uniform(init_low, init_high)
  double init_high = 1.0;
  /// dualprompt-pytorch shared_prompt_pool (engine.py:183-206, on in its configs): at the start of
  /// task t > 0, E-prompts [(t-1) top_k, t top_k) are copied into [t top_k, (t+1) top_k) (every
  /// E-layer, key and value parts), so task t's E-prompt starts from task t-1's.
  bool shared_prompt_pool = true;
  /// dualprompt-pytorch shared_prompt_key (engine.py:208-225, off in its configs): the same copy
  /// for the E-keys (with e_keys per_layer: every layer's).
  bool shared_prompt_key = false;
  /// shared: one key per E-prompt for all E-layers (dualprompt-pytorch); per_layer: a key set per
  /// E-layer, each E-layer picking its own top-k at evaluation and each contributing a pull loss
  /// (CODA-Prompt repository).
  EKeySets e_keys = EKeySets::shared;
  /// How the pull loss is reduced over the batch: mean (dualprompt-pytorch reduce_sim / B) or sum
  /// (CODA-Prompt repository, models/zoo.py:262). Per_layer keys add the layers' losses.
  PullReduction pull_reduction = PullReduction::mean;

  /// GT-RIPL/CODA-Prompt's DualPrompt (configs prompt_param [10, 20, 6]): E pool 10, E length 20,
  /// G length 6, both split in halves (10 + 3 prefix tokens), uniform(0, 1) init (zoo.py:206-239,
  /// 342-351); per-E-layer keys, pull loss summed over the batch and the E-layers with
  /// coefficient 1; no shared-pool copy (the repository has none).
  static DualPromptOptions coda_repo() {
    DualPromptOptions o;
    o.e_pool_size = 10;
    o.e_length = 20;
    o.g_length = 6;
    o.prefix_style = PrefixStyle::halves;
    o.init_low = 0.0;
    o.init_high = 1.0;
    o.shared_prompt_pool = false;
    o.shared_prompt_key = false;
    o.e_keys = EKeySets::per_layer;
    o.pull_reduction = PullReduction::sum;
    o.pull_coefficient = 1.0;
    return o;
  }

  static constexpr auto fields() {
    using O = DualPromptOptions;
    return std::tuple{field("g_length", &O::g_length),
                      field("g_layers", &O::g_layers),
                      field("e_pool_size", &O::e_pool_size),
                      field("e_length", &O::e_length),
                      field("e_layers", &O::e_layers),
                      field("top_k", &O::top_k),
                      field("pull_coefficient", &O::pull_coefficient),
                      field("batchwise_eval", &O::batchwise_eval),
                      field("prefix_style", &O::prefix_style),
                      field("init_low", &O::init_low),
                      field("init_high", &O::init_high),
                      field("shared_prompt_pool", &O::shared_prompt_pool),
                      field("shared_prompt_key", &O::shared_prompt_key),
                      field("e_keys", &O::e_keys),
                      field("pull_reduction", &O::pull_reduction)};
  }

  void validate(const std::string& path) const {
    require_option(e_pool_size > 0, path, "e_pool_size", fmt::format("must be positive, got {}", e_pool_size));
    require_option(e_length > 0, path, "e_length", fmt::format("must be positive, got {}", e_length));
    require_option(!e_layers.empty(), path, "e_layers", "must name at least one layer");
    require_option(top_k > 0 && top_k <= e_pool_size, path, "top_k",
                   fmt::format("must be in [1, e_pool_size = {}], got {}", e_pool_size, top_k));
    require_option(pull_coefficient >= 0, path, "pull_coefficient",
                   fmt::format("must be non-negative, got {}", pull_coefficient));
    require_option(init_low < init_high, path, "init_high",
                   fmt::format("must be greater than init_low ({}), got {}", init_low, init_high));
    detail::check_layers(e_layers, /*depth=*/0, detail::join_path(path, "e_layers"));
    detail::check_layers(g_layers, /*depth=*/0, detail::join_path(path, "g_layers"));
    if (!g_layers.empty())
      require_option(g_length > 0, path, "g_length", fmt::format("must be positive, got {}", g_length));
    // shared_prompt_pool / shared_prompt_key need task-masked training; DualPrompt always trains
    // task t's own E-prompts [t * top_k, (t + 1) * top_k), so there is no combination to reject.
    if (prefix_style == PrefixStyle::halves) {
      require_option(e_length % 2 == 0, path, "e_length",
                     fmt::format("must be even with prefix_style halves (key and value halves), got {}", e_length));
      require_option(g_layers.empty() || g_length % 2 == 0, path, "g_length",
                     fmt::format("must be even with prefix_style halves (key and value halves), got {}", g_length));
    }
  }
  /// The checks that need the backbone: E- and G-layers inside its depth.
  void validate(const std::string& path, const BackboneDims& dims) const {
    detail::check_layers(e_layers, dims.depth, detail::join_path(path, "e_layers"));
    detail::check_layers(g_layers, dims.depth, detail::join_path(path, "g_layers"));
  }
};

class DualPrompt : public torch::nn::Module {
 public:
  using Options = DualPromptOptions;
  static constexpr QuerySource query_source = QuerySource::backbone;  // E-keys match the frozen backbone's [CLS]

  /// State-dict names: "e_pool.keys" [e_pool_size, D] (e_keys shared) or "e_keys" [|e_layers|,
  /// e_pool_size, D] (e_keys per_layer), "e_pool.prompts" [e_pool_size, |e_layers|, (2,) e_length, D],
  /// "g_prompt" [|g_layers|, (2,) g_length, D] (absent without g_layers); the (2,) axis (key, value)
  /// exists with prefix_style key_value.
  DualPrompt(const Options& options, const BackboneDims& dims) : options_(options), dim_(dims.dim) {
    options_.validate("");
    options_.validate("", dims);
    auto e_shape = prefix_prompt_shape(options_.prefix_style, options_.e_length, dim_);
    e_shape.insert(e_shape.begin(), static_cast<int64_t>(options_.e_layers.size()));
    const bool per_layer = options_.e_keys == EKeySets::per_layer;
    e_pool = register_module("e_pool", std::make_shared<PromptPool>(options_.e_pool_size,
                                                                    per_layer ? PromptPool::no_keys : dim_, e_shape,
                                                                    options_.init_low, options_.init_high));
    if (per_layer) {
      at::Tensor k = at::empty({static_cast<int64_t>(options_.e_layers.size()), options_.e_pool_size, dim_});
      {
        at::NoGradGuard no_grad;
        k.uniform_(options_.init_low, options_.init_high);
      }
      e_keys = register_parameter("e_keys", k);
    }
    if (!options_.g_layers.empty()) {
      auto g_shape = prefix_prompt_shape(options_.prefix_style, options_.g_length, dim_);
      g_shape.insert(g_shape.begin(), static_cast<int64_t>(options_.g_layers.size()));
      at::Tensor g = at::empty(g_shape);
      {
        at::NoGradGuard no_grad;
        g.uniform_(options_.init_low, options_.init_high);
      }
      g_prompt = register_parameter("g_prompt", g);
    }
    // Layers in ascending order, each once, for building the prefixes.
    for (int64_t l = 0; l < dims.depth; ++l)
      if (index_of(options_.e_layers, l) >= 0 || index_of(options_.g_layers, l) >= 0) layers_.push_back(l);
  }

  /// Checks that the E-pool has the task's prompt; then, for task t > 0, the shared-pool copies of
  /// task t-1's E-prompts and keys (shared_prompt_pool / shared_prompt_key).
  void begin_task(const TaskContext& ctx) {
    check_task(ctx.task);
    const int64_t k = options_.top_k;
    if (options_.shared_prompt_pool) detail::copy_previous_task_entries(e_pool->prompts, 0, ctx.task, k);
    if (options_.shared_prompt_key) {
      if (options_.e_keys == EKeySets::per_layer) detail::copy_previous_task_entries(e_keys, 1, ctx.task, k);
      else detail::copy_previous_task_entries(e_pool->keys, 0, ctx.task, k);
    }
  }

  Selection select(const at::Tensor& query, const TaskContext& ctx) {
    const auto similarity = similarities(query);  // checks query is [B, D]
    const int64_t B = query.size(0);
    std::vector<at::Tensor> indices;
    for (const auto& sim : similarity) indices.push_back(selected(sim, ctx));
    const bool per_layer = options_.e_keys == EKeySets::per_layer;
    // shared: every E-layer's prompt from one gather [B, k, |e_layers|, (2,) L, D]; per_layer: E-layer
    // j's prompts [B, k, (2,) L, D] at its own indices.
    at::Tensor e = per_layer ? at::Tensor() : e_pool->gather(indices[0]);
    auto e_prompts = [&](int64_t j) {
      if (!per_layer) return e.select(2, j);
      const auto& idx = indices[static_cast<std::size_t>(j)];
      auto layer = e_pool->prompts.select(1, j);  // [M, (2,) L, D]
      std::vector<int64_t> shape{idx.size(0), idx.size(1)};
      for (int64_t d = 1; d < layer.dim(); ++d) shape.push_back(layer.size(d));
      return layer.index_select(0, idx.flatten()).view(shape);
    };

    Selection out;
    for (int64_t l : layers_) {
      // E before G in layers with both (CODA-Prompt zoo.py: cat((Ek, Gk)); DualPrompt's paper puts
      // the task-specific prompt first as well).
      if (const int64_t j = index_of(options_.e_layers, l); j >= 0) {
        auto [key, value] = to_prefixes(e_prompts(j), options_.prefix_style);
        out.prompts.add_prefix(l, key, value);
      }
      if (const int64_t j = index_of(options_.g_layers, l); j >= 0) {
        auto g = g_prompt[j].unsqueeze(0).unsqueeze(0);  // [1, 1, (2,) L, D]
        std::vector<int64_t> shape(static_cast<std::size_t>(g.dim()), -1);
        shape[0] = B;
        auto [key, value] = to_prefixes(g.expand(shape), options_.prefix_style);
        out.prompts.add_prefix(l, key, value);
      }
    }
    out.prompts.readout = Readout::class_token;
    // dualprompt-pytorch: loss - coeff * sum(q_hat * k_hat) / B, the same gradient as
    // coeff * mean_b (1 - cos(q_b, K[task])) (pull_reduction mean). GT-RIPL/CODA-Prompt: the sum over
    // the batch per E-layer, each with its own keys, summed over the E-layers (zoo.py:262,
    // vit.py:191-192).
    if (ctx.training && options_.pull_coefficient > 0) {
      at::Tensor pull;
      for (std::size_t i = 0; i < similarity.size(); ++i) {
        auto part = detail::pull_loss(similarity[i], indices[i], options_.pull_reduction);
        pull = pull.defined() ? pull + part : part;
      }
      out.aux_loss = options_.pull_coefficient * pull;
    }
    return out;
  }

  /// The E-prompt indices [B, top_k] used for `query` under `ctx` (e_keys shared; with per_layer
  /// keys every E-layer selects on its own: select_layer_indices).
  at::Tensor select_indices(const at::Tensor& query, const TaskContext& ctx) {
    if (options_.e_keys == EKeySets::per_layer)
      throw Error("DualPrompt::select_indices: with e_keys per_layer every E-layer selects its own E-prompts; use "
                  "select_layer_indices (one [B, top_k] per E-layer)");
    at::NoGradGuard no_grad;
    return selected(e_pool->similarity(query), ctx);
  }

  /// The E-prompt indices [|e_layers|, B, top_k] each E-layer uses for `query` under `ctx`, in the
  /// order of options().e_layers (with e_keys shared all layers use the same).
  at::Tensor select_layer_indices(const at::Tensor& query, const TaskContext& ctx) {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> rows;
    for (const auto& sim : similarities(query)) rows.push_back(selected(sim, ctx));
    auto out = at::stack(rows);
    return out.size(0) == 1 ? out.expand({static_cast<int64_t>(options_.e_layers.size()), -1, -1}) : out;
  }

  const Options& options() const { return options_; }
  std::shared_ptr<PromptPool> e_pool;  ///< E-prompts; their keys too with e_keys shared
  at::Tensor e_keys;                   ///< [|e_layers|, e_pool_size, D] with e_keys per_layer; else undefined
  at::Tensor g_prompt;                 ///< undefined without g_layers

 private:
  static int64_t index_of(const std::vector<int64_t>& v, int64_t x) {
    for (std::size_t i = 0; i < v.size(); ++i)
      if (v[i] == x) return static_cast<int64_t>(i);
    return -1;
  }

  /// Cosine similarities [B, M] of the query to each key set: one (shared) or one per E-layer.
  std::vector<at::Tensor> similarities(const at::Tensor& query) const {
    if (options_.e_keys == EKeySets::shared) return {e_pool->similarity(query)};
    if (query.dim() != 2 || query.size(1) != dim_)
      throw ShapeError(fmt::format("DualPrompt expects queries [B, {}] ([batch, key_dim]), got {}", dim_,
                                   query.sizes()));
    std::vector<at::Tensor> out;
    for (int64_t j = 0; j < e_keys.size(0); ++j) out.push_back(detail::cosine_similarity(query, e_keys[j]));
    return out;
  }

  at::Tensor selected(const at::Tensor& similarity, const TaskContext& ctx) const {
    const int64_t B = similarity.size(0), k = options_.top_k;
    if (ctx.training) {
      check_task(ctx.task);
      return detail::task_indices(ctx.task, k, B, similarity.options());
    }
    auto indices = detail::top_k(similarity, k);
    if (options_.batchwise_eval)
      indices = detail::batchwise_top_k(indices, options_.e_pool_size, k, ctx).unsqueeze(0).expand({B, k});
    return indices;
  }

  void check_task(int64_t task) const {
    // dualprompt-pytorch silently drops the task mask (falls back to key matching) past the pool.
    if ((task + 1) * options_.top_k > options_.e_pool_size)
      throw ConfigError("e_pool_size",
                        fmt::format("task {} needs E-prompts [{}, {}), but the pool has {}; e_pool_size must be at "
                                    "least num_tasks * top_k",
                                    task, task * options_.top_k, (task + 1) * options_.top_k, options_.e_pool_size));
  }

  Options options_;
  int64_t dim_;
  std::vector<int64_t> layers_;
};

}  // namespace clprompt
