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

  /// GT-RIPL/CODA-Prompt's DualPrompt (configs prompt_param [10, 20, 6]): E pool 10, E length 20,
  /// G length 6, both split in halves (10 + 3 prefix tokens), uniform(0, 1) init.
  static DualPromptOptions coda_repo() {
    DualPromptOptions o;
    o.e_pool_size = 10;
    o.e_length = 20;
    o.g_length = 6;
    o.prefix_style = PrefixStyle::halves;
    o.init_low = 0.0;
    o.init_high = 1.0;
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
                      field("init_high", &O::init_high)};
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

  /// State-dict names: "e_pool.keys" [e_pool_size, D], "e_pool.prompts" [e_pool_size, |e_layers|,
  /// (2,) e_length, D], "g_prompt" [|g_layers|, (2,) g_length, D] (absent without g_layers);
  /// the (2,) axis (key, value) exists with prefix_style key_value.
  DualPrompt(const Options& options, const BackboneDims& dims) : options_(options), dim_(dims.dim) {
    options_.validate("");
    options_.validate("", dims);
    auto e_shape = prefix_prompt_shape(options_.prefix_style, options_.e_length, dim_);
    e_shape.insert(e_shape.begin(), static_cast<int64_t>(options_.e_layers.size()));
    e_pool = register_module("e_pool", std::make_shared<PromptPool>(options_.e_pool_size, dim_, e_shape,
                                                                    options_.init_low, options_.init_high));
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

  /// Checks that the E-pool has the task's prompt.
  void begin_task(const TaskContext& ctx) { check_task(ctx.task); }

  Selection select(const at::Tensor& query, const TaskContext& ctx) {
    const int64_t B = query.size(0);
    auto similarity = e_pool->similarity(query);  // checks query is [B, D]
    auto indices = selected(similarity, ctx);
    auto e = e_pool->gather(indices);  // [B, k, |e_layers|, (2,) L, D]

    Selection out;
    for (int64_t l : layers_) {
      // E before G in layers with both (CODA-Prompt zoo.py: cat((Ek, Gk)); DualPrompt's paper puts
      // the task-specific prompt first as well).
      if (const int64_t j = index_of(options_.e_layers, l); j >= 0) {
        auto [key, value] = to_prefixes(e.select(2, j), options_.prefix_style);
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
    // coeff * mean_b (1 - cos(q_b, K[task])). (GT-RIPL/CODA-Prompt sums over the batch and over
    // its three E-layers, each with its own keys; we keep one key set and the batch mean.)
    if (ctx.training && options_.pull_coefficient > 0)
      out.aux_loss = options_.pull_coefficient * detail::pull_loss(similarity, indices);
    return out;
  }

  /// The E-prompt indices [B, top_k] used for `query` under `ctx`.
  at::Tensor select_indices(const at::Tensor& query, const TaskContext& ctx) {
    at::NoGradGuard no_grad;
    return selected(e_pool->similarity(query), ctx);
  }

  const Options& options() const { return options_; }
  std::shared_ptr<PromptPool> e_pool;
  at::Tensor g_prompt;  ///< undefined without g_layers

 private:
  static int64_t index_of(const std::vector<int64_t>& v, int64_t x) {
    for (std::size_t i = 0; i < v.size(); ++i)
      if (v[i] == x) return static_cast<int64_t>(i);
    return -1;
  }

  at::Tensor selected(const at::Tensor& similarity, const TaskContext& ctx) const {
    const int64_t B = similarity.size(0), k = options_.top_k;
    if (ctx.training) {
      check_task(ctx.task);
      return detail::task_indices(ctx.task, k, B, similarity.options());
    }
    auto indices = detail::top_k(similarity, k);
    if (options_.batchwise_eval)
      indices = detail::batchwise_top_k(indices, options_.e_pool_size, k).unsqueeze(0).expand({B, k});
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
