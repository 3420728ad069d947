#pragma once
// AttentionDecomposed: the prompt selector of CODA-Prompt (Smith et al., "CODA-Prompt:
// COntinual Decomposed Attention-based Prompting for Rehearsal-Free Continual Learning",
// CVPR'23, Sec. 4). Per prompted layer it learns M prompt components P_m ∈ R^{L×D}, keys
// K_m ∈ R^D and attention vectors A_m ∈ R^D. For a query q (the frozen ViT's [CLS] feature):
//
//   α[b, m] = ⟨ (q_b ⊙ A_m) / ‖q_b ⊙ A_m‖ , K_m / ‖K_m‖ ⟩          (Eq. 3-5)
//   p_b     = Σ_m α[b, m] P_m                      ∈ R^{L×D}
//
// with no top-k, so prompt selection is trained end to end with the task loss. M/T new
// components per task: task t owns [s, f) = [t·M/T, (t+1)·M/T). While learning task t the
// components [0, s) of earlier tasks take part but are detached (no gradient reaches them);
// at evaluation the components [0, f) of every task seen so far are used. At begin_task(t),
// t ≥ 1, the new components [s, f) are re-initialised orthonormal to the span of [0, s) by
// Gram-Schmidt (P flattened to [M, L·D]; `gram_schmidt` below chooses between this and the
// reference's exact procedure); an optional orthogonality penalty
// μ · mean((X Xᵀ − I)²) on K, A and flattened P is returned as aux_loss.
// Injection: prefix tuning, p split in halves along L (first half → key prefix, second half →
// value prefix), as in GT-RIPL/CODA-Prompt's models/zoo.py; readout: [CLS].
//
//   clprompt::AttentionDecomposed selector({}, clprompt::dims_of(*vit));   // 100 components, L 8, μ 0
//   selector.begin_task(ctx);
//   clprompt::Selection s = selector.select(vit->query(images), ctx);   // s.prompts: layers 0-4
//
// Differences from the reference code, both deliberate (the first one optional):
//   - Gram-Schmidt (gram_schmidt = orthonormal_basis, the default) orthogonalises the new
//     components against an orthonormal basis of the span of the earlier ones, starting from
//     uniform(0, 1) values for all M components. The reference projects a random start vector
//     onto each raw earlier component in turn (classical Gram-Schmidt against a non-orthogonal set
//     once they have been trained), which leaves the new components only approximately orthogonal
//     to them. gram_schmidt = reference reproduces GT-RIPL/CODA-Prompt models/zoo.py exactly
//     (`gram_schmidt`, :75-131; called in `__init__`, :31-36, and `process_task_count`, :51-71):
//       * construction: per layer, P, K, A drawn uniform(0, 1) (`tensor_prompt`, :342-351; the
//         values are discarded but the draws happen), then rows [0, M/T) of P (flattened), K and A,
//         in that order, by classical Gram-Schmidt of randn vectors; every later row is zero
//         (`uu = zeros_like(vv)`, :96) until its task;
//       * task t ≥ 1: per layer, K, A, P in that order: rows [0, s) kept as trained, rows [s, f)
//         u_k = v_k − Σ_{j<k} ((v_k·u_j)/(u_j·u_j)) u_j, v_k ~ randn, u_j the raw earlier rows
//         (trained ones for j < s, the not yet normalised new ones for s ≤ j < k), a fresh v_k
//         whenever some u_j·u_j < 1e-8 (:80-81,105-119); then each new row divided by its norm
//         (:120-122); rows [f, M) stay zero. Arithmetic in the parameters' dtype (float32), as
//         the reference.
//     Where the reference would redraw forever (an earlier row with u_j·u_j < 1e-8), this throws.
//   - α is computed without materialising the [B, M, D] tensor q ⊙ A:
//     ⟨q ⊙ A_m, K̂_m⟩ = q · (A_m ⊙ K̂_m) and ‖q ⊙ A_m‖² = q² · A_m², two [B, D] × [D, M] matrix
//     products (same values up to float rounding).
#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "clprompt/backbone/concepts.hpp"
#include "clprompt/core/error.hpp"
#include "clprompt/core/query_source.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/core/task_context.hpp"
#include "clprompt/selector/concepts.hpp"
#include "clprompt/selector/prompt_pool.hpp"

namespace clprompt {

/// How AttentionDecomposed initialises each task's new components (see the file comment).
enum class GramSchmidtInit {
  /// against an orthonormal basis of the earlier components' span, in float64, from uniform(0, 1)
  /// values for every component (clprompt's form; the new rows are orthonormal to the span)
  orthonormal_basis,
  /// GT-RIPL/CODA-Prompt models/zoo.py:75-131 exactly: classical Gram-Schmidt against the raw
  /// earlier rows, later tasks' rows zero until their task
  reference,
};
constexpr auto enum_names(GramSchmidtInit) {
  return std::array{std::pair{GramSchmidtInit::orthonormal_basis, "orthonormal_basis"},
                    std::pair{GramSchmidtInit::reference, "reference"}};
}

/// Options of AttentionDecomposed. Defaults are the released configuration
/// ("prompt_param 100 8 0.0" in GT-RIPL/CODA-Prompt's configs: 100 components, length 8, μ 0)
/// for a 10-task sequence.
struct AttentionDecomposedOptions {
  int64_t pool_size = 100;                       ///< M: components per layer over all tasks
  int64_t length = 8;                            ///< L: prompt length (L/2 key + L/2 value prefix)
  double ortho_weight = 0.0;                     ///< μ: weight of the orthogonality penalty (0: none)
  std::vector<int64_t> layers{0, 1, 2, 3, 4};    ///< prompted transformer layers
  int64_t num_tasks = 10;                        ///< T: must equal the scenario's; M/T new components per task
  /// How new components are initialised: orthonormal_basis (clprompt), or reference
  /// (GT-RIPL/CODA-Prompt models/zoo.py `gram_schmidt`, including the zero rows of future tasks).
  GramSchmidtInit gram_schmidt = GramSchmidtInit::orthonormal_basis;

  static constexpr auto fields() {
    return std::tuple{field("pool_size", &AttentionDecomposedOptions::pool_size),
                      field("length", &AttentionDecomposedOptions::length),
                      field("ortho_weight", &AttentionDecomposedOptions::ortho_weight),
                      field("layers", &AttentionDecomposedOptions::layers),
                      field("num_tasks", &AttentionDecomposedOptions::num_tasks),
                      field("gram_schmidt", &AttentionDecomposedOptions::gram_schmidt)};
  }

  void validate(const std::string& path) const {
    require_option(pool_size > 0, path, "pool_size", fmt::format("must be positive, got {}", pool_size));
    require_option(length > 0 && length % 2 == 0, path, "length",
                   fmt::format("must be a positive even number (the prompt is split into key and value halves), "
                               "got {}",
                               length));
    require_option(std::isfinite(ortho_weight) && ortho_weight >= 0, path, "ortho_weight",
                   fmt::format("must be a finite number >= 0, got {}", ortho_weight));
    require_option(!layers.empty(), path, "layers", "must name at least one layer");
    detail::check_layers(layers, /*depth=*/0, detail::join_path(path, "layers"));  // >= 0, no repeats
    require_option(num_tasks > 0 && pool_size % num_tasks == 0, path, "num_tasks",
                   fmt::format("must be positive and divide pool_size ({}) so that every task gets the same number "
                               "of new components, got {}",
                               pool_size, num_tasks));
  }
  /// The checks that need the backbone: layers inside its depth, and M orthogonal keys in R^D.
  void validate(const std::string& path, const BackboneDims& dims) const {
    detail::check_layers(layers, dims.depth, detail::join_path(path, "layers"));
    require_option(pool_size <= dims.dim, path, "pool_size",
                   fmt::format("must be <= the embedding width ({}) so that the keys can be mutually orthogonal, "
                               "got {}",
                               dims.dim, pool_size));
  }

  int64_t components_per_task() const { return pool_size / num_tasks; }
};

namespace detail {

/// The parameters of one prompted layer (names: components, keys, attention).
class AttentionDecomposedLayer : public torch::nn::Module {
 public:
  AttentionDecomposedLayer(int64_t pool_size, int64_t length, int64_t dim) {
    // uniform(0, 1) as the reference's tensor_prompt; the constructor of AttentionDecomposed
    // then re-initialises task 0's components by Gram-Schmidt.
    components = register_parameter("components", at::rand({pool_size, length, dim}));
    keys = register_parameter("keys", at::rand({pool_size, dim}));
    attention = register_parameter("attention", at::rand({pool_size, dim}));
  }
  at::Tensor components;  ///< P [M, L, D]
  at::Tensor keys;        ///< K [M, D]
  at::Tensor attention;   ///< A [M, D]
};

/// Rows [begin, end) of `rows` ([M, n]) replaced, in place, by random unit vectors orthogonal to
/// each other and to the span of rows [0, begin). Computed in float64 by classical Gram-Schmidt
/// with one re-orthogonalisation pass ("twice is enough"), then cast to the tensor's dtype.
inline void gram_schmidt_rows(const at::Tensor& rows, int64_t begin, int64_t end) {
  const int64_t n = rows.size(1);
  if (end - begin <= 0) return;
  if (end > n)
    throw ConfigError("pool_size", fmt::format("{} mutually orthogonal components do not fit in dimension {}", end, n));
  at::NoGradGuard no_grad;
  const auto f64 = rows.options().dtype(at::kDouble);
  auto basis = at::zeros({end, n}, f64);  // rows [0, count): orthonormal, spanning what is done
  int64_t count = 0;
  // v minus its projection on the basis, twice; returns the remaining norm.
  auto orthogonalise = [&](at::Tensor& v) {
    if (count > 0) {
      const auto q = basis.narrow(0, 0, count);
      for (int pass = 0; pass < 2; ++pass) v -= at::mv(q.t(), at::mv(q, v));
    }
    return v.norm().item<double>();
  };
  for (int64_t i = 0; i < begin; ++i) {
    auto v = rows[i].to(at::kDouble);
    const double norm = v.norm().item<double>();
    if (norm == 0) continue;
    v /= norm;
    const double rest = orthogonalise(v);
    if (rest > 1e-10) basis[count++].copy_(v / rest);  // else: already in the span
  }
  for (int64_t i = begin; i < end; ++i) {
    for (int attempt = 0;; ++attempt) {
      auto v = at::randn({n}, f64);
      v /= v.norm();
      const double rest = orthogonalise(v);
      if (rest > 1e-6) {
        basis[count++].copy_(v / rest);
        break;
      }
      if (attempt == 100)
        throw Error(fmt::format("Gram-Schmidt found no direction orthogonal to {} vectors in dimension {}", count, n));
    }
    rows[i].copy_(basis[count - 1]);
  }
}

/// GT-RIPL/CODA-Prompt's `gram_schmidt` (models/zoo.py:75-131) on the rows of `rows` ([M, n],
/// in place; the reference works on columns of the transpose): rows [0, begin) are kept, rows
/// [begin, end) become u_k = v_k − Σ_{j<k} ((v_k·u_j)/(u_j·u_j)) u_j with v_k = randn(n) (a new
/// v_k when some u_j·u_j < 1e-8), each divided by its norm once all are built, and rows [end, M)
/// are zeroed. In the tensor's dtype, with the reference's operation order.
inline void gram_schmidt_rows_reference(const at::Tensor& rows, int64_t begin, int64_t end) {
  at::NoGradGuard no_grad;
  const int64_t M = rows.size(0), n = rows.size(1);
  if (end < M) rows.narrow(0, end, M - end).zero_();  // uu = zeros_like(vv): only [0, end) is written
  for (int64_t k = begin; k < end; ++k) {
    for (int attempt = 0;; ++attempt) {
      auto v = at::randn({n}, rows.options());  // randn_like(vv[:, k])
      at::Tensor projections;                   // uk = 0; uk = uk + proj
      bool redo = false;
      for (int64_t j = 0; j < k && !redo; ++j) {
        const auto u = rows[j];
        const auto denominator = (u * u).sum();
        if (denominator.item<double>() < 1e-8) {
          redo = true;
        } else {
          auto projection = (v * u).sum() / denominator * u;
          projections = projections.defined() ? projections + projection : projection;
        }
      }
      if (!redo) {
        rows[k].copy_(projections.defined() ? v - projections : v);
        break;
      }
      if (attempt == 100)
        throw Error(fmt::format("Gram-Schmidt (reference): an earlier row of {} has squared norm < 1e-8, so every "
                                "start vector for row {} is rejected (the reference would retry forever)",
                                rows.sizes(), k));
    }
  }
  for (int64_t k = begin; k < end; ++k) rows[k].copy_(rows[k] / rows[k].norm());
}

/// mean((X Xᵀ − I)²) for X [m, n]: the orthogonality penalty of CODA-Prompt's Eq. 9.
inline at::Tensor ortho_penalty(const at::Tensor& x) {
  auto gram = at::mm(x, x.t());
  return (gram - at::eye(x.size(0), gram.options())).pow(2).mean();
}

}  // namespace detail

/// CODA-Prompt's attention-decomposed prompt components (see the file comment).
class AttentionDecomposed : public torch::nn::Module {
 public:
  using Options = AttentionDecomposedOptions;
  static constexpr QuerySource query_source = QuerySource::backbone;

  /// Builds M components per layer: uniform(0, 1), then task 0's [0, M/T) by Gram-Schmidt (with
  /// gram_schmidt = reference, rows [M/T, M) are then zero). Throws ConfigError ("<field>",
  /// relative to the options) for invalid options, a layer beyond dims.depth, or
  /// pool_size > dims.dim (M orthogonal keys do not fit in R^D).
  AttentionDecomposed(const Options& options, const BackboneDims& dims) : options_(options), dim_(dims.dim) {
    options_.validate("");
    options_.validate("", dims);
    holder_ = register_module("layers", std::make_shared<torch::nn::Module>());
    const bool reference = options_.gram_schmidt == GramSchmidtInit::reference;
    for (auto l : options_.layers) {
      auto layer = std::make_shared<detail::AttentionDecomposedLayer>(options_.pool_size, options_.length, dim_);
      layers_.push_back(holder_->register_module(std::to_string(l), layer));
      if (reference) {  // zoo.py:30-36: each layer's p, k, a drawn, then Gram-Schmidt of p, k, a
        at::NoGradGuard no_grad;
        const int64_t pt = options_.components_per_task();
        detail::gram_schmidt_rows_reference(layer->components.view({options_.pool_size, -1}), 0, pt);
        detail::gram_schmidt_rows_reference(layer->keys, 0, pt);
        detail::gram_schmidt_rows_reference(layer->attention, 0, pt);
      }
    }
    if (!reference) reinitialise(0, options_.components_per_task());
  }

  /// Enters task ctx.task: for t ≥ 1, its components [s, f) are re-initialised by Gram-Schmidt
  /// against the earlier ones (options().gram_schmidt says how). Throws ConfigError("num_tasks")
  /// unless ctx.num_tasks equals options().num_tasks (the components per task are fixed by pool_size / num_tasks).
  void begin_task(const TaskContext& ctx) {
    check_context(ctx);
    const auto [s, f] = task_range(ctx.task);
    if (ctx.task > 0) reinitialise(s, f);
  }

  Selection select(const at::Tensor& query, const TaskContext& ctx) {
    check_context(ctx);
    if (query.dim() != 2 || query.size(1) != dim_)
      throw ShapeError(fmt::format("AttentionDecomposed expects a query [B, {}] (the frozen backbone's feature), got {}",
                                   dim_, query.sizes()));
    const auto [s, f] = task_range(ctx.task);
    const int64_t frozen = ctx.training ? s : 0;  // earlier tasks' components: detached in training
    const int64_t B = query.size(0);
    Selection out;
    const bool penalise = ctx.training && options_.ortho_weight > 0;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      const auto& layer = *layers_[i];
      auto keys = active(layer.keys, frozen, f);
      auto attention = active(layer.attention, frozen, f);
      auto alpha = weights(query, keys, attention);  // [B, f]
      at::Tensor prompt;
      const auto& P = layer.components;
      if (frozen > 0) {
        prompt = at::addmm(at::mm(alpha.narrow(1, frozen, f - frozen), P.narrow(0, frozen, f - frozen).flatten(1)),
                           alpha.narrow(1, 0, frozen), P.narrow(0, 0, frozen).detach().flatten(1));
      } else {
        prompt = at::mm(alpha, P.narrow(0, 0, f).flatten(1));
      }
      // One "selected" prompt per sample, split in halves: [:, :L/2] keys, [:, L/2:] values.
      auto [key, value] = to_prefixes(prompt.view({B, 1, options_.length, dim_}), PrefixStyle::halves);
      out.prompts.add_prefix(options_.layers[i], key, value);
      if (penalise) {
        auto penalty = detail::ortho_penalty(keys) + detail::ortho_penalty(attention) +
                       detail::ortho_penalty(active(P, frozen, f).flatten(1));
        out.aux_loss = out.aux_loss.defined() ? out.aux_loss + penalty : penalty;
      }
    }
    if (penalise) out.aux_loss = out.aux_loss * options_.ortho_weight;
    out.prompts.readout = Readout::class_token;
    return out;
  }

  /// The weights α [B, f] of layer slot `slot` (index into options().layers) for `query` under
  /// `ctx` (components [0, f) of tasks up to ctx.task). For inspection; select() computes them
  /// the same way.
  at::Tensor attention_weights(const at::Tensor& query, int64_t slot, const TaskContext& ctx) {
    check_context(ctx);
    const auto [s, f] = task_range(ctx.task);
    const auto& layer = *layers_.at(static_cast<std::size_t>(slot));
    const int64_t frozen = ctx.training ? s : 0;
    return weights(query, active(layer.keys, frozen, f), active(layer.attention, frozen, f));
  }

  const Options& options() const { return options_; }
  int64_t components_per_task() const { return options_.components_per_task(); }
  /// [s, f): the components task `t` owns.
  std::pair<int64_t, int64_t> task_range(int64_t t) const {
    const int64_t pt = components_per_task();
    if (t < 0 || t >= options_.num_tasks)
      throw Error(fmt::format("AttentionDecomposed: task {} is outside the {} tasks it was built for", t,
                              options_.num_tasks));
    return {t * pt, (t + 1) * pt};
  }
  /// P [M, L, D], K [M, D] and A [M, D] of layer slot `slot` (index into options().layers).
  const at::Tensor& components(int64_t slot) const { return layers_.at(static_cast<std::size_t>(slot))->components; }
  const at::Tensor& keys(int64_t slot) const { return layers_.at(static_cast<std::size_t>(slot))->keys; }
  const at::Tensor& attention(int64_t slot) const { return layers_.at(static_cast<std::size_t>(slot))->attention; }

 private:
  /// Rows [0, f) of p, rows [0, frozen) detached.
  static at::Tensor active(const at::Tensor& p, int64_t frozen, int64_t f) {
    if (frozen == 0) return p.narrow(0, 0, f);
    return at::cat({p.narrow(0, 0, frozen).detach(), p.narrow(0, frozen, f - frozen)});
  }

  /// α[b, m] = ⟨normalize(q_b ⊙ A_m), normalize(K_m)⟩ without forming q ⊙ A ([B, M, D]):
  /// numerator q · (A_m ⊙ K̂_m), norm² q² · A_m². Norms are clamped at 1e-12 as F.normalize does.
  static at::Tensor weights(const at::Tensor& query, const at::Tensor& keys, const at::Tensor& attention) {
    constexpr double eps = 1e-12;
    auto unit_keys = keys / keys.norm(2, {1}, /*keepdim=*/true).clamp_min(eps);
    auto dot = at::mm(query, (attention * unit_keys).t());
    auto norm = at::mm(query * query, (attention * attention).t()).clamp_min(eps * eps).sqrt();
    return dot / norm;
  }

  void check_context(const TaskContext& ctx) const {
    if (ctx.num_tasks != options_.num_tasks)
      throw ConfigError("num_tasks",
                        fmt::format("AttentionDecomposed was built for {} tasks ({} components each) but the scenario "
                                    "has {}; set the selector's num_tasks to {} (it must divide pool_size {})",
                                    options_.num_tasks, components_per_task(), ctx.num_tasks, ctx.num_tasks,
                                    options_.pool_size));
  }

  /// Components [s, f) of every layer: P (flattened), K and A by Gram-Schmidt against [0, s).
  void reinitialise(int64_t s, int64_t f) {
    at::NoGradGuard no_grad;
    if (options_.gram_schmidt == GramSchmidtInit::reference) {
      for (auto& layer : layers_) {  // zoo.py:62-71: K, A, P in this order
        detail::gram_schmidt_rows_reference(layer->keys, s, f);
        detail::gram_schmidt_rows_reference(layer->attention, s, f);
        detail::gram_schmidt_rows_reference(layer->components.view({options_.pool_size, -1}), s, f);
      }
      return;
    }
    for (auto& layer : layers_) {
      detail::gram_schmidt_rows(layer->components.view({options_.pool_size, -1}), s, f);
      detail::gram_schmidt_rows(layer->keys, s, f);
      detail::gram_schmidt_rows(layer->attention, s, f);
    }
  }

  Options options_;
  int64_t dim_;
  std::shared_ptr<torch::nn::Module> holder_;
  std::vector<std::shared_ptr<detail::AttentionDecomposedLayer>> layers_;
};

}  // namespace clprompt
