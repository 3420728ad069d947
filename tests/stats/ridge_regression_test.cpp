#include <vector>

#include "clprompt/core/seed.hpp"
#include "clprompt/stats/ridge_regression.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which Catch's must override.
#include <catch2/catch.hpp>

using namespace clprompt;

namespace {

// Rows of a noisy linear map of random features to 3 classes (labels = argmax), as one-hot targets.
struct Rows {
  at::Tensor h, labels, y;
};
Rows rows(int64_t n, int64_t m, int64_t classes, uint64_t seed) {
  auto gen = make_generator(seed, 1);
  Rows r;
  r.h = at::relu(at::randn({n, m}, gen, at::kDouble));
  r.labels = at::matmul(r.h, at::randn({m, classes}, gen, at::kDouble)).argmax(1);
  r.y = at::zeros({n, classes}, at::kDouble).scatter_(1, r.labels.unsqueeze(1), 1.0);
  return r;
}

// The reference's optimise_ridge_parameter as written (RanPAC.py:119-130): one direct solve per λ.
std::vector<double> reference_errors(const at::Tensor& h, const at::Tensor& y, const RidgeOptions& o) {
  const auto fit = static_cast<int64_t>(static_cast<double>(h.size(0)) * o.fit_fraction);
  const auto hf = h.narrow(0, 0, fit), hv = h.narrow(0, fit, h.size(0) - fit);
  const auto q = at::matmul(hf.t(), y.narrow(0, 0, fit)), g = at::matmul(hf.t(), hf);
  std::vector<double> errors;
  for (double lambda : o.lambdas) {
    const auto w = at::linalg_solve(g + lambda * at::eye(g.size(0), at::kDouble), q).t();
    errors.push_back((at::matmul(hv, w.t()) - y.narrow(0, fit, h.size(0) - fit)).pow(2).mean().item<double>());
  }
  return errors;
}

}  // namespace

TEST_CASE("the ridge system is solved as a direct solve does, in place on the CPU", "[stats][ridge]") {
  const auto r = rows(60, 12, 3, 1);
  const auto g = at::matmul(r.h.t(), r.h), c = at::matmul(r.h.t(), r.y);
  at::Tensor work;
  for (double lambda : {1e-6, 0.1, 10.0}) {
    INFO("lambda " << lambda);
    const auto expected = at::linalg_solve(g + lambda * at::eye(12, at::kDouble), c);
    const auto got = solve_ridge_system(g, c, lambda, work);
    CHECK(at::allclose(got, expected, 1e-10, 1e-12));
    // (G + λI) X = C holds.
    CHECK(at::allclose(at::matmul(g + lambda * at::eye(12, at::kDouble), got), c, 1e-9, 1e-10));
  }
  CHECK(work.sizes() == g.sizes());  // one work matrix, reused
  // G + λI without a Cholesky factor (rounding can leave a Gram matrix slightly indefinite) is
  // still solved, by LU as the reference solves every system.
  const auto indefinite = at::diag(at::tensor({1.0, -1e-6}, at::kDouble));
  const auto x = solve_ridge_system(indefinite, at::ones({2, 1}, at::kDouble), 1e-8);
  CHECK(x[0][0].item<double>() == Approx(1.0 / (1.0 + 1e-8)));
  CHECK(x[1][0].item<double>() == Approx(1.0 / (-1e-6 + 1e-8)));
}

TEST_CASE("lambda is chosen as the reference's 17 direct solves choose it, primal and dual", "[stats][ridge]") {
  RidgeOptions options;
  // Primal: more fit rows (80) than features (10); dual: fewer (40) than features (90).
  for (auto [n, m] : {std::pair<int64_t, int64_t>{100, 10}, std::pair<int64_t, int64_t>{50, 90}}) {
    INFO(n << " rows of " << m << " features");
    const auto r = rows(n, m, 4, 7 + static_cast<uint64_t>(m));
    const auto expected = reference_errors(r.h, r.y, options);
    const auto selection = select_ridge_lambda(r.h, r.y, options);
    REQUIRE(selection.errors.size() == expected.size());
    // Relative 1e-5: with fewer rows than features, G_fit + 1e-8 I has a condition number near 1e10,
    // so the reference's own direct solve is only that accurate in double.
    for (std::size_t i = 0; i < expected.size(); ++i) CHECK(selection.errors[i] == Approx(expected[i]).epsilon(1e-5));
    const auto best = std::min_element(expected.begin(), expected.end()) - expected.begin();
    CHECK(selection.lambda == options.lambdas[static_cast<std::size_t>(best)]);
  }
  // The candidates and the split are options, and a split with an empty side is refused.
  options.lambdas = {1e3};
  CHECK(select_ridge_lambda(rows(20, 5, 2, 3).h, rows(20, 5, 2, 3).y, options).lambda == 1e3);
  CHECK_THAT(test::error_message<ShapeError>([&] { select_ridge_lambda(rows(1, 5, 2, 3).h, rows(1, 5, 2, 3).y, options); }),
             Catch::Contains("both sides"));
  options.fit_fraction = 1.0;
  CHECK_THAT(test::error_message<ConfigError>([&] { options.validate("head_options.ridge"); }),
             Catch::Contains("'head_options.ridge.fit_fraction'"));
}

TEST_CASE("G and C accumulated task by task equal one pass over all the data", "[stats][ridge]") {
  const auto first = rows(30, 8, 2, 11), second = rows(40, 8, 3, 12);
  RidgeRegression ridge(8);
  ridge.grow({2});
  ridge.accumulate(first.h.narrow(0, 0, 17), first.labels.narrow(0, 0, 17));  // any batching
  ridge.accumulate(first.h.narrow(0, 17, 13), first.labels.narrow(0, 17, 13));
  ridge.grow({2, 5});
  ridge.accumulate(second.h, second.labels + 2);  // task 2's classes are 2, 3, 4
  CHECK(ridge.classes() == 5);
  const auto all_h = at::cat({first.h, second.h}), all_labels = at::cat({first.labels, second.labels + 2});
  const auto all_y = at::zeros({70, 5}, at::kDouble).scatter_(1, all_labels.unsqueeze(1), 1.0);
  CHECK(at::allclose(ridge.gram(), at::matmul(all_h.t(), all_h), 1e-12, 1e-12));
  CHECK(at::allclose(ridge.moments(), at::matmul(all_h.t(), all_y), 1e-12, 1e-12));
  const auto w = ridge.solve(0.5);
  const auto direct = at::linalg_solve(at::matmul(all_h.t(), all_h) + 0.5 * at::eye(8, at::kDouble),
                                       at::matmul(all_h.t(), all_y)).t();
  CHECK(at::allclose(w, direct, 1e-10, 1e-12));
  CHECK_THAT(test::error_message<ShapeError>([&] { ridge.accumulate(first.h, first.labels + 9); }),
             Catch::Contains("outside the 5 classes"));
}
