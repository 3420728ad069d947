#include <cmath>

#include "clprompt/core/seed.hpp"
#include "clprompt/data/dataset.hpp"
#include "clprompt/learn/learner.hpp"
#include "clprompt/methods/slca.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which Catch's must override.
#include <catch2/catch.hpp>

using namespace clprompt;

namespace {

// Gaussian clusters: class c around its own random centre, anisotropic noise.
struct Clusters {
  at::Tensor centres;
  double noise = 0.8;
  at::Tensor draw(const std::vector<int64_t>& classes, int64_t per_class, uint64_t seed, at::Tensor& labels) const {
    auto gen = make_generator(seed, 1);
    std::vector<at::Tensor> xs, ys;
    for (auto c : classes) {
      xs.push_back(centres[c] + at::randn({per_class, centres.size(1)}, gen) * noise);
      ys.push_back(at::full({per_class}, c, at::kLong));
    }
    labels = at::cat(ys);
    return at::cat(xs);
  }
};

FeatureStream stream_of(const at::Tensor& x, const at::Tensor& y) {
  return [x, y](const FeatureVisitor& visit) {
    for (int64_t b = 0; b < x.size(0); b += 32) {
      const int64_t len = std::min<int64_t>(32, x.size(0) - b);
      visit(x.narrow(0, b, len), y.narrow(0, b, len));
    }
  };
}

double accuracy(SLCAHead& head, const at::Tensor& x, const at::Tensor& y, const TaskContext& ctx) {
  at::NoGradGuard no_grad;
  return head.logits(x, ctx.for_evaluation()).argmax(1).eq(y).to(at::kDouble).mean().item<double>();
}

std::shared_ptr<TensorDataset> texture_classes(int64_t classes, int64_t per_class, uint64_t seed) {
  auto textures = at::randint(0, 200, {classes, 1, 8, 8}, make_generator(99, 0), at::TensorOptions().dtype(at::kLong));
  auto noise = at::randint(0, 40, {classes * per_class, 1, 8, 8}, make_generator(seed, 0),
                           at::TensorOptions().dtype(at::kLong));
  auto labels = at::arange(classes, at::kLong).repeat_interleave(per_class);
  return std::make_shared<TensorDataset>((textures.index_select(0, labels) + noise).to(at::kByte), labels);
}

}  // namespace

TEST_CASE("logit normalisation matches SLCA's formula", "[head][logit_norm]") {
  // Tasks of 2, 3 and 1 classes.
  const auto ctx = TaskContext::for_task(2, 3, {2, 3, 1}, false);
  const auto logits = at::randn({4, 6}, make_generator(1, 0), at::TensorOptions().dtype(at::kDouble));
  const auto out = normalize_logits(logits, ctx, 0.1, 1e-7);
  for (int64_t b = 0; b < 4; ++b) {
    auto l = logits[b];
    const double n0 = std::sqrt(l.narrow(0, 0, 2).pow(2).sum().item<double>()) + 1e-7;
    const double n1 = std::sqrt(l.narrow(0, 2, 3).pow(2).sum().item<double>()) + 1e-7;
    const double n2 = std::abs(l[5].item<double>()) + 1e-7;
    const double n = (n0 + n1 + n2) / 3;
    CHECK(at::allclose(out[b], l / n / 0.1, 1e-12, 1e-12));
  }
  // The wrapper: raw logits, unchanged training loss by default, normalised alignment loss.
  const BackboneDims dims{8, 1, 1};
  LogitNormalized<LinearHead> head({}, std::make_shared<LinearHead>(LinearHeadOptions{}, dims));
  for (int64_t t = 0; t < 2; ++t) head.begin_task(test::task_ctx(t, true, 2));
  const auto x = at::randn({5, 8}), y = at::tensor({2, 3, 2, 3, 3}, at::kLong);
  const auto train_ctx = test::task_ctx(1, true, 2);
  const auto raw = head.logits(x, train_ctx);
  CHECK(at::equal(raw, head.inner().logits(x, train_ctx)));
  CHECK(at::allclose(head.loss(raw, y, train_ctx), head.inner().loss(raw, y, train_ctx)));
  const auto y_all = at::tensor({0, 1, 2, 3, 0}, at::kLong);
  CHECK(at::allclose(head.alignment_loss(raw, y_all, train_ctx),
                     at::cross_entropy_loss(normalize_logits(raw, train_ctx, 0.1), y_all)));
  CHECK_THAT(test::error_message<ConfigError>([] { (void)options_from_json<LogitNormOptions>(Json{{"temperature", 0}}, "h"); }),
             Catch::Contains("h.temperature"));
}

namespace {
// Accuracy on all 6 classes before and after the alignment that follows task 3, for a head whose
// last task's logits were inflated by `scale` and `bias` after training.
std::pair<double, double> biased_alignment(double scale, double bias, SLCAHeadOptions options,
                                           std::vector<double>* losses = nullptr, double spread = 2.0,
                                           double noise = 0.8) {
  seed_everything(4);
  const int64_t dim = 8;
  Clusters clusters{at::randn({6, dim}, make_generator(8, 0)) * spread, noise};
  const BackboneDims dims{dim, 1, 1};
  auto head = make_slca_head(options, dims);
  at::Tensor y_test;
  const auto x_test = clusters.draw({0, 1, 2, 3, 4, 5}, 100, 77, y_test);
  std::pair<double, double> result;
  for (int64_t t = 0; t < 3; ++t) {
    const auto ctx = test::task_ctx(t, true, 3);
    head->begin_task(ctx);
    at::Tensor y;
    const auto x = clusters.draw({2 * t, 2 * t + 1}, 200, 10 + static_cast<uint64_t>(t), y);
    if (t == 2) {
      // A classifier as a fine-tuned one ends up: class centres as weights, and the last task's
      // logits inflated (the bias toward the most recently learned classes).
      at::NoGradGuard no_grad;
      auto heads = head->inner().inner().heads;
      for (int64_t k = 0; k < 3; ++k) {
        auto lin = heads->ptr<torch::nn::LinearImpl>(k);
        lin->weight.copy_(clusters.centres.narrow(0, 2 * k, 2) * (k == 2 ? scale : 1.0));
        lin->bias.fill_(k == 2 ? bias : 0.0);
      }
    }
    const double before = accuracy(*head, x_test, y_test, ctx);
    head->consolidate(ctx, stream_of(x, y));
    const double after = accuracy(*head, x_test, y_test, ctx);
    if (t == 0) CHECK(head->last_alignment_loss().empty());  // no alignment after the first task
    if (t == 2) result = {before, after};
  }
  if (losses) *losses = head->last_alignment_loss();
  return result;
}
}  // namespace

TEST_CASE("classifier alignment repairs a head biased toward the last task", "[head][aligned]") {
  std::vector<double> losses;
  // Class centres of norm ~1.4 in 8 dimensions, noise sd 0.2; the last task's weights doubled and
  // its biases +4: almost every test sample goes to the last task's classes before alignment
  // (0.33 of 6 classes); aligning on sampled features of all classes repairs most of it (0.78).
  const auto [before, after] = biased_alignment(2.0, 4.0, {}, &losses, /*spread=*/0.5, /*noise=*/0.2);
  INFO("accuracy before alignment " << before << ", after " << after);
  CHECK(before < 0.4);
  CHECK(after > before + 0.3);
  CHECK(after > 0.7);
  REQUIRE(losses.size() == 5);
  CHECK(losses.back() < losses.front());
}

TEST_CASE("an aligned head round-trips through a checkpoint with its statistics", "[head][aligned]") {
  test::TempDir dir;
  auto make = [] {
    auto vit = std::make_shared<VisionTransformer>(test::tiny_vit(1));
    SLCAHeadOptions options;
    options.alignment.epochs = 2;
    options.alignment.samples_per_class = 32;
    return std::make_shared<SLCA>(vit, std::make_shared<NoPrompts>(), make_slca_head(options, dims_of(*vit)),
                                  ParameterRoles{.backbone = LearningRole::slow});
  };
  auto model = make();
  for (int64_t t = 0; t < 2; ++t) {
    const auto ctx = test::task_ctx(t, true, 3);
    model->begin_task(ctx);
    const auto x = at::randn({40, 16}, make_generator(20 + static_cast<uint64_t>(t), 0));
    const auto y = at::arange(2 * t, 2 * t + 2, at::kLong).repeat(20);
    model->consolidate(stream_of(x, y));
    model->end_task();
  }
  REQUIRE(model->head().last_alignment_loss().size() == 2);
  model->save(dir / "slca.safetensors");
  auto loaded = make();
  loaded->load(dir / "slca.safetensors");
  const auto features = at::randn({7, 16});
  const auto ctx = model->context().for_evaluation();
  CHECK(at::equal(model->head().logits(features, ctx), loaded->head().logits(features, ctx)));
  for (int64_t c = 0; c < 4; ++c) {
    CHECK(loaded->head().statistics().count(c) == 20);
    CHECK(at::equal(model->head().statistics().mean(c), loaded->head().statistics().mean(c)));
    CHECK(at::equal(model->head().statistics().covariance(c), loaded->head().statistics().covariance(c)));
  }
  const auto images = at::rand({3, 3, 8, 8});
  CHECK(at::equal(model->predict(images), loaded->predict(images)));
}

TEST_CASE("invalid alignment options name the field", "[head][aligned]") {
  auto error = [](const Json& j) {
    return test::error_message<ConfigError>(
        [&] { (void)options_from_json<SLCAHeadOptions>(j, "method_options.head"); });
  };
  CHECK_THAT(error(Json{{"alignment", {{"epochs", -1}}}}), Catch::Contains("method_options.head.alignment.epochs"));
  CHECK_THAT(error(Json{{"alignment", {{"samples_per_class", 0}}}}),
             Catch::Contains("method_options.head.alignment.samples_per_class"));
  CHECK_THAT(error(Json{{"alignment", {{"statistics", {{"covariance", "banded"}}}}}}),
             Catch::Contains("method_options.head.alignment.statistics.covariance"));
  CHECK_THAT(error(Json{{"logit_norm", {{"temperature", -0.1}}}}),
             Catch::Contains("method_options.head.logit_norm.temperature"));
  CHECK_THAT(error(Json{{"alignmnt", Json::object()}}), Catch::Contains("method_options.head.alignmnt"));
}

TEST_CASE("SLCA runs end to end through the Learner on tiny data", "[head][aligned][slca]") {
  seed_everything(2);
  auto train = texture_classes(4, 16, 1), test_set = texture_classes(4, 6, 2);
  ScenarioOptions so;
  so.num_tasks = 2;
  Scenario scenario(train, test_set, so, 3);
  auto vit = std::make_shared<VisionTransformer>(test::tiny_vit(1));
  SLCAHeadOptions head;
  head.alignment.samples_per_class = 64;
  auto model = make_slca(vit, head);
  static_assert(SLCA::head_consolidates);
  const auto groups = model->parameter_groups();
  CHECK(groups.slow_elements() > 0);  // the slow learner: the backbone has its own lr group
  auto options = slca_train_options();
  options.epochs = 2;
  options.batch_size = 16;
  Learner<SLCA> learner(*model, scenario, options, TransformOptions{}, 3);
  LearnerHooks hooks;
  hooks.log = nullptr;
  hooks.progress_bar = false;
  const auto results = learner.run(hooks);
  REQUIRE(results.accuracy.size() == 2);
  for (double a : results.accuracy.back()) CHECK(std::isfinite(a));
  CHECK(model->head().last_alignment_loss().size() == 5);
  CHECK(model->head().statistics().count(3) == 16);
}

TEST_CASE("decorators keep every hook in any order: LogitNormalized<Aligned<LinearHead>> still aligns",
          "[head][aligned][decorator]") {
  using Stacked = LogitNormalized<Aligned<LinearHead>>;
  static_assert(check_classifier_head<Stacked>());
  static_assert(clprompt::detail::HeadHasConsolidate<Stacked>);        // forwarded from Aligned
  static_assert(clprompt::detail::HeadHasAlignmentLoss<Stacked>);      // its own
  static_assert(!clprompt::detail::HeadHasEndTask<Stacked>);           // none of the wrapped heads has one
  static_assert(!clprompt::detail::HeadHasAlignmentLoss<Aligned<LinearHead>>);
  static_assert(clprompt::detail::HeadHasAlignmentLoss<Aligned<LogitNormalized<LinearHead>>>);
  seed_everything(3);
  const BackboneDims dims{4, 1, 1};
  AlignmentOptions alignment;
  alignment.epochs = 2;
  alignment.samples_per_class = 8;
  auto aligned = std::make_shared<Aligned<LinearHead>>(alignment, std::make_shared<LinearHead>(LinearHeadOptions{}, dims), dims);
  auto head = std::make_shared<Stacked>(LogitNormOptions{}, aligned);
  for (int64_t t = 0; t < 2; ++t) {
    const auto ctx = test::task_ctx(t, true, 2);
    head->begin_task(ctx);
    const auto y = at::arange(ctx.class_begin, ctx.class_end, at::kLong).repeat(6);
    head->consolidate(ctx, stream_of(at::randn({y.size(0), 4}) + y.unsqueeze(1).to(at::kFloat), y));
  }
  CHECK(aligned->last_alignment_loss().size() == 2);  // the second task was aligned through the outer decorator
  CHECK(aligned->statistics().num_classes() == 4);
}
