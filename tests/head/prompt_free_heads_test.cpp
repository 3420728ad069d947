// RanPACHead and PrototypeHead against computations written out here from the references'
// definitions (RanPAC.py replace_fc; RevisitingCIL simplecil.py replace_fc + CosineLinear).
#include <vector>

#include "clprompt/core/seed.hpp"
#include "clprompt/head/concepts.hpp"
#include "clprompt/head/prototype.hpp"
#include "clprompt/head/ranpac.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which Catch's must override.
#include <catch2/catch.hpp>

using namespace clprompt;

namespace {

constexpr int64_t kDim = 6;
const BackboneDims dims{kDim, 2, 2};

// Features of task t's two classes (labels 2t, 2t + 1) around class centres.
struct TaskData {
  at::Tensor f, y;
};
TaskData task_data(int64_t t, int64_t per_class, uint64_t seed) {
  auto gen = make_generator(seed, 1);
  std::vector<at::Tensor> fs, ys;
  for (int64_t c = 2 * t; c < 2 * t + 2; ++c) {
    auto centre = at::zeros({kDim});
    centre[c % kDim] = 3.0;
    fs.push_back(centre + at::randn({per_class, kDim}, gen));
    ys.push_back(at::full({per_class}, c, at::kLong));
  }
  return {at::cat(fs), at::cat(ys)};
}

FeatureStream stream_of(const TaskData& d) {
  return [d](const FeatureVisitor& visit) {
    for (int64_t b = 0; b < d.f.size(0); b += 7) {
      const int64_t len = std::min<int64_t>(7, d.f.size(0) - b);
      visit(d.f.narrow(0, b, len), d.y.narrow(0, b, len));
    }
  };
}

}  // namespace

TEST_CASE("the prompt-free heads satisfy the ClassifierHead contract", "[head][contract]") {
  STATIC_REQUIRE(check_classifier_head<RanPACHead<LinearHead>>());
  STATIC_REQUIRE(check_classifier_head<PrototypeHead<LinearHead>>());
  STATIC_REQUIRE(clprompt::detail::HeadHasConsolidate<RanPACHead<LinearHead>>);
  STATIC_REQUIRE(clprompt::detail::HeadHasConsolidate<PrototypeHead<LinearHead>>);
}

TEST_CASE("RanPACHead: projection, Gram statistics over tasks and the ridge classifier", "[head][ranpac]") {
  RanPACOptions options;
  options.projection_dim = 40;
  options.seed = 5;
  auto head = std::make_shared<RanPACHead<LinearHead>>(options, std::make_shared<LinearHead>(LinearHeadOptions{}, dims), dims);
  const auto w_rand = head->named_buffers()["projection"];
  REQUIRE(w_rand.sizes() == std::vector<int64_t>{kDim, 40});
  // W_rand ~ N(0, 1) (RanPAC.py setup_RP: torch.randn(in_features, M)).
  CHECK(std::abs(w_rand.mean().item<double>()) < 0.25);
  CHECK(w_rand.std().item<double>() == Approx(1.0).margin(0.15));

  std::vector<TaskData> tasks{task_data(0, 25, 1), task_data(1, 30, 2)};
  at::Tensor all_h, all_y;
  for (int64_t t = 0; t < 2; ++t) {
    const auto ctx = test::task_ctx(t, true, 2);
    head->begin_task(ctx);
    // In training the wrapped linear head answers (what a method trains, it trains under it).
    const auto probe = tasks[static_cast<std::size_t>(t)].f.narrow(0, 0, 3);
    CHECK(at::equal(head->logits(probe, ctx), head->inner().logits(probe, ctx)));
    head->consolidate(ctx, stream_of(tasks[static_cast<std::size_t>(t)]));
    // h = ReLU(f W_rand), by a loop over rows and columns.
    const auto& f = tasks[static_cast<std::size_t>(t)].f;
    auto h = at::zeros({f.size(0), 40}, at::kDouble);
    for (int64_t i = 0; i < f.size(0); ++i)
      for (int64_t j = 0; j < 40; ++j) {
        double s = 0;
        for (int64_t k = 0; k < kDim; ++k) s += f[i][k].item<double>() * w_rand[k][j].item<double>();
        h[i][j] = std::max(s, 0.0);
      }
    all_h = t == 0 ? h : at::cat({all_h, h});
    all_y = t == 0 ? tasks[0].y : at::cat({all_y, tasks[1].y});
  }
  // G and C after two tasks equal one pass over both tasks' rows.
  const auto onehot = at::zeros({all_h.size(0), 4}, at::kDouble).scatter_(1, all_y.unsqueeze(1), 1.0);
  CHECK(at::allclose(head->ridge().gram(), at::matmul(all_h.t(), all_h), 1e-5, 1e-4));
  CHECK(at::allclose(head->ridge().moments(), at::matmul(all_h.t(), onehot), 1e-5, 1e-4));
  // λ is a candidate, and the evaluation logits are h ((G + λI)⁻¹ C) over the 4 seen classes.
  const double lambda = head->lambda();
  CHECK(std::find(options.ridge.lambdas.begin(), options.ridge.lambdas.end(), lambda) != options.ridge.lambdas.end());
  CHECK(head->last_selection().errors.size() == options.ridge.lambdas.size());
  const auto w = at::linalg_solve(at::matmul(all_h.t(), all_h) + lambda * at::eye(40, at::kDouble),
                                  at::matmul(all_h.t(), onehot));
  const auto eval_ctx = test::task_ctx(1, false, 2);
  const auto logits = head->logits(tasks[1].f, eval_ctx);
  REQUIRE(logits.sizes() == std::vector<int64_t>{60, 4});
  const auto expected_logits = at::matmul(all_h.narrow(0, 50, 60), w);
  INFO("lambda " << lambda << ", largest difference " << (logits.to(at::kDouble) - expected_logits).abs().max().item<double>()
                 << " of logits up to " << expected_logits.abs().max().item<double>());
  CHECK(at::allclose(logits.to(at::kDouble), expected_logits, 1e-3, 1e-3));
  // Separable clusters: the closed-form classifier gets them right.
  CHECK(logits.argmax(1).eq(tasks[1].y).to(at::kDouble).mean().item<double>() > 0.9);
}

TEST_CASE("RanPACHead without projection regresses the features themselves", "[head][ranpac]") {
  RanPACOptions options;
  options.projection_dim = 0;
  RanPACHead<LinearHead> head(options, std::make_shared<LinearHead>(LinearHeadOptions{}, dims), dims);
  const auto ctx = test::task_ctx(0, true, 1);
  head.begin_task(ctx);
  const auto d = task_data(0, 20, 3);
  head.consolidate(ctx, stream_of(d));
  const auto fd = d.f.to(at::kDouble);
  CHECK(at::allclose(head.ridge().gram(), at::matmul(fd.t(), fd), 1e-9, 1e-9));
  CHECK_THAT(test::error_message<ConfigError>([] {
               RanPACOptions o;
               o.projection_dim = -1;
               o.validate("head_options");
             }),
             Catch::Contains("'head_options.projection_dim'"));
}

TEST_CASE("PrototypeHead: class means and cosine logits", "[head][prototype]") {
  PrototypeHead<LinearHead> head({}, std::make_shared<LinearHead>(LinearHeadOptions{}, dims), dims);
  std::vector<TaskData> tasks{task_data(0, 9, 4), task_data(1, 11, 5)};
  for (int64_t t = 0; t < 2; ++t) {
    const auto ctx = test::task_ctx(t, true, 2);
    head.begin_task(ctx);
    CHECK(at::equal(head.logits(tasks[0].f, ctx), head.inner().logits(tasks[0].f, ctx)));
    head.consolidate(ctx, stream_of(tasks[static_cast<std::size_t>(t)]));
  }
  const auto eval_ctx = test::task_ctx(1, false, 2);
  // Means by a loop over the rows of each class.
  auto means = at::zeros({4, kDim}, at::kDouble);
  for (int64_t c = 0; c < 4; ++c) {
    const auto& d = tasks[static_cast<std::size_t>(c / 2)];
    int64_t n = 0;
    for (int64_t i = 0; i < d.y.size(0); ++i)
      if (d.y[i].item<int64_t>() == c) {
        means[c] += d.f[i].to(at::kDouble);
        ++n;
      }
    means[c] /= static_cast<double>(n);
  }
  CHECK(at::allclose(head.prototypes(eval_ctx), means, 1e-12, 1e-12));
  // cos(f, mean_c) for each row and class.
  const auto f = tasks[1].f.narrow(0, 0, 5);
  const auto logits = head.logits(f, eval_ctx);
  REQUIRE(logits.sizes() == std::vector<int64_t>{5, 4});
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t c = 0; c < 4; ++c) {
      const auto a = f[i].to(at::kDouble), b = means[c];
      const double cosine = (a * b).sum().item<double>() / (a.norm().item<double>() * b.norm().item<double>());
      CHECK(logits[i][c].item<double>() == Approx(cosine).margin(1e-6));
    }
}
