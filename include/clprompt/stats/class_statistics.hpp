#pragma once
// ClassStatistics: per-class feature mean and covariance, accumulated in double precision in one
// pass over a task's features, saved and loaded with the checkpoint, and sampled from N(mu, Sigma)
// (SLCA's classifier alignment, GengDavid/SLCA models/base.py `_compute_class_mean` and
// models/slca.py `_stage2_compact_classifier`).
//
//   ClassStatistics stats({.covariance = CovarianceKind::full}, /*dim=*/768);
//   stats.begin_task(ctx);                     // zero-filled buffers for the task's classes
//   stats.update(features, labels);            // any number of batches, any order
//   at::Tensor x = stats.sample(c, 256, gen);  // [256, D] float from N(mu_c, Sigma_c + ridge I)
//
// Storage per class (double): count (1), mean (D) and the scatter matrix M2 = sum (x - mu)(x - mu)^T:
//   full      D + D^2 values   (D 768: 4.5 MiB per class; D 192: 289 KiB)
//   diagonal  2 D values       (D 768: 12 KiB per class;  D 192: 3 KiB)
//   shared    D values + one D x D pooled within-class scatter for all classes
//   mixture   2 D + k (1 + 2 D) values: the diagonal statistics plus a k-component mixture of
//             diagonal Gaussians (STAR-Prompt), fitted by fit_mixtures() once the task's features
//             have all been seen (they are held in memory until then); samples come from the mixture
// The covariance is M2 / (n - 1) (unbiased, as torch.cov) + ridge I (SLCA: 1e-4).
#include <array>
#include <functional>
#include <map>
#include <cmath>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "clprompt/core/error.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/stats/gaussian_mixture.hpp"
#include "clprompt/core/task_context.hpp"

namespace clprompt {

namespace detail {
/// L = V diag(sqrt(max(λ, 0))) from the eigen-decomposition Σ = V diag(λ) Vᵀ of a symmetric
/// positive semi-definite CPU double [D, D] matrix, so that L Lᵀ = Σ up to round-off; undefined
/// when the decomposition fails. Compiled in the library (Eigen stays out of this header).
at::Tensor symmetric_psd_factor(const at::Tensor& sigma);
}  // namespace detail

enum class CovarianceKind { full, diagonal, shared, mixture };
constexpr auto enum_names(CovarianceKind) {
  return std::array{std::pair{CovarianceKind::full, "full"}, std::pair{CovarianceKind::diagonal, "diagonal"},
                    std::pair{CovarianceKind::shared, "shared"}, std::pair{CovarianceKind::mixture, "mixture"}};
}

struct ClassStatisticsOptions {
  /// full: one D x D covariance per class (SLCA); diagonal: per-class variances; shared: one
  /// pooled within-class covariance for all classes (LDA-style), per-class means.
  /// mixture: per-class mixtures of diagonal Gaussians (STAR-Prompt's generative replay).
  CovarianceKind covariance = CovarianceKind::full;
  double ridge = 1e-4;  ///< added to the covariance's diagonal (SLCA: torch.eye(D) * 1e-4)
  GaussianMixtureOptions mixture;  ///< with covariance = mixture

  static constexpr auto fields() {
    return std::tuple{field("covariance", &ClassStatisticsOptions::covariance),
                      field("ridge", &ClassStatisticsOptions::ridge),
                      field("mixture", &ClassStatisticsOptions::mixture)};
  }
  void validate(const std::string& path) const {
    require_option(ridge >= 0 && std::isfinite(ridge), path, "ridge", fmt::format("must be >= 0, got {}", ridge));
    mixture.validate(path.empty() ? "mixture" : path + ".mixture");
  }
};

class ClassStatistics : public torch::nn::Module {
 public:
  using Options = ClassStatisticsOptions;

  ClassStatistics(const Options& options, int64_t dim) : options_(options), dim_(dim) {
    options_.validate("statistics");
    if (dim <= 0) throw ShapeError(fmt::format("ClassStatistics needs a positive feature dimension, got {}", dim));
    if (options_.covariance == CovarianceKind::shared)
      shared_m2_ = register_buffer("shared_m2", at::zeros({dim, dim}, at::kDouble));
  }

  /// Registers zero-filled buffers for the classes of tasks up to ctx.task (idempotent), so that
  /// a checkpoint written after any task loads by name into a model replayed with begin_task.
  void begin_task(const TaskContext& ctx) {
    while (static_cast<int64_t>(counts_.size()) <= ctx.task) {
      const auto t = static_cast<int64_t>(counts_.size());
      const int64_t begin = ctx.class_begin_of(t), classes = ctx.task_class_ends.at(static_cast<std::size_t>(t)) - begin;
      const auto opts = at::TensorOptions().dtype(at::kDouble).device(device());
      counts_.push_back(register_buffer(fmt::format("count_{}", t), at::zeros({classes}, opts)));
      means_.push_back(register_buffer(fmt::format("mean_{}", t), at::zeros({classes, dim_}, opts)));
      if (options_.covariance == CovarianceKind::full)
        m2_.push_back(register_buffer(fmt::format("m2_{}", t), at::zeros({classes, dim_, dim_}, opts)));
      else if (options_.covariance != CovarianceKind::shared)
        m2_.push_back(register_buffer(fmt::format("m2_{}", t), at::zeros({classes, dim_}, opts)));
      if (options_.covariance == CovarianceKind::mixture) {
        const int64_t k = options_.mixture.components;
        mixture_weights_.push_back(register_buffer(fmt::format("mixture_weight_{}", t), at::zeros({classes, k}, opts)));
        mixture_means_.push_back(register_buffer(fmt::format("mixture_mean_{}", t), at::zeros({classes, k, dim_}, opts)));
        mixture_variances_.push_back(
            register_buffer(fmt::format("mixture_variance_{}", t), at::ones({classes, k, dim_}, opts)));
      }
      task_begin_.push_back(begin);
      task_end_.push_back(begin + classes);
      factors_.resize(static_cast<std::size_t>(begin + classes));
    }
  }

  int64_t dim() const { return dim_; }
  int64_t num_classes() const { return task_end_.empty() ? 0 : task_end_.back(); }
  const Options& options() const { return options_; }

  /// Merges a batch of features [B, D] with labels [B] into the statistics of their classes.
  /// Per class, the batch's own mean and scatter are computed in double and merged with the
  /// running ones by Chan, Golub & LeVeque's pairwise update (numerically stable: no sum of
  /// squares of raw values is ever formed):
  ///   delta = mu_b - mu_a;  n = n_a + n_b;  mu = mu_a + delta n_b / n;
  ///   M2 = M2_a + M2_b + delta delta^T n_a n_b / n
  void update(const at::Tensor& features, const at::Tensor& labels) {
    if (features.dim() != 2 || features.size(1) != dim_ || labels.dim() != 1 || labels.size(0) != features.size(0))
      throw ShapeError(fmt::format("ClassStatistics::update expects features [B, {}] and labels [B], got {} and {}",
                                   dim_, features.sizes(), labels.sizes()));
    at::NoGradGuard no_grad;
    const auto x = features.detach().to(device(), at::kDouble);
    const auto y = labels.to(at::kCPU, at::kLong);
    const auto unique = std::get<0>(at::_unique(y, /*sorted=*/true));
    const auto ycpu = y.contiguous();
    for (int64_t i = 0; i < unique.numel(); ++i) {
      const int64_t c = unique[i].item<int64_t>();
      const auto [t, local] = locate(c);
      const auto rows = (ycpu == c).nonzero().squeeze(1).to(x.device());
      const auto xb = x.index_select(0, rows);
      const double nb = static_cast<double>(xb.size(0));
      const auto mean_b = xb.mean(0);
      const auto centred = xb - mean_b;
      auto count = counts_[t][local];
      const double na = count.item<double>(), n = na + nb;
      auto mean = means_[t][local];
      const auto delta = mean_b - mean;
      mean.add_(delta * (nb / n));
      if (options_.covariance == CovarianceKind::full) {
        m2_[t][local].add_(at::mm(centred.t(), centred)).add_(at::outer(delta, delta) * (na * nb / n));
      } else if (options_.covariance == CovarianceKind::diagonal || options_.covariance == CovarianceKind::mixture) {
        m2_[t][local].add_(centred.pow(2).sum(0)).add_(delta.pow(2) * (na * nb / n));
        if (options_.covariance == CovarianceKind::mixture) pending_[c].push_back(xb.cpu());
      } else {
        // Pooled within-class scatter: the sum of every class's M2.
        shared_m2_.add_(at::mm(centred.t(), centred)).add_(at::outer(delta, delta) * (na * nb / n));
      }
      count.fill_(n);
      invalidate(c);
    }
  }

  double count(int64_t c) const {
    const auto [t, local] = locate(c);
    return counts_[t][local].item<double>();
  }
  /// Mean of class c: [D] double.
  at::Tensor mean(int64_t c) const {
    const auto [t, local] = locate(c);
    return means_[t][local].clone();
  }
  /// Covariance of class c as a dense [D, D] double matrix: M2 / (n - 1) + ridge I (for shared:
  /// the pooled within-class covariance sum_c M2_c / (sum_c n_c - classes)).
  at::Tensor covariance(int64_t c) const {
    const auto [t, local] = locate(c);
    const auto eye = at::eye(dim_, at::TensorOptions().dtype(at::kDouble).device(device()));
    if (options_.covariance == CovarianceKind::shared) {
      double n = 0, classes = 0;
      for (const auto& cnt : counts_) {
        n += cnt.sum().item<double>();
        classes += cnt.gt(0).sum().item<double>();
      }
      const double dof = std::max(n - classes, 1.0);
      return shared_m2_ / dof + eye * options_.ridge;
    }
    const double dof = std::max(counts_[t][local].item<double>() - 1.0, 1.0);
    if (options_.covariance != CovarianceKind::full) return at::diag(m2_[t][local] / dof) + eye * options_.ridge;
    return m2_[t][local] / dof + eye * options_.ridge;
  }

  /// n draws from N(scale * mu_c, Sigma_c): [n, D] float on this module's device. Deterministic
  /// for a given generator state (the normal draws are made on the CPU with `generator`).
  at::Tensor sample(int64_t c, int64_t n, at::Generator generator, double mean_scale = 1.0) {
    if (count(c) < 1)
      throw Error(fmt::format("ClassStatistics::sample: class {} has no statistics (no feature was seen)", c));
    if (options_.covariance == CovarianceKind::mixture) {
      if (pending_.count(c))
        throw Error(fmt::format("ClassStatistics::sample: class {}'s mixture is not fitted; call fit_mixtures() after "
                                "the task's last update()",
                                c));
      const auto [t, local] = locate(c);
      GaussianMixture m{mixture_weights_[t][local].cpu(), mixture_means_[t][local].cpu() * mean_scale,
                        mixture_variances_[t][local].cpu()};
      return m.sample(n, generator).to(device(), at::kFloat);
    }
    const auto& factor = factor_of(c);
    const auto z = at::randn({n, dim_}, generator, at::TensorOptions().dtype(at::kDouble));
    const auto mu = mean(c).to(at::kCPU) * mean_scale;
    const auto noise = options_.covariance == CovarianceKind::diagonal ? z * factor : at::mm(z, factor.t());
    return (noise + mu).to(device(), at::kFloat);
  }

  /// n draws per class for the classes [0, classes), shuffled together: (features [classes·n, D]
  /// float, labels [classes·n]) on this module's device, class c's mean scaled by mean_scale(c)
  /// (default 1). What generative replay and classifier alignment train on; deterministic for a
  /// given generator state.
  std::pair<at::Tensor, at::Tensor> sample_shuffled(int64_t classes, int64_t n, at::Generator generator,
                                                    const std::function<double(int64_t)>& mean_scale = {}) {
    std::vector<at::Tensor> xs;
    for (int64_t c = 0; c < classes; ++c) xs.push_back(sample(c, n, generator, mean_scale ? mean_scale(c) : 1.0));
    const auto order = at::randperm(classes * n, generator, at::kLong).to(device());
    const auto labels = at::arange(classes, at::TensorOptions(at::kLong).device(device())).repeat_interleave(n);
    return {at::cat(xs).index_select(0, order), labels.index_select(0, order)};
  }

  /// Fits the mixture of every class updated since the last fit (covariance = mixture; a no-op
  /// otherwise) and releases the features held for it. The fit of a class is deterministic for a
  /// given generator state.
  void fit_mixtures(at::Generator& generator) {
    for (auto& [c, parts] : pending_) {
      const auto m = fit_gaussian_mixture(at::cat(parts), options_.mixture, generator);
      const auto [t, local] = locate(c);
      const int64_t k = m.components();  // fewer than configured with fewer samples: the rest keep weight 0
      at::NoGradGuard no_grad;
      mixture_weights_[t][local].zero_().narrow(0, 0, k).copy_(m.weights);
      mixture_means_[t][local].narrow(0, 0, k).copy_(m.means);
      mixture_variances_[t][local].narrow(0, 0, k).copy_(m.variances);
    }
    pending_.clear();
  }

  /// Bytes of statistics stored per class (excluding a shared matrix) and in total.
  int64_t bytes_per_class() const {
    const int64_t k = options_.mixture.components;
    const int64_t per = 1 + dim_ + (options_.covariance == CovarianceKind::full       ? dim_ * dim_
                                    : options_.covariance == CovarianceKind::diagonal ? dim_
                                    : options_.covariance == CovarianceKind::mixture  ? dim_ + k * (1 + 2 * dim_)
                                                                                      : 0);
    return per * static_cast<int64_t>(sizeof(double));
  }

 private:
  std::pair<std::size_t, int64_t> locate(int64_t c) const {
    for (std::size_t t = 0; t < task_end_.size(); ++t)
      if (c >= task_begin_[t] && c < task_end_[t]) return {t, c - task_begin_[t]};
    throw ShapeError(fmt::format("ClassStatistics has classes [0, {}) but class {} was given; call begin_task first",
                                 num_classes(), c));
  }

  c10::Device device() const {
    for (const auto& b : buffers()) return b.device();
    return c10::kCPU;
  }

  void invalidate(int64_t c) {
    if (options_.covariance == CovarianceKind::shared) shared_factor_ = at::Tensor();
    else if (c < static_cast<int64_t>(factors_.size())) factors_[static_cast<std::size_t>(c)] = at::Tensor();
  }

  /// A matrix L with L L^T = Sigma (full, shared; CPU double [D, D]) or the standard deviations
  /// (diagonal; [D]). Cached until the class's statistics change.
  ///
  /// Robustness to rank-deficient Sigma: with fewer samples than dimensions (a class of 50
  /// images at D 768) or collinear features, M2 / (n - 1) is singular and, in floating point,
  /// may even have tiny negative eigenvalues, so a Cholesky factorisation can fail (SLCA relies
  /// on its 1e-4 ridge for that; with ridge 0 it would throw). We factor with a symmetric
  /// eigen-decomposition Sigma = V diag(lambda) V^T instead and use L = V diag(sqrt(max(lambda, 0))):
  /// clamping at 0 only removes round-off (a covariance is positive semi-definite), directions of
  /// zero variance get no noise, and samples stay exactly in the span of the data (+ ridge).
  const at::Tensor& factor_of(int64_t c) {
    at::Tensor& slot = options_.covariance == CovarianceKind::shared ? shared_factor_ : factors_.at(static_cast<std::size_t>(c));
    if (slot.defined()) return slot;
    const auto sigma = covariance(c).to(at::kCPU).contiguous();
    if (options_.covariance == CovarianceKind::diagonal) {
      slot = sigma.diagonal().clamp_min(0).sqrt().contiguous();
      return slot;
    }
    slot = detail::symmetric_psd_factor(sigma);
    if (!slot.defined())
      throw NumericError(fmt::format("ClassStatistics: eigen-decomposition of class {}'s covariance failed", c));
    return slot;
  }

  Options options_;
  int64_t dim_;
  std::vector<at::Tensor> counts_, means_, m2_;
  at::Tensor shared_m2_;
  std::vector<int64_t> task_begin_, task_end_;
  std::vector<at::Tensor> factors_;
  at::Tensor shared_factor_;
  std::vector<at::Tensor> mixture_weights_, mixture_means_, mixture_variances_;
  std::map<int64_t, std::vector<at::Tensor>> pending_;  ///< features per class awaiting fit_mixtures()
};

}  // namespace clprompt
