// GaussianMixture (STAR-Prompt's generative replay) and ClassStatistics' mixture kind.
#include "clprompt/core/seed.hpp"
#include "clprompt/stats/gaussian_mixture.hpp"
#include "clprompt/stats/class_statistics.hpp"
#include "clprompt/io/state_dict.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which Catch's must override.
#include <catch2/catch.hpp>

using namespace clprompt;

namespace {

// 600 points in D = 3 from two well-separated diagonal Gaussians with weights 1/3 and 2/3.
at::Tensor two_clusters(uint64_t seed) {
  auto g = make_generator(seed, 0);
  auto a = at::randn({200, 3}, g, at::kDouble) * 0.5 + at::tensor({5.0, 0.0, 0.0}, at::kDouble);
  auto b = at::randn({400, 3}, g, at::kDouble) * at::tensor({1.0, 2.0, 0.25}, at::kDouble) -
           at::tensor({5.0, 0.0, 0.0}, at::kDouble);
  return at::cat({a, b});
}

}  // namespace

TEST_CASE("EM recovers a known mixture and sampling reproduces it", "[head][mixture]") {
  const auto x = two_clusters(1);
  auto gen = make_generator(2, 0);
  GaussianMixtureOptions options;
  options.components = 2;
  const auto m = fit_gaussian_mixture(x, options, gen);
  REQUIRE(m.components() == 2);
  const int64_t big = m.weights[0].item<double>() > m.weights[1].item<double>() ? 0 : 1;
  CHECK(m.weights[big].item<double>() == Approx(2.0 / 3).margin(0.01));
  CHECK(at::allclose(m.means[big], at::tensor({-5.0, 0.0, 0.0}, at::kDouble), 0.0, 0.3));
  CHECK(at::allclose(m.variances[big].sqrt(), at::tensor({1.0, 2.0, 0.25}, at::kDouble), 0.15, 0.05));
  CHECK(at::allclose(m.means[1 - big], at::tensor({5.0, 0.0, 0.0}, at::kDouble), 0.0, 0.2));
  CHECK(m.iterations >= 1);
  CHECK(std::isfinite(m.log_likelihood));

  const auto s = m.sample(30000, gen);
  CHECK(s.sizes() == at::IntArrayRef({30000, 3}));
  CHECK(s.select(1, 0).lt(0).to(at::kDouble).mean().item<double>() == Approx(2.0 / 3).margin(0.02));
  CHECK(at::allclose(s.mean(0), x.mean(0), 0.0, 0.15));

  SECTION("the same generator state gives the same fit and samples") {
    auto g1 = make_generator(2, 0), g2 = make_generator(2, 0);
    const auto m1 = fit_gaussian_mixture(x, options, g1), m2 = fit_gaussian_mixture(x, options, g2);
    CHECK(at::equal(m1.means, m2.means));
    CHECK(at::equal(m1.sample(5, g1), m2.sample(5, g2)));
  }
  SECTION("more components than points: one per point") {
    options.components = 5;
    const auto few = fit_gaussian_mixture(x.narrow(0, 0, 3), options, gen);
    CHECK(few.components() == 3);
    CHECK(few.variances.min().item<double>() > 0);
  }
  SECTION("bad input is named") {
    CHECK_THROWS_WITH(fit_gaussian_mixture(at::zeros({0, 3}), options, gen), Catch::Contains("[n > 0, D]"));
    options.components = 0;
    CHECK_THROWS_WITH(fit_gaussian_mixture(x, options, gen), Catch::Contains("mixture.components"));
  }
}

TEST_CASE("class statistics with mixtures: fitted per task, sampled, saved", "[head][mixture][statistics]") {
  ClassStatisticsOptions options;
  options.covariance = CovarianceKind::mixture;
  options.mixture.components = 2;
  ClassStatistics stats(options, 3);
  stats.begin_task(test::task_ctx(0));
  const auto x = two_clusters(3);
  stats.update(x.to(at::kFloat), at::zeros({x.size(0)}, at::kLong));
  stats.update(x.narrow(0, 0, 10).to(at::kFloat) + 100, at::ones({10}, at::kLong));
  CHECK_THAT(test::error_message<Error>([&] { stats.sample(0, 4, make_generator(4, 0)); }),
             Catch::Contains("call fit_mixtures()"));
  auto gen = make_generator(4, 0);
  stats.fit_mixtures(gen);
  const auto s0 = stats.sample(0, 20000, make_generator(5, 0));
  CHECK(s0.scalar_type() == at::kFloat);
  CHECK(s0.select(1, 0).lt(0).to(at::kDouble).mean().item<double>() == Approx(2.0 / 3).margin(0.02));
  CHECK(at::allclose(stats.mean(0), x.mean(0), 0.0, 1e-5));  // the diagonal statistics are kept too
  CHECK(stats.sample(1, 100, make_generator(5, 0)).select(1, 0).mean().item<double>() > 90);
  // Mean shrinking (SLCA's) scales the mixture's means.
  CHECK(stats.sample(1, 100, make_generator(5, 0), 0.5).select(1, 0).mean().item<double>() < 60);

  test::TempDir dir;
  auto tensors = state_dict(stats);
  CHECK(tensors.count("mixture_weight_0"));
  ClassStatistics restored(options, 3);
  restored.begin_task(test::task_ctx(0));
  load_state_dict(restored, tensors);
  CHECK(at::equal(restored.sample(0, 7, make_generator(6, 0)), stats.sample(0, 7, make_generator(6, 0))));
}
