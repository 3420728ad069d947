#include <cmath>

#include "clprompt/core/seed.hpp"
#include "clprompt/stats/class_statistics.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which Catch's must override.
#include <catch2/catch.hpp>

using namespace clprompt;

namespace {

// Random features of 2 tasks x 2 classes with class-dependent means far from 0 (a naive
// sum-of-squares accumulation would lose digits there) and labels in random order.
struct Data {
  at::Tensor x, y;
};
Data random_features(int64_t n, int64_t dim, uint64_t seed) {
  auto gen = make_generator(seed, 0);
  auto y = at::randint(0, 4, {n}, gen, at::TensorOptions().dtype(at::kLong));
  auto centres = at::randn({4, dim}, gen, at::TensorOptions().dtype(at::kDouble)) * 3 + 1000;
  auto x = centres.index_select(0, y) + at::randn({n, dim}, gen, at::TensorOptions().dtype(at::kDouble)) *
                                             at::linspace(0.5, 2.0, dim, at::kDouble);
  return {x.to(at::kFloat), y};
}

ClassStatistics statistics_of(const Data& d, ClassStatisticsOptions options, int64_t batch) {
  ClassStatistics s(options, d.x.size(1));
  s.begin_task(test::task_ctx(0, true, 2));
  s.begin_task(test::task_ctx(1, true, 2));
  for (int64_t b = 0; b < d.x.size(0); b += batch) {
    const int64_t len = std::min(batch, d.x.size(0) - b);
    s.update(d.x.narrow(0, b, len), d.y.narrow(0, b, len));
  }
  return s;
}

bool all_close(const at::Tensor& a, const at::Tensor& b, double rtol, double atol) {
  return at::allclose(a.to(at::kDouble), b.to(at::kDouble), rtol, atol);
}

}  // namespace

TEST_CASE("class statistics equal a direct two-pass computation", "[head][statistics]") {
  const int64_t dim = 6;
  auto data = random_features(301, dim, 5);
  const auto x = data.x.to(at::kDouble);
  for (auto kind : {CovarianceKind::full, CovarianceKind::diagonal, CovarianceKind::shared}) {
    CAPTURE(to_string(kind));
    ClassStatisticsOptions options;
    options.covariance = kind;
    options.ridge = 1e-4;
    auto stats = statistics_of(data, options, /*batch=*/17);  // uneven batches, classes mixed
    at::Tensor pooled = at::zeros({dim, dim}, at::kDouble);
    double total = 0;
    for (int64_t c = 0; c < 4; ++c) {
      const auto xc = x.index_select(0, data.y.eq(c).nonzero().squeeze(1));
      const auto mu = xc.mean(0);
      const auto centred = xc - mu;  // second pass
      const auto scatter = at::mm(centred.t(), centred);
      pooled += scatter;
      total += static_cast<double>(xc.size(0));
      CHECK(stats.count(c) == static_cast<double>(xc.size(0)));
      CHECK(all_close(stats.mean(c), mu, 1e-12, 1e-9));
      const auto eye = at::eye(dim, at::kDouble) * 1e-4;
      if (kind == CovarianceKind::full)
        CHECK(all_close(stats.covariance(c), scatter / (xc.size(0) - 1) + eye, 1e-9, 1e-9));
      if (kind == CovarianceKind::diagonal)
        CHECK(all_close(stats.covariance(c), at::diag(scatter.diagonal() / (xc.size(0) - 1)) + eye, 1e-9, 1e-9));
    }
    if (kind == CovarianceKind::shared)
      CHECK(all_close(stats.covariance(0), pooled / (total - 4) + at::eye(dim, at::kDouble) * 1e-4, 1e-9, 1e-9));
  }
}

TEST_CASE("samples reproduce the class mean and covariance within sampling error", "[head][statistics]") {
  const int64_t dim = 4, n = 20000;
  auto data = random_features(400, dim, 11);
  auto stats = statistics_of(data, {}, 64);
  auto gen = make_generator(3, 0);
  const auto s = stats.sample(1, n, gen).to(at::kDouble);
  const auto mu = stats.mean(1), sigma = stats.covariance(1);
  // Standard errors of n = 20000 draws: the sample mean's coordinate i has sd sqrt(S_ii / n);
  // the sample covariance's entry (i, j) has sd sqrt((S_ii S_jj + S_ij^2) / n) (Gaussian data).
  // 5 standard errors: every one of the 4 + 16 checks passes with probability > 1 - 1e-6.
  const auto mean_err = (s.mean(0) - mu).abs();
  const auto mean_tol = (sigma.diagonal() / n).sqrt() * 5;
  CHECK(mean_err.le(mean_tol).all().item<bool>());
  const auto centred = s - s.mean(0);
  const auto cov = at::mm(centred.t(), centred) / (n - 1);
  const auto d = sigma.diagonal();
  const auto cov_tol = ((at::outer(d, d) + sigma.pow(2)) / n).sqrt() * 5;
  CHECK((cov - sigma).abs().le(cov_tol).all().item<bool>());
  // Mean scaling (SLCA's shrink of older classes' means) moves only the mean.
  auto gen2 = make_generator(3, 0);
  const auto shrunk = stats.sample(1, n, gen2, 0.9).to(at::kDouble);
  CHECK(at::allclose(shrunk - s, (mu * -0.1).expand_as(s), 1e-5, 1e-2));
  // Seeded: the same generator state gives the same draws.
  auto g1 = make_generator(7, 0), g2 = make_generator(7, 0);
  CHECK(at::equal(stats.sample(2, 10, g1), stats.sample(2, 10, g2)));
}

TEST_CASE("sampling works for a rank-deficient covariance", "[head][statistics]") {
  // 6-dimensional features that live in a 2-dimensional affine subspace, no ridge: Sigma has
  // rank 2 (a Cholesky factorisation would fail), fewer samples than dimensions for class 1.
  const int64_t dim = 6;
  auto gen = make_generator(1, 0);
  const auto basis = at::randn({2, dim}, gen, at::TensorOptions().dtype(at::kDouble));
  const auto coeff = at::randn({40, 2}, gen, at::TensorOptions().dtype(at::kDouble));
  const auto x = (at::mm(coeff, basis) + 5).to(at::kFloat);
  auto y = at::zeros({40}, at::kLong);
  y.narrow(0, 0, 4).fill_(1);  // class 1: 4 samples in 6 dimensions
  ClassStatistics stats({.covariance = CovarianceKind::full, .ridge = 0.0}, dim);
  stats.begin_task(test::task_ctx(0, true, 1));
  stats.update(x, y);
  for (int64_t c : {0, 1}) {
    auto g = make_generator(2, 0);
    const auto s = stats.sample(c, 500, g).to(at::kDouble);
    REQUIRE(at::isfinite(s).all().item<bool>());
    // Every sample stays in the data's affine subspace: mu + span(basis).
    const auto offset = s - stats.mean(c);
    const auto q = std::get<0>(at::linalg_qr(basis.t()));  // [dim, 2] orthonormal basis
    const auto residual = offset - at::mm(at::mm(offset, q), q.t());
    CHECK(residual.abs().max().item<double>() < 1e-4);
    CHECK(offset.std(0).max().item<double>() > 1e-2);  // and it is not degenerate
  }
}

TEST_CASE("class statistics: memory per class and invalid options", "[head][statistics]") {
  CHECK(ClassStatistics({.covariance = CovarianceKind::full}, 768).bytes_per_class() == (1 + 768 + 768 * 768) * 8);
  CHECK(ClassStatistics({.covariance = CovarianceKind::diagonal}, 768).bytes_per_class() == (1 + 2 * 768) * 8);
  CHECK(ClassStatistics({.covariance = CovarianceKind::shared}, 192).bytes_per_class() == (1 + 192) * 8);
  const auto message = test::error_message<ConfigError>(
      [] { (void)options_from_json<ClassStatisticsOptions>(Json{{"ridge", -1}}, "alignment.statistics"); });
  CHECK_THAT(message, Catch::Contains("alignment.statistics.ridge"));
  CHECK_THAT(test::error_message<ConfigError>(
                 [] { (void)options_from_json<ClassStatisticsOptions>(Json{{"covariance", "low-rank"}}); }),
             Catch::Contains("covariance"));
}
