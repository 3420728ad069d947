// PrototypeKeys (STAR-Prompt's second level) and the PrototypeSource contract.
#include <cmath>
#include <memory>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/core/seed.hpp"
#include "clprompt/io/state_dict.hpp"
#include "clprompt/methods/star_prompt.hpp"
#include "clprompt/prototypes/class_mean_prototypes.hpp"
#include "clprompt/selector/prototype_keys.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which Catch's must override.
#include <catch2/catch.hpp>

using namespace clprompt;

namespace {

// A user-written PrototypeSource: class c's key is the basis vector e_c of R^D, matched against
// the backbone's query. It satisfies the contract with nothing but the documented members.
struct BasisSource : torch::nn::Module {
  static constexpr clprompt::QuerySource query_source = clprompt::QuerySource::backbone;
  explicit BasisSource(int64_t dim) : dim(dim) {}
  int64_t key_dim() const { return dim; }
  void begin_task(const TaskContext&) {}
  at::Tensor prototypes(const TaskContext& ctx, const FeatureStream&) {
    return at::eye(dim).narrow(0, ctx.class_begin, ctx.task_classes());
  }
  std::string description() const { return "basis vectors"; }
  int64_t dim;
};
static_assert(check_prototype_source<BasisSource>());

// Not a source: no description(), no query for a source that does not use the backbone's.
struct NoDescription : torch::nn::Module {
  static constexpr clprompt::QuerySource query_source = clprompt::QuerySource::own;
  int64_t key_dim() const { return 4; }
  void begin_task(const TaskContext&) {}
  at::Tensor prototypes(const TaskContext&, const FeatureStream&) { return {}; }
};
static_assert(!PrototypeSource<NoDescription>);
static_assert(!clprompt::detail::SourceQueryIsDefined<NoDescription>);

const FeatureStream kNoData = [](const FeatureVisitor&) {};

BackboneDims dims16(int64_t depth = 2) { return {16, depth, 2}; }

// Queries close to key e_c (plus a little noise), one row per class in `classes`.
at::Tensor queries_near(const std::vector<int64_t>& classes, int64_t dim = 16) {
  auto q = 0.05 * at::randn({static_cast<int64_t>(classes.size()), dim}, make_generator(5, 0));
  for (std::size_t i = 0; i < classes.size(); ++i) q[static_cast<int64_t>(i)][classes[i]] += 3.0;
  return q;
}

void zero_attention(torch::nn::Module& selector) {
  at::NoGradGuard no_grad;
  for (auto& item : selector.named_parameters())
    if (item.key().rfind("a_", 0) == 0) item.value().zero_();
}

}  // namespace

TEST_CASE("prototype keys select the class whose key matches the query, in every layer", "[selector][star]") {
  seed_everything(1);
  PrototypeKeys<BasisSource> selector({}, dims16(), std::make_shared<BasisSource>(16));
  static_assert(PrototypeKeys<BasisSource>::query_source == clprompt::QuerySource::backbone);
  selector.begin_task(test::task_ctx(0));
  selector.prepare_task(test::task_ctx(0), kNoData);
  zero_attention(selector);  // softmax(a) uniform: w_c = 5 cos(q, key_c)
  auto q = queries_near({1, 0});
  CHECK(at::equal(selector.select_classes(q, test::task_ctx(0, false)), at::tensor({1, 1, 0, 0}, at::kLong).view({2, 2})));

  SECTION("the residual is w · p of the chosen class, w = 5 cos(q ⊙ softmax(a), key)") {
    const auto s = selector.select(q, test::task_ctx(0, false));
    REQUIRE(s.prompts.layers.size() == 2);
    const at::Tensor p = selector.named_parameters()["p_0"];  // [layers, C, D]
    for (int64_t l = 0; l < 2; ++l) {
      const double w = 5.0 * q[0][1].item<double>() / q[0].norm().item<double>();
      CHECK(at::allclose(s.prompts.layers[static_cast<std::size_t>(l)].value_residual[0], w * p[l][1], 1e-5, 1e-6));
    }
    CHECK_FALSE(s.aux_loss.defined());  // no orthogonality term on the first task
    // Without gradient the chosen prompts are gathered instead of multiplied by the one-hot weights.
    at::NoGradGuard no_grad;
    const auto gathered = selector.select(q, test::task_ctx(0, false));
    for (std::size_t l = 0; l < 2; ++l)
      CHECK(at::allclose(gathered.prompts.layers[l].value_residual, s.prompts.layers[l].value_residual, 1e-5, 1e-6));
  }
  SECTION("later tasks add classes; evaluation chooses among all seen classes") {
    selector.end_task(test::task_ctx(0, false));
    selector.begin_task(test::task_ctx(1));
    selector.prepare_task(test::task_ctx(1), kNoData);
    zero_attention(selector);
    const auto chosen = selector.select_classes(queries_near({2, 3, 0}), test::task_ctx(1, false));
    CHECK(at::equal(chosen.select(1, 0), at::tensor({2, 3, 0}, at::kLong)));
    CHECK(at::equal(selector.keys(test::task_ctx(1, false)), at::eye(16).narrow(0, 0, 4)));
  }
  SECTION("the attention vectors a_l re-weight the query's dimensions before the match") {
    // Query between keys 0 and 1; a_l favouring dimension 0 in layer 0 for class 0 picks class 0.
    auto between = at::zeros({1, 16});
    between[0][0] = 1.0;
    between[0][1] = 1.2;
    {
      at::NoGradGuard no_grad;
      selector.named_parameters()["a_0"][0][0][0] = 10.0;
    }
    const auto chosen = selector.select_classes(between, test::task_ctx(0, false));
    CHECK(chosen[0][0].item<int64_t>() == 0);
    CHECK(chosen[0][1].item<int64_t>() == 1);
  }
}

TEST_CASE("semantic residuals enter only the configured layers, as a shift of every attention value",
          "[selector][star]") {
  seed_everything(2);
  auto vit = std::make_shared<VisionTransformer>(test::tiny_vit(3));
  PrototypeKeysOptions options;
  options.layers = {1};
  PrototypeKeys<BasisSource> selector(options, dims_of(*vit), std::make_shared<BasisSource>(16));
  selector.begin_task(test::task_ctx(0));
  selector.prepare_task(test::task_ctx(0), kNoData);
  const auto images = at::randn({1, 3, 8, 8}, make_generator(3, 0));
  const auto selection = selector.select(vit->query(images), test::task_ctx(0, false));
  CHECK(selection.prompts.find_layer(0) == nullptr);
  REQUIRE(selection.prompts.find_layer(1) != nullptr);
  CHECK(selection.prompts.find_layer(2) == nullptr);
  const auto s = selection.prompts.find_layer(1)->value_residual;
  REQUIRE(s.sizes() == at::IntArrayRef({1, 16}));
  CHECK(s.abs().sum().item<double>() > 0);

  // Attention rows sum to one, so adding s to every value adds W_proj s to every token after the
  // attention branch of layer 1: the same as a bias shift of that layer's output projection
  // (reference: mammoth vision_transformer.py ResidualPromptAttention). Layers 0 and 2 untouched.
  auto shifted = std::make_shared<VisionTransformer>(test::tiny_vit(3));
  load_state_dict(*shifted, state_dict(*vit));
  {
    at::NoGradGuard no_grad;
    auto& proj = shifted->blocks->ptr<clprompt::detail::Block>(1)->attn->proj;
    proj->bias.add_(at::matmul(proj->weight, s[0]));
  }
  at::NoGradGuard no_grad;
  CHECK(at::allclose(vit->forward(images, selection.prompts), shifted->forward(images, {}), 1e-5, 1e-5));
  CHECK_FALSE(at::allclose(vit->forward(images, selection.prompts), vit->forward(images, {}), 1e-5, 1e-5));
}

TEST_CASE("gradients follow the reference: past classes frozen, straight-through selection",
          "[selector][star]") {
  seed_everything(3);
  for (const bool straight_through : {true, false}) {
    DYNAMIC_SECTION("straight_through = " << straight_through) {
      PrototypeKeysOptions options;
      options.straight_through = straight_through;
      PrototypeKeys<BasisSource> selector(options, dims16(), std::make_shared<BasisSource>(16));
      selector.begin_task(test::task_ctx(0));
      selector.prepare_task(test::task_ctx(0), kNoData);
      selector.end_task(test::task_ctx(0, false));
      selector.begin_task(test::task_ctx(1));
      selector.prepare_task(test::task_ctx(1), kNoData);
      auto params = selector.named_parameters();
      CHECK_FALSE(params["p_0"].requires_grad());
      CHECK_FALSE(params["a_0"].requires_grad());
      REQUIRE(params["p_1"].requires_grad());

      const auto q = queries_near({2, 2});  // both samples choose current class 2 (local row 0)
      REQUIRE(at::equal(selector.select_classes(q, test::task_ctx(1)), at::full({2, 2}, 2, at::kLong)));
      const auto selection = selector.select(q, test::task_ctx(1));
      at::Tensor loss = selection.aux_loss;
      for (const auto& l : selection.prompts.layers) loss = loss + l.value_residual.pow(2).sum();
      loss.backward();
      const auto gp = params["p_1"].grad(), ga = params["a_1"].grad();
      // Only the chosen class's prompt gets the residual's gradient (plus the ortho term for both).
      CHECK(gp.select(1, 0).abs().sum().item<double>() > 0);
      // a of the unselected current class: the reference's in-place masking lets the gradient in.
      const double unselected_a = ga.select(1, 1).abs().sum().item<double>();
      if (straight_through) CHECK(unselected_a > 1e-8);
      else CHECK(unselected_a == 0.0);
      CHECK(ga.select(1, 0).abs().sum().item<double>() > 0);
    }
  }
}

TEST_CASE("the orthogonality loss keeps new prompts unit-norm and orthogonal to past ones", "[selector][star]") {
  seed_everything(4);
  PrototypeKeysOptions options;
  options.ortho_weight = 10.0;
  PrototypeKeys<BasisSource> selector(options, dims16(), std::make_shared<BasisSource>(16));
  selector.begin_task(test::task_ctx(0));
  selector.prepare_task(test::task_ctx(0), kNoData);
  CHECK_FALSE(selector.select(queries_near({0}), test::task_ctx(0)).aux_loss.defined());
  selector.end_task(test::task_ctx(0, false));
  selector.begin_task(test::task_ctx(1));
  selector.prepare_task(test::task_ctx(1), kNoData);
  const auto aux = selector.select(queries_near({2}), test::task_ctx(1)).aux_loss;
  REQUIRE(aux.defined());
  auto params = selector.named_parameters();
  double expected = 0;
  for (int64_t l = 0; l < 2; ++l) {
    const auto cur = params["p_1"][l], past = params["p_0"][l];
    expected += ((cur.pow(2).sum(1) - 1).pow(2).mean() + at::matmul(cur, past.t()).pow(2).mean()).item<double>();
  }
  CHECK(aux.item<double>() == Approx(10.0 * expected / 2).epsilon(1e-5));
  CHECK_FALSE(selector.select(queries_near({2}), test::task_ctx(1, false)).aux_loss.defined());  // not at evaluation
}

TEST_CASE("class-mean prototypes are the normalised per-class query means", "[selector][star]") {
  ClassMeanPrototypes source(dims16());
  const auto ctx = test::task_ctx(1);  // classes 2, 3
  const auto f = at::randn({6, 16}, make_generator(6, 0));
  const auto y = at::tensor({2, 3, 2, 3, 3, 2}, at::kLong);
  const auto keys = source.prototypes(ctx, [&](const FeatureVisitor& visit) {
    visit(f.narrow(0, 0, 4), y.narrow(0, 0, 4));
    visit(f.narrow(0, 4, 2), y.narrow(0, 4, 2));
  });
  const auto mean2 = f.index_select(0, at::tensor({0, 2, 5}, at::kLong)).mean(0);
  CHECK(at::allclose(keys[0], mean2 / mean2.norm(), 1e-5, 1e-6));
  CHECK(keys.norm(2, {1}).sub(1).abs().max().item<double>() < 1e-5);
  CHECK_THAT(test::error_message<Error>([&] {
               source.prototypes(ctx, [&](const FeatureVisitor& visit) { visit(f.narrow(0, 0, 1), y.narrow(0, 0, 1)); });
             }),
             Catch::Contains("task 1 has a class without training images"));
  CHECK_THAT(test::error_message<ShapeError>([&] {
               source.prototypes(ctx, [&](const FeatureVisitor& visit) { visit(at::zeros({2, 5}), y.narrow(0, 0, 2)); });
             }),
             Catch::Contains("expected [B, 16]"));
}

TEST_CASE("STAR-Prompt's second level with class-mean keys saves and loads", "[selector][star][checkpoint]") {
  seed_everything(7);
  auto make = [] { return make_star_prompt_fallback(std::make_shared<VisionTransformer>(test::tiny_vit(2))); };
  auto model = make();
  const auto images = at::randn({6, 3, 8, 8}, make_generator(8, 0));
  const auto labels = at::tensor({0, 1, 0, 1, 0, 1}, at::kLong);
  model->begin_task(test::task_ctx(0));
  model->prepare_task([&](const FeatureVisitor& visit) { visit(model->query(images), labels); });
  model->end_task();
  model->begin_task(test::task_ctx(1));

  SECTION("keys must be computed before selection") {
    CHECK_THAT(test::error_message<Error>([&] { model->predict(images); }),
               Catch::Contains("keys of task 1 were never computed"));
  }
  SECTION("round trip") {
    model->prepare_task([&](const FeatureVisitor& visit) { visit(model->query(images), labels + 2); });
    model->end_task();
    test::TempDir dir;
    model->save(dir / "star.safetensors");
    auto restored = make();
    restored->load(dir / "star.safetensors");
    CHECK(at::equal(restored->selector().keys(test::task_ctx(1, false)), model->selector().keys(test::task_ctx(1, false))));
    at::NoGradGuard no_grad;
    CHECK(at::equal(restored->forward(images, test::task_ctx(1, false)).logits,
                    model->forward(images, test::task_ctx(1, false)).logits));
  }
}
