#pragma once
// GaussianMixture: a mixture of Gaussians with diagonal covariances, fitted by EM after a
// k-means initialisation, and sampled. STAR-Prompt models each class's features with one
// (aimagelab/mammoth models/star_prompt_utils/generative_replay.py `MixtureOfGaussiansModel`,
// 5 components, adapted from ldeecke/gmm-torch) and replays samples from it.
//
//   auto gmm = clprompt::fit_gaussian_mixture(features, {.components = 5, .iterations = 500}, gen);
//   at::Tensor x = gmm.sample(256, gen);   // [256, D] double
//
// As the reference: k-means initialisation with random restarts (k distinct data points each,
// Lloyd's iterations until no centre moves more than 1e-3 of the data's range), π = 1/k, then EM
// until the mean log-likelihood gains less than `tolerance` or `iterations` are done; M-step
// variances E_r[x²] − μ² + 1e-6. Differences on purpose: the E-step uses the Gaussian density
// (the reference's `_estimate_log_prob` takes σ where σ² belongs, which flattens the
// responsibilities), initial variances are the k-means clusters' own (the reference starts at
// 1 whatever the feature scale), and everything is in double on the CPU with one seeded generator.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <tuple>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "clprompt/core/error.hpp"
#include "clprompt/core/options.hpp"

namespace clprompt {

struct GaussianMixtureOptions {
  int64_t components = 5;        ///< gr_mog_n_components
  int64_t iterations = 500;      ///< EM iterations at most (gr_mog_n_iters_*: 200 level 1, 500 level 2)
  double tolerance = 1e-3;       ///< stop when the mean log-likelihood gains less
  int64_t kmeans_restarts = 50;  ///< random initialisations of k-means; the lowest inertia wins
  double variance_floor = 1e-6;  ///< added to every variance (the reference's eps)

  static constexpr auto fields() {
    using O = GaussianMixtureOptions;
    return std::tuple{field("components", &O::components), field("iterations", &O::iterations),
                      field("tolerance", &O::tolerance), field("kmeans_restarts", &O::kmeans_restarts),
                      field("variance_floor", &O::variance_floor)};
  }
  void validate(const std::string& path) const {
    require_option(components > 0, path, "components", fmt::format("must be positive, got {}", components));
    require_option(iterations >= 0, path, "iterations", "must be >= 0");
    require_option(tolerance >= 0, path, "tolerance", "must be >= 0");
    require_option(kmeans_restarts > 0, path, "kmeans_restarts", "must be positive");
    require_option(variance_floor > 0, path, "variance_floor", "must be positive");
  }
};

/// Weights [k], means [k, D] and variances [k, D], double on the CPU.
struct GaussianMixture {
  at::Tensor weights, means, variances;
  int64_t iterations = 0;       ///< EM iterations run by the fit
  double log_likelihood = 0.0;  ///< mean log-likelihood of the data at the end of the fit

  int64_t components() const { return weights.size(0); }

  /// Log-densities [n, k] of x [n, D] under each component, plus log weight.
  at::Tensor weighted_log_density(const at::Tensor& x) const {
    const auto inv = variances.reciprocal();                                   // [k, D]
    const auto mahalanobis = at::matmul(x * x, inv.t()) - 2.0 * at::matmul(x, (means * inv).t()) +
                             (means * means * inv).sum(1).unsqueeze(0);      // [n, k]
    const auto log_det = variances.log().sum(1).unsqueeze(0);                // [1, k]
    const double d = static_cast<double>(x.size(1));
    return weights.log().unsqueeze(0) - 0.5 * (d * std::log(2.0 * M_PI) + log_det + mahalanobis);
  }

  /// n draws: a component per draw from the weights, then its mean + σ ⊙ N(0, I). [n, D] double.
  at::Tensor sample(int64_t n, at::Generator& generator) const {
    const auto component = at::multinomial(weights, n, /*replacement=*/true, generator);
    const auto noise = at::randn({n, means.size(1)}, generator, means.options());
    return means.index_select(0, component) + variances.index_select(0, component).sqrt() * noise;
  }
};

namespace detail {

/// Lloyd's k-means from k distinct random points; returns (centres [k, D], inertia).
inline std::pair<at::Tensor, double> kmeans_once(const at::Tensor& x, int64_t k, double shift_tolerance,
                                                 at::Generator& generator) {
  auto centres = x.index_select(0, at::randperm(x.size(0), generator, at::kLong).narrow(0, 0, k));
  at::Tensor assignment;
  for (int iteration = 0; iteration < 300; ++iteration) {
    const auto distances = (x * x).sum(1, true) - 2.0 * at::matmul(x, centres.t()) + (centres * centres).sum(1).unsqueeze(0);
    assignment = distances.argmin(1);
    auto sums = at::zeros_like(centres).index_add_(0, assignment, x);
    auto counts = at::zeros({k}, x.options()).index_add_(0, assignment, at::ones({x.size(0)}, x.options()));
    // An empty cluster keeps its centre.
    const auto empty = counts.eq(0).unsqueeze(1);
    const auto updated = at::where(empty, centres, sums / counts.clamp_min(1).unsqueeze(1));
    const double shift = (updated - centres).norm(2, {1}).max().item<double>();
    centres = updated;
    if (shift <= shift_tolerance) break;
  }
  const double inertia = (x - centres.index_select(0, assignment)).pow(2).sum().item<double>();
  return {centres, inertia};
}

}  // namespace detail

/// Fits a mixture to x [n, D] (any float type; computed in double). With fewer samples than
/// components, one component per sample.
inline GaussianMixture fit_gaussian_mixture(const at::Tensor& data, const GaussianMixtureOptions& options,
                                            at::Generator& generator) {
  options.validate("mixture");
  if (data.dim() != 2 || data.size(0) == 0)
    throw ShapeError(fmt::format("fit_gaussian_mixture needs data [n > 0, D], got {}", data.sizes()));
  at::NoGradGuard no_grad;
  const auto x = data.detach().to(at::kCPU, at::kDouble).contiguous();
  const int64_t n = x.size(0), k = std::min(options.components, n);
  const double range = std::max((x.max() - x.min()).item<double>(), 1e-12);

  at::Tensor best;
  double best_inertia = std::numeric_limits<double>::infinity();
  for (int64_t r = 0; r < options.kmeans_restarts; ++r) {
    auto [centres, inertia] = detail::kmeans_once(x, k, 1e-3 * range, generator);
    if (inertia < best_inertia) best_inertia = inertia, best = centres;
  }
  GaussianMixture m;
  m.means = best;
  {
    const auto assignment =
        ((x * x).sum(1, true) - 2.0 * at::matmul(x, best.t()) + (best * best).sum(1).unsqueeze(0)).argmin(1);
    const auto r = at::one_hot(assignment, k).to(at::kDouble);
    const auto nk = r.sum(0).clamp_min(1.0).unsqueeze(1);
    m.variances = (at::matmul(r.t(), x * x) / nk - best * best).clamp_min(0) + options.variance_floor;
    m.weights = at::full({k}, 1.0 / static_cast<double>(k), x.options());
  }
  double previous = -std::numeric_limits<double>::infinity();
  for (int64_t it = 0; it < options.iterations; ++it) {
    const auto log_p = m.weighted_log_density(x);           // [n, k]
    const auto log_norm = at::logsumexp(log_p, {1}, true);  // [n, 1]
    const double ll = log_norm.mean().item<double>();
    if (!std::isfinite(ll))
      throw NumericError(fmt::format("fit_gaussian_mixture: the log-likelihood became {} at EM iteration {}", ll, it));
    m.iterations = it + 1;
    m.log_likelihood = ll;
    if (it > 0 && ll - previous < options.tolerance) break;
    previous = ll;
    const auto resp = (log_p - log_norm).exp();                   // [n, k]
    const auto nk = resp.sum(0) + 1e-10;                          // [k]
    m.means = at::matmul(resp.t(), x) / nk.unsqueeze(1);
    m.variances = (at::matmul(resp.t(), x * x) / nk.unsqueeze(1) - m.means * m.means).clamp_min(0) + options.variance_floor;
    m.weights = nk / nk.sum();
  }
  return m;
}

}  // namespace clprompt
