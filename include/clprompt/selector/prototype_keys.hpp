#pragma once
// PrototypeKeys<Source>: STAR-Prompt's second level (Menabue et al., ECCV'24; aimagelab/mammoth
// models/star_prompt_utils/second_stage_model.py, `Prompter`), the "CLIP-prototype keys" selector
// family of the design card. One key per class comes from a PrototypeSource (CLIP text
// prototypes in STAR-Prompt, class means as the fallback) and stays fixed once its task is
// prepared. Per layer l and class c there is a prompt p_l[c] ∈ R^D and an attention vector
// a_l[c] ∈ R^K. For a query q ∈ R^K (CLIP's image embedding of the same image, not normalised):
//
//   w_l[c] = scale · cos(q ⊙ softmax(a_l[c]), key_c)     for every seen class c   (scale 5)
//   c*_l   = argmax_c w_l[c]                              (per sample and per layer)
//   s_l    = w_l[c*_l] · p_l[c*_l]  ∈ R^D                 (confidence modulation; 1 · p without)
//
// and s_l is added to the attention values of every token in layer l (a "semantic residual",
// Prompts::add_value_residual). Past classes' p, a and keys are frozen. The auxiliary loss
// (tasks t ≥ 1) is λ · mean_l [ mean_c (‖p_l[c]‖² − 1)² + mean_{c,c'} ⟨p_l[c], p_l[c']⟩² ] over
// current classes c and past classes c'.
//
// Gradient of the selection, as the reference computes it: it zeroes the unselected w in place
// under no_grad, so autograd still sees s_l = Σ_c w_l[c] p_l[c] and every current class's a_l[c]
// receives ⟨∂L/∂s_l, p_l[c]⟩ while only the selected p_l[c*] moves. `straight_through` (default)
// reproduces this; false gives the textbook gradient of w[c*] p[c*] only.
//
// State per task t: "p_<t>" [layers, C_t, D], "a_<t>" [layers, C_t, K] (parameters, frozen after
// the task) and "keys_<t>" [C_t, K] (buffer); the source is registered as "source".
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/nn/init.h>
#include <torch/nn/module.h>

#include "clprompt/backbone/concepts.hpp"
#include "clprompt/core/error.hpp"
#include "clprompt/core/query_source.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/selector/concepts.hpp"
#include "clprompt/selector/prompt_pool.hpp"
#include "clprompt/prototypes/prototype_source.hpp"

namespace clprompt {

struct PrototypeKeysOptions {
  std::vector<int64_t> layers;    ///< layers with a residual prompt; empty = all (STAR-Prompt: all 12)
  double scale = 5.0;             ///< w = scale · cos(...) (second_stage_model.py compute_maps)
  bool confidence_modulation = true;  ///< s = w · p (paper Eq. 5); false: s = p
  double ortho_weight = 10.0;     ///< λ of the orthogonality loss (lambda_ortho_second_stage)
  bool straight_through = true;   ///< the reference's gradient through the arg-max (see above)

  static constexpr auto fields() {
    using O = PrototypeKeysOptions;
    return std::tuple{field("layers", &O::layers), field("scale", &O::scale),
                      field("confidence_modulation", &O::confidence_modulation),
                      field("ortho_weight", &O::ortho_weight), field("straight_through", &O::straight_through)};
  }
  void validate(const std::string& path) const {
    require_option(scale > 0 && std::isfinite(scale), path, "scale", fmt::format("must be positive, got {}", scale));
    require_option(ortho_weight >= 0, path, "ortho_weight", fmt::format("must be >= 0, got {}", ortho_weight));
    detail::check_layers(layers, /*depth=*/0, detail::join_path(path, "layers"));
  }
  /// The checks that need the backbone: layers inside its depth.
  void validate(const std::string& path, const BackboneDims& dims) const {
    detail::check_layers(layers, dims.depth, detail::join_path(path, "layers"));
  }
};

namespace detail {

/// Rows of a [rows, cols ≥ width] orthogonal matrix, cut to `width` columns (the reference
/// initialises p with orthogonal_ on [C, 3 D] and keeps the first D columns).
inline at::Tensor orthogonal_rows(int64_t rows, int64_t cols, int64_t width) {
  auto m = at::empty({rows, cols});
  torch::nn::init::orthogonal_(m);
  return m.narrow(1, 0, width).contiguous();
}

}  // namespace detail

template <class Source>
class PrototypeKeys : public torch::nn::Module {
  static_assert(check_prototype_source<Source>());

 public:
  using Options = PrototypeKeysOptions;
  using SourceType = Source;
  /// The source's: the backbone's feature, or its own encoder's (CLIP).
  static constexpr QuerySource query_source = Source::query_source;

  PrototypeKeys(const Options& options, const BackboneDims& dims, std::shared_ptr<Source> source)
      : options_(options), dim_(dims.dim), key_dim_(source->key_dim()) {
    options_.validate("");
    options_.validate("", dims);
    if (options_.layers.empty())
      for (int64_t l = 0; l < dims.depth; ++l) options_.layers.push_back(l);
    source_ = register_module("source", std::move(source));
  }

  /// The source's own query (CLIP's image embedding), when it has one.
  at::Tensor query(const at::Tensor& images)
    requires(Source::query_source == QuerySource::own)
  {
    return source_->query(images);
  }

  /// Adds the task's prompts, attention vectors and (empty) keys.
  void begin_task(const TaskContext& ctx) {
    source_->begin_task(ctx);
    while (static_cast<int64_t>(prompts_.size()) <= ctx.task) {
      const auto t = static_cast<int64_t>(prompts_.size());
      const int64_t classes = ctx.task_class_ends.at(static_cast<std::size_t>(t)) - ctx.class_begin_of(t);
      const auto L = static_cast<int64_t>(options_.layers.size());
      std::vector<at::Tensor> p, a;
      for (int64_t l = 0; l < L; ++l) {
        p.push_back(detail::orthogonal_rows(classes, 3 * dim_, dim_));
        a.push_back(detail::orthogonal_rows(classes, key_dim_, key_dim_));
      }
      const auto device = keys_.empty() ? c10::Device(c10::kCPU) : keys_.front().device();
      prompts_.push_back(register_parameter(fmt::format("p_{}", t), at::stack(p).to(device)));
      attention_.push_back(register_parameter(fmt::format("a_{}", t), at::stack(a).to(device)));
      keys_.push_back(register_buffer(fmt::format("keys_{}", t), at::zeros({classes, key_dim_}, at::TensorOptions(device))));
    }
  }

  /// Asks the source for the task's keys (STAR-Prompt: level 1 trains, then update_keys).
  void prepare_task(const TaskContext& ctx, const FeatureStream& queries) {
    auto keys = source_->prototypes(ctx, queries);
    auto& slot = keys_.at(static_cast<std::size_t>(ctx.task));
    if (keys.sizes() != slot.sizes())
      throw ShapeError(fmt::format("PrototypeKeys: the prototype source returned keys {}, expected {} (task {}'s "
                                   "classes x key_dim)",
                                   keys.sizes(), slot.sizes(), ctx.task));
    at::NoGradGuard no_grad;
    slot.copy_(keys);
    keys_checked_through_ = std::min(keys_checked_through_, ctx.task - 1);
  }

  /// Freezes the task's prompts and attention vectors.
  void end_task(const TaskContext& ctx) {
    for (int64_t t = 0; t <= ctx.task && t < static_cast<int64_t>(prompts_.size()); ++t) {
      prompts_[static_cast<std::size_t>(t)].set_requires_grad(false);
      attention_[static_cast<std::size_t>(t)].set_requires_grad(false);
    }
  }

  Selection select(const at::Tensor& query, const TaskContext& ctx) {
    check_query(query);
    check_keys(ctx);
    const auto P = seen_rows(prompts_, ctx);  // [layers, C, D]
    const auto w = weights(query, ctx);       // [layers, B, C]
    const auto chosen = w.argmax(2);          // [layers, B]
    at::Tensor residuals;                     // [layers, B, D]
    if (at::GradMode::is_enabled()) {
      // Σ_c selected[c] p[c] keeps autograd's view of every class's w (see the file comment).
      const auto mask = at::one_hot(chosen, ctx.classes_seen()).to(w.scalar_type());
      at::Tensor selected;
      if (!options_.confidence_modulation) selected = mask;
      else if (options_.straight_through && ctx.training) selected = w + (w * mask - w).detach();
      else selected = w * mask;
      residuals = at::matmul(selected, P);
    } else {
      // Without gradient: gather the chosen prompts (B·D per layer instead of B·C·D).
      const int64_t L = P.size(0), C = P.size(1);
      const auto rows = (chosen + at::arange(L, chosen.options()).unsqueeze(1) * C).flatten();
      residuals = P.reshape({L * C, -1}).index_select(0, rows).view({L, chosen.size(1), -1});
      if (options_.confidence_modulation) residuals = residuals * w.gather(2, chosen.unsqueeze(2));
    }
    Selection out;
    for (std::size_t j = 0; j < options_.layers.size(); ++j)
      out.prompts.add_value_residual(options_.layers[j], residuals[static_cast<int64_t>(j)]);
    if (ctx.training && ctx.task > 0 && options_.ortho_weight > 0) out.aux_loss = options_.ortho_weight * ortho_loss(P, ctx);
    return out;
  }

  /// The class chosen for each sample in each prompted layer: [B, layers], no gradient.
  at::Tensor select_classes(const at::Tensor& query, const TaskContext& ctx) {
    at::NoGradGuard no_grad;
    check_query(query);
    check_keys(ctx);
    return weights(query, ctx).argmax(2).t();
  }

  /// Keys of the classes seen by `ctx` [C, K].
  at::Tensor keys(const TaskContext& ctx) const { return seen_rows(keys_, ctx).detach(); }
  const Options& options() const { return options_; }
  Source& source() { return *source_; }
  int64_t key_dim() const { return key_dim_; }

 private:
  /// Rows of the classes seen by ctx: the per-task chunks concatenated along the class axis
  /// ([layers, C_t, ·] chunks → [layers, C, ·]; [C_t, K] keys → [C, K]).
  static at::Tensor seen_rows(const std::vector<at::Tensor>& chunks, const TaskContext& ctx) {
    if (ctx.task == 0) return chunks.front();
    std::vector<at::Tensor> parts(chunks.begin(), chunks.begin() + ctx.task + 1);
    return at::cat(parts, parts.front().dim() - 2);
  }

  /// w [layers, B, C] = scale · cos(q ⊙ softmax(a_l[c]), key_c) for all layers at once, without
  /// the reference's [B, C, K] tensor: ⟨q ⊙ s, k⟩ = q · (s ⊙ k) and ‖q ⊙ s‖² = q² · s², so two
  /// [B, K] x [K, layers · C] products.
  at::Tensor weights(const at::Tensor& query, const TaskContext& ctx) {
    const auto& [sk, ss] = match_matrices(ctx);  // [K, layers · C] each
    const int64_t L = static_cast<int64_t>(options_.layers.size()), B = query.size(0);
    const auto dot = at::matmul(query, sk);
    const auto norm = at::matmul(query * query, ss).clamp_min(1e-24).sqrt();  // F.normalize's eps, squared
    return (options_.scale * dot / norm).view({B, L, -1}).transpose(0, 1);  // keys are unit vectors
  }

  /// (softmax(a) ⊙ keys)ᵀ and (softmax(a)²)ᵀ as [K, layers · C]. They do not depend on the query,
  /// so without gradient (evaluation) they are kept until a, the keys or the task change
  /// (tracked by the tensors' version counters): selection is then two small products.
  std::pair<at::Tensor, at::Tensor> match_matrices(const TaskContext& ctx) {
    auto compute = [&] {
      const auto s = seen_rows(attention_, ctx).softmax(2);  // [layers, C, K]
      const auto keys = seen_rows(keys_, ctx);              // [C, K]
      const int64_t rows = s.size(0) * s.size(1);
      return std::pair{(s * keys).reshape({rows, -1}).t(), (s * s).reshape({rows, -1}).t()};
    };
    if (at::GradMode::is_enabled()) return compute();
    std::vector<int64_t> versions{ctx.task};
    for (int64_t t = 0; t <= ctx.task; ++t) {
      versions.push_back(attention_[static_cast<std::size_t>(t)]._version());
      versions.push_back(keys_[static_cast<std::size_t>(t)]._version());
    }
    if (versions != cache_versions_) {
      auto [sk, ss] = compute();
      cache_ = {sk.contiguous(), ss.contiguous()};
      cache_versions_ = std::move(versions);
    }
    return cache_;
  }

  /// Current classes' prompts near unit norm and orthogonal to the past classes' prompts,
  /// averaged over layers. P [layers, C, D].
  static at::Tensor ortho_loss(const at::Tensor& P, const TaskContext& ctx) {
    const auto current = P.narrow(1, ctx.class_begin, ctx.task_classes());
    const auto past = P.narrow(1, 0, ctx.class_begin).detach();
    const auto norm_term = (current.pow(2).sum(2) - 1).pow(2).mean(1);                  // [layers]
    const auto cross_term = at::matmul(current, past.transpose(1, 2)).pow(2).mean({1, 2});  // [layers]
    return (norm_term + cross_term).mean();
  }

  void check_query(const at::Tensor& query) const {
    if (query.dim() != 2 || query.size(1) != key_dim_)
      throw ShapeError(fmt::format("PrototypeKeys: query has shape {}, expected [B, {}] (the prototype source's key_dim)",
                                   query.sizes(), key_dim_));
  }
  /// Keys are zero until prepare_task (or a checkpoint) fills them; checked once per task.
  void check_keys(const TaskContext& ctx) {
    if (ctx.task >= static_cast<int64_t>(keys_.size()))
      throw Error(fmt::format("PrototypeKeys: select() for task {} before begin_task({})", ctx.task, ctx.task));
    if (ctx.task <= keys_checked_through_) return;
    for (int64_t t = keys_checked_through_ + 1; t <= ctx.task; ++t) {
      const auto& k = keys_[static_cast<std::size_t>(t)];
      if (k.numel() > 0 && k.abs().max().template item<float>() == 0.0f)
        throw Error(fmt::format("PrototypeKeys: the keys of task {} were never computed; call prepare_task (the "
                                "Learner does, before training) or load a checkpoint",
                                t));
    }
    keys_checked_through_ = ctx.task;
  }

  Options options_;
  int64_t dim_, key_dim_;
  std::shared_ptr<Source> source_;
  std::vector<at::Tensor> prompts_, attention_, keys_;
  int64_t keys_checked_through_ = -1;  ///< tasks whose keys were seen non-zero
  std::pair<at::Tensor, at::Tensor> cache_;  ///< match_matrices at evaluation
  std::vector<int64_t> cache_versions_;      ///< task and version counters they were computed from
};

}  // namespace clprompt
