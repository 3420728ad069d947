#include "clprompt/selector/attention_decomposed.hpp"

#include <array>
#include <cmath>
#include <functional>

#include <torch/optim/adam.h>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/model/continual_model.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which Catch's must override.
#include <catch2/catch.hpp>

using namespace clprompt;

namespace {

constexpr int64_t kTasks = 5;
constexpr int64_t kDim = 16;  // test::tiny_vit's embed_dim

using Coda = ContinualModel<VisionTransformer, AttentionDecomposed, LinearHead>;
static_assert(PromptSelector<AttentionDecomposed>);

/// 10 components (2 per task over 5 tasks), length 4, in all 5 layers of tiny_vit(5).
AttentionDecomposed::Options small_options(double ortho_weight = 0.0) {
  AttentionDecomposed::Options o;
  o.pool_size = 10;
  o.length = 4;
  o.ortho_weight = ortho_weight;
  o.num_tasks = kTasks;
  return o;
}
BackboneDims small_dims() { return {kDim, 5, 2}; }

TaskContext ctx(int64_t t, bool training) { return TaskContext::for_task(t, kTasks, {2, 2, 2, 2, 2}, training); }

/// Enters tasks 0..t (begin_task and, before the last, nothing else: components only move here).
void enter(AttentionDecomposed& selector, int64_t t) {
  for (int64_t i = 0; i <= t; ++i) selector.begin_task(ctx(i, true));
}

/// The straightforward computation, one sample and one component at a time.
struct Naive {
  at::Tensor alpha;   // [B, f]
  at::Tensor prompt;  // [B, L, D]
};
Naive naive(const at::Tensor& q, const at::Tensor& P, const at::Tensor& K, const at::Tensor& A, int64_t f) {
  at::NoGradGuard no_grad;
  const int64_t B = q.size(0);
  Naive out{at::zeros({B, f}), at::zeros({B, P.size(1), P.size(2)})};
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t k = 0; k < f; ++k) {
      auto a = q[b] * A[k];
      a = a / a.norm();
      auto key = K[k] / K[k].norm();
      auto w = at::dot(a, key);
      out.alpha[b][k] = w;
      out.prompt[b] += w * P[k];
    }
  }
  return out;
}

bool all_zero(const at::Tensor& t) { return t.numel() == 0 || t.abs().max().item<double>() == 0.0; }
GramSchmidtInit defaults_gram_schmidt() { return AttentionDecomposed::Options{}.gram_schmidt; }
/// True if the rows [begin, end) of t's gradient are all zero (an undefined gradient counts).
bool no_grad_rows(const at::Tensor& t, int64_t begin, int64_t end) {
  return !t.grad().defined() || all_zero(t.grad().narrow(0, begin, end - begin));
}

std::string config_field(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.field();
  }
  return "no error";
}

}  // namespace

TEST_CASE("AttentionDecomposed: parameters, prompt shapes and defaults", "[selector][coda]") {
  const AttentionDecomposed::Options defaults;
  CHECK(defaults.pool_size == 100);
  CHECK(defaults.length == 8);
  CHECK(defaults.ortho_weight == 0.0);
  CHECK(defaults.layers == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(defaults.num_tasks == 10);
  CHECK(defaults.components_per_task() == 10);

  at::manual_seed(0);
  AttentionDecomposed selector(small_options(), small_dims());
  auto params = selector.named_parameters();
  CHECK(params.size() == 15);
  for (int l = 0; l < 5; ++l) {
    CHECK(params[fmt::format("layers.{}.components", l)].sizes() == at::IntArrayRef({10, 4, kDim}));
    CHECK(params[fmt::format("layers.{}.keys", l)].sizes() == at::IntArrayRef({10, kDim}));
    CHECK(params[fmt::format("layers.{}.attention", l)].sizes() == at::IntArrayRef({10, kDim}));
  }
  enter(selector, 0);
  auto s = selector.select(at::randn({3, kDim}), ctx(0, false));
  REQUIRE(s.prompts.layers.size() == 5);
  for (const auto& l : s.prompts.layers) {
    CHECK(l.key_prefix.sizes() == at::IntArrayRef({3, 2, kDim}));
    CHECK(l.value_prefix.sizes() == at::IntArrayRef({3, 2, kDim}));
    CHECK_FALSE(l.value_residual.defined());
  }
  CHECK_FALSE(s.prompts.input_tokens.defined());
  CHECK(s.prompts.readout == Readout::class_token);
  CHECK_FALSE(s.aux_loss.defined());

  auto o = small_options();
  o.layers = {1, 3};
  AttentionDecomposed sparse(o, small_dims());
  auto sp = sparse.select(at::randn({2, kDim}), ctx(0, false)).prompts;
  CHECK(sp.find_layer(0) == nullptr);
  CHECK(sp.find_layer(1) != nullptr);
  CHECK(sp.find_layer(2) == nullptr);
  CHECK(sp.find_layer(3) != nullptr);
  CHECK(sparse.named_parameters().contains("layers.3.keys"));

  CHECK_THROWS_AS(selector.select(at::randn({2, kDim + 1}), ctx(0, false)), ShapeError);
}

TEST_CASE("AttentionDecomposed: weights and prompts equal a per-sample loop", "[selector][coda]") {
  at::manual_seed(1);
  AttentionDecomposed selector(small_options(), small_dims());
  enter(selector, 2);  // f = 6
  auto q = at::randn({7, kDim});
  for (bool training : {false, true}) {
    auto c = ctx(2, training);
    auto s = selector.select(q, c);
    for (int64_t slot = 0; slot < 5; ++slot) {
      auto ref = naive(q, selector.components(slot), selector.keys(slot), selector.attention(slot), 6);
      auto alpha = selector.attention_weights(q, slot, c);
      REQUIRE(alpha.sizes() == at::IntArrayRef({7, 6}));
      CHECK(at::allclose(alpha, ref.alpha, 1e-5, 1e-6));
      const auto& layer = s.prompts.layers.at(static_cast<std::size_t>(slot));
      // The prefix halves are the slices of the assembled prompt: [:, :L/2] keys, [:, L/2:] values.
      CHECK(at::allclose(layer.key_prefix, ref.prompt.narrow(1, 0, 2), 1e-5, 1e-5));
      CHECK(at::allclose(layer.value_prefix, ref.prompt.narrow(1, 2, 2), 1e-5, 1e-5));
    }
  }
  // The weights are cosines: in [-1, 1].
  CHECK(selector.attention_weights(q, 0, ctx(2, false)).abs().max().item<double>() <= 1.0 + 1e-6);
}

TEST_CASE("AttentionDecomposed: Gram-Schmidt makes new components orthonormal to earlier ones", "[selector][coda]") {
  at::manual_seed(2);
  AttentionDecomposed selector(small_options(), small_dims());
  auto rows_of = [&](int64_t slot) {
    return std::vector<at::Tensor>{selector.components(slot).view({10, -1}), selector.keys(slot), selector.attention(slot)};
  };
  // Task 0's components are orthonormal from the start.
  for (const auto& x : rows_of(0)) {
    auto first = x.narrow(0, 0, 2);
    CHECK(at::allclose(at::mm(first, first.t()), at::eye(2), 1e-5, 1e-5));
  }
  enter(selector, 0);
  // Training moves the earlier components away from orthogonality; Gram-Schmidt must still
  // make the new ones orthogonal to their span.
  {
    at::NoGradGuard no_grad;
    for (int64_t slot = 0; slot < 5; ++slot)
      for (const auto& x : rows_of(slot)) x.narrow(0, 0, 2).add_(at::randn_like(x.narrow(0, 0, 2)));
  }
  std::vector<at::Tensor> before;
  for (const auto& x : rows_of(3)) before.push_back(x.clone());
  selector.begin_task(ctx(1, true));
  auto after = rows_of(3);
  for (std::size_t i = 0; i < after.size(); ++i) {
    const auto& x = after[i];
    CHECK(at::equal(x.narrow(0, 0, 2), before[i].narrow(0, 0, 2)));    // earlier: untouched
    CHECK(at::equal(x.narrow(0, 4, 6), before[i].narrow(0, 4, 6)));    // later tasks': untouched
    CHECK_FALSE(at::equal(x.narrow(0, 2, 2), before[i].narrow(0, 2, 2)));
    auto fresh = x.narrow(0, 2, 2);
    auto old = x.narrow(0, 0, 2);
    old = old / old.norm(2, {1}, true);
    CHECK(at::allclose(fresh.norm(2, {1}), at::ones({2}), 1e-5, 1e-5));
    CHECK(at::mm(fresh, old.t()).abs().max().item<double>() < 1e-5);
    CHECK(at::allclose(at::mm(fresh, fresh.t()), at::eye(2), 1e-5, 1e-5));
  }
  // Up to the last task: 10 orthonormal keys in R^16 (task 0's and 1's were disturbed above,
  // so check the last three tasks' against everything before them).
  for (int64_t t = 2; t < kTasks; ++t) selector.begin_task(ctx(t, true));
  auto keys = selector.keys(0);
  auto earlier = keys.narrow(0, 0, 4);
  earlier = earlier / earlier.norm(2, {1}, true);
  auto later = keys.narrow(0, 4, 6);
  CHECK(at::mm(later, earlier.t()).abs().max().item<double>() < 1e-5);
  CHECK(at::allclose(at::mm(later, later.t()), at::eye(6), 1e-5, 1e-5));
}

TEST_CASE("AttentionDecomposed: in training only the current task's components get gradients", "[selector][coda]") {
  at::manual_seed(3);
  AttentionDecomposed selector(small_options(), small_dims());
  auto q = at::randn({4, kDim});
  auto objective = [&](const Selection& s) {
    at::Tensor total = at::zeros({});
    for (const auto& l : s.prompts.layers) total = total + (l.key_prefix * 1.5 + l.value_prefix).pow(2).sum();
    return total;
  };
  SECTION("task 0: components [0, 2)") {
    enter(selector, 0);
    objective(selector.select(q, ctx(0, true))).backward();
    for (int64_t slot = 0; slot < 5; ++slot)
      for (const auto* p : {&selector.components(slot), &selector.keys(slot), &selector.attention(slot)}) {
        CHECK_FALSE(all_zero(p->grad().narrow(0, 0, 2)));
        CHECK(no_grad_rows(*p, 2, 10));
      }
  }
  SECTION("task 2: components [4, 6); [0, 4) take part but are detached") {
    enter(selector, 2);
    objective(selector.select(q, ctx(2, true))).backward();
    for (int64_t slot = 0; slot < 5; ++slot)
      for (const auto* p : {&selector.components(slot), &selector.keys(slot), &selector.attention(slot)}) {
        CHECK(no_grad_rows(*p, 0, 4));
        CHECK_FALSE(all_zero(p->grad().narrow(0, 4, 2)));
        CHECK(no_grad_rows(*p, 6, 10));
      }
  }
  SECTION("the orthogonality penalty does not reach earlier components either") {
    auto o = small_options(0.5);
    AttentionDecomposed penalised(o, small_dims());
    for (int64_t t = 0; t <= 2; ++t) penalised.begin_task(ctx(t, true));
    auto s = penalised.select(q, ctx(2, true));
    REQUIRE(s.aux_loss.defined());
    s.aux_loss.backward();
    for (int64_t slot = 0; slot < 5; ++slot) {
      CHECK(no_grad_rows(penalised.keys(slot), 0, 4));
      CHECK(no_grad_rows(penalised.components(slot), 0, 4));
    }
  }
}

TEST_CASE("AttentionDecomposed: evaluation uses the components of every task seen", "[selector][coda]") {
  at::manual_seed(4);
  AttentionDecomposed selector(small_options(), small_dims());
  enter(selector, 2);  // f = 6
  auto q = at::randn({3, kDim});
  const auto eval = ctx(2, false);
  CHECK(selector.attention_weights(q, 0, eval).size(1) == 6);
  auto reference = selector.select(q, eval).prompts.layers[0].key_prefix.clone();
  at::NoGradGuard no_grad;
  // Components of tasks not reached yet ([6, 10)) play no part ...
  selector.components(0).narrow(0, 6, 4).fill_(100.0);
  selector.keys(0).narrow(0, 6, 4).fill_(-3.0);
  CHECK(at::equal(selector.select(q, eval).prompts.layers[0].key_prefix, reference));
  // ... those of task 0 do.
  selector.components(0)[0].add_(1.0);
  CHECK_FALSE(at::allclose(selector.select(q, eval).prompts.layers[0].key_prefix, reference));
  // After task 0 the evaluation uses only [0, 2).
  CHECK(selector.attention_weights(q, 0, ctx(0, false)).size(1) == 2);
}

TEST_CASE("AttentionDecomposed: orthogonality penalty", "[selector][coda]") {
  at::manual_seed(5);
  const double mu = 0.25;
  AttentionDecomposed selector(small_options(mu), small_dims());
  enter(selector, 1);  // f = 4
  {
    at::NoGradGuard no_grad;  // make the penalty non-trivial
    for (auto& p : selector.parameters()) p.add_(0.1 * at::randn_like(p));
  }
  auto q = at::randn({2, kDim});
  auto s = selector.select(q, ctx(1, true));
  REQUIRE(s.aux_loss.defined());
  CHECK(s.aux_loss.dim() == 0);
  auto penalty = [](const at::Tensor& x) {
    at::NoGradGuard no_grad;
    auto x64 = x.to(at::kDouble);
    return (at::mm(x64, x64.t()) - at::eye(x.size(0), at::kDouble)).pow(2).mean().item<double>();
  };
  double expected = 0;
  for (int64_t slot = 0; slot < 5; ++slot)
    expected += penalty(selector.keys(slot).narrow(0, 0, 4)) + penalty(selector.attention(slot).narrow(0, 0, 4)) +
                penalty(selector.components(slot).narrow(0, 0, 4).flatten(1));
  CHECK(s.aux_loss.item<double>() == Approx(mu * expected).epsilon(1e-5));
  CHECK(expected > 0);

  // Task 0 penalises only its own components.
  AttentionDecomposed first(small_options(mu), small_dims());
  enter(first, 0);
  double expected0 = 0;
  for (int64_t slot = 0; slot < 5; ++slot)
    expected0 += penalty(first.keys(slot).narrow(0, 0, 2)) + penalty(first.attention(slot).narrow(0, 0, 2)) +
                 penalty(first.components(slot).narrow(0, 0, 2).flatten(1));
  CHECK(first.select(q, ctx(0, true)).aux_loss.item<double>() == Approx(mu * expected0).margin(1e-9));

  // None at evaluation, none with μ = 0.
  CHECK_FALSE(selector.select(q, ctx(1, false)).aux_loss.defined());
  AttentionDecomposed plain(small_options(0.0), small_dims());
  enter(plain, 1);
  CHECK_FALSE(plain.select(q, ctx(1, true)).aux_loss.defined());
}

TEST_CASE("AttentionDecomposed in a ContinualModel: training, frozen earlier components, checkpoints",
          "[selector][coda][model]") {
  at::manual_seed(6);
  auto make = [] {
    auto vit = std::make_shared<VisionTransformer>(test::tiny_vit(5));
    const auto dims = dims_of(*vit);
    return std::make_shared<Coda>(vit, std::make_shared<AttentionDecomposed>(small_options(0.1), dims),
                                  std::make_shared<LinearHead>(LinearHeadOptions{}, dims));
  };
  auto model = make();
  auto x = at::randn({6, 3, 8, 8});
  auto train = [&](int64_t t, int steps) {
    const auto c = ctx(t, true);
    auto groups = model->parameter_groups();
    torch::optim::Adam adam(groups.normal, torch::optim::AdamOptions(1e-2));
    auto y = at::randint(2 * t, 2 * t + 2, {6}, at::kLong);
    for (int i = 0; i < steps; ++i) {
      adam.zero_grad();
      auto out = model->forward(x, c);
      REQUIRE(out.aux_loss.defined());
      model->loss(out, y, c).backward();
      adam.step();
    }
  };

  model->begin_task(ctx(0, true));
  {
    const auto c = ctx(0, true);
    auto out = model->forward(x, c);
    CHECK(out.logits.sizes() == at::IntArrayRef({6, 2}));
    model->loss(out, at::tensor({0, 1, 0, 1, 0, 1}, at::kLong), c).backward();
    CHECK(model->selector().components(0).grad().abs().sum().item<double>() > 0);
    CHECK(model->selector().keys(4).grad().abs().sum().item<double>() > 0);
    for (auto& p : model->backbone().parameters()) CHECK_FALSE(p.grad().defined());  // frozen ViT
    model->zero_grad();
  }
  train(0, 3);
  model->end_task();

  model->begin_task(ctx(1, true));
  std::vector<at::Tensor> earlier, current;
  for (int64_t slot = 0; slot < 5; ++slot)
    for (const auto* p : {&model->selector().components(slot), &model->selector().keys(slot),
                          &model->selector().attention(slot)}) {
      earlier.push_back(p->narrow(0, 0, 2).clone());
      current.push_back(p->narrow(0, 2, 2).clone());
    }
  train(1, 4);
  std::size_t i = 0;
  bool current_moved = false;
  for (int64_t slot = 0; slot < 5; ++slot)
    for (const auto* p : {&model->selector().components(slot), &model->selector().keys(slot),
                          &model->selector().attention(slot)}) {
      CHECK(at::equal(p->narrow(0, 0, 2), earlier[i]));  // bit-identical after 4 Adam steps
      current_moved = current_moved || !at::equal(p->narrow(0, 2, 2), current[i]);
      ++i;
    }
  CHECK(current_moved);
  model->end_task();

  test::TempDir dir;
  const auto path = dir.file("coda.safetensors");
  model->save(path);
  auto restored = make();
  restored->load(path);
  CHECK(restored->tasks_started() == 2);
  model->eval();
  restored->eval();
  at::NoGradGuard no_grad;
  CHECK(at::equal(model->forward(x, ctx(1, false)).logits, restored->forward(x, ctx(1, false)).logits));
  CHECK(at::equal(model->predict(x), restored->predict(x)));
}

TEST_CASE("AttentionDecomposed: options are validated and serialised by name", "[selector][coda][options]") {
  using Options = AttentionDecomposed::Options;
  auto invalid = [](auto change) {
    return config_field([&] {
      Options o;
      change(o);
      o.validate("selector");
    });
  };
  CHECK(invalid([](Options& o) { o.pool_size = 0; }) == "selector.pool_size");
  CHECK(invalid([](Options& o) { o.length = 7; }) == "selector.length");
  CHECK(invalid([](Options& o) { o.length = 0; }) == "selector.length");
  CHECK(invalid([](Options& o) { o.ortho_weight = -1; }) == "selector.ortho_weight");
  CHECK(invalid([](Options& o) { o.ortho_weight = std::nan(""); }) == "selector.ortho_weight");
  CHECK(invalid([](Options& o) { o.layers = {}; }) == "selector.layers");
  CHECK(invalid([](Options& o) { o.layers = {0, -1}; }) == "selector.layers[1]");
  CHECK(invalid([](Options& o) { o.layers = {2, 2}; }) == "selector.layers[1]");
  CHECK(invalid([](Options& o) { o.num_tasks = 3; }) == "selector.num_tasks");
  CHECK(invalid([](Options& o) { o.num_tasks = 0; }) == "selector.num_tasks");
  CHECK(invalid([](Options&) {}) == "no error");

  // Against the backbone and the scenario.
  CHECK(config_field([] {
          auto o = small_options();
          o.layers = {0, 5};
          AttentionDecomposed(o, small_dims());
        }) == "layers[1]");  // constructors name the field relative to the options ...
  CHECK(config_field([] {
          auto o = small_options();
          o.layers = {0, 5};
          validate_in_context(o, "method_options.selector", small_dims());
        }) == "method_options.selector.layers[1]");  // ... callers that know the place, the whole path
  CHECK(config_field([] {
          auto o = small_options();
          o.pool_size = 20;
          AttentionDecomposed(o, small_dims());  // 20 orthogonal keys do not fit in R^16
        }) == "pool_size");
  CHECK(config_field([] {
          AttentionDecomposed selector(small_options(), small_dims());
          selector.begin_task(TaskContext::for_task(0, 10, {2}, true));
        }) == "num_tasks");
  CHECK_THAT(test::error_message<ConfigError>([] {
               AttentionDecomposed selector(small_options(), small_dims());
               selector.begin_task(TaskContext::for_task(0, 10, {2}, true));
             }),
             Catch::Contains("num_tasks") && Catch::Contains("10"));

  // JSON: every field written, read back, unknown and mistyped keys named.
  Options o = small_options(0.5);
  o.layers = {1, 2};
  auto j = write_options(o);
  CHECK(j.dump() ==
        R"({"pool_size":10,"length":4,"ortho_weight":0.5,"layers":[1,2],"num_tasks":5,)"
        R"("gram_schmidt":"orthonormal_basis"})");
  auto back = options_from_json<Options>(j);
  CHECK(back.layers == o.layers);
  CHECK(back.pool_size == 10);
  CHECK(back.ortho_weight == 0.5);
  CHECK(config_field([] { options_from_json<Options>(Json{{"pool", 3}}, "selector"); }) == "selector.pool");
  CHECK(config_field([] { options_from_json<Options>(Json{{"layers", {0, "x"}}}, "selector"); }) == "selector.layers[1]");
  CHECK(config_field([] { options_from_json<Options>(Json{{"num_tasks", 7}}, "selector"); }) == "selector.num_tasks");
  CHECK(defaults_gram_schmidt() == GramSchmidtInit::orthonormal_basis);
  CHECK(options_from_json<Options>(Json{{"gram_schmidt", "reference"}}).gram_schmidt == GramSchmidtInit::reference);
  CHECK(config_field([] { options_from_json<Options>(Json{{"gram_schmidt", "modified"}}, "selector"); }) ==
        "selector.gram_schmidt");
}

namespace {

/// GT-RIPL/CODA-Prompt models/zoo.py:75-131 `gram_schmidt`, step by step on rows (the reference
/// works on the columns of vv.T), in double: uu = 0; uu[0:s] = vv[0:s]; for k in [s, f): draw
/// vk = randn (again whenever some |uj|^2 < 1e-8), uk = sum_{j<k} (vk . uj) / (uj . uj) uj,
/// uu[k] = vk - uk; then uu[k] /= |uu[k]| for k in [s, f). The draws are at::randn({n}) in the
/// reference's order (torch.randn_like(vv[:, k])).
using Rows = std::vector<std::vector<double>>;
Rows rows_of(const at::Tensor& t) {
  auto x = t.detach().reshape({t.size(0), -1}).to(at::kDouble).contiguous();
  Rows out(static_cast<std::size_t>(x.size(0)), std::vector<double>(static_cast<std::size_t>(x.size(1))));
  auto a = x.accessor<double, 2>();
  for (int64_t i = 0; i < x.size(0); ++i)
    for (int64_t e = 0; e < x.size(1); ++e) out[static_cast<std::size_t>(i)][static_cast<std::size_t>(e)] = a[i][e];
  return out;
}
Rows repo_gram_schmidt(const Rows& vv, std::size_t s, std::size_t f) {
  const std::size_t n = vv[0].size();
  auto dot = [&](const std::vector<double>& a, const std::vector<double>& b) {
    double d = 0;
    for (std::size_t e = 0; e < n; ++e) d += a[e] * b[e];
    return d;
  };
  Rows uu(vv.size(), std::vector<double>(n, 0.0));
  for (std::size_t j = 0; j < s; ++j) uu[j] = vv[j];
  for (std::size_t k = s; k < f; ++k) {
    bool redo = true;
    while (redo) {
      redo = false;
      const auto draw = rows_of(at::randn({static_cast<int64_t>(n)}).unsqueeze(0))[0];
      std::vector<double> uk(n, 0.0);
      for (std::size_t j = 0; j < k && !redo; ++j) {
        const double denominator = dot(uu[j], uu[j]);
        if (denominator < 1e-8) {
          redo = true;
        } else {
          const double c = dot(draw, uu[j]) / denominator;
          for (std::size_t e = 0; e < n; ++e) uk[e] += c * uu[j][e];
        }
      }
      if (!redo)
        for (std::size_t e = 0; e < n; ++e) uu[k][e] = draw[e] - uk[e];
    }
  }
  for (std::size_t k = s; k < f; ++k) {
    const double norm = std::sqrt(dot(uu[k], uu[k]));
    for (auto& x : uu[k]) x /= norm;
  }
  return uu;
}
double max_difference(const at::Tensor& actual, const Rows& want) {
  const auto got = rows_of(actual);
  double worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    for (std::size_t e = 0; e < got[i].size(); ++e) worst = std::max(worst, std::abs(got[i][e] - want[i][e]));
  return worst;
}

}  // namespace

TEST_CASE("AttentionDecomposed gram_schmidt = reference follows CODA-Prompt's gram_schmidt step by step",
          "[selector][coda]") {
  auto o = small_options();  // M 10, L 4, D 16, 5 tasks: pt 2
  o.gram_schmidt = GramSchmidtInit::reference;
  const std::size_t M = 10, pt = 2;

  // Construction (zoo.py:21-39): per layer p, k, a drawn by tensor_prompt (uniform, discarded),
  // then gram_schmidt of p, k, a with task_count 0.
  at::manual_seed(21);
  AttentionDecomposed selector(o, small_dims());
  at::manual_seed(21);
  for (int64_t slot = 0; slot < 5; ++slot) {
    const auto p = rows_of(at::rand({10, 4, kDim}));
    const auto k = rows_of(at::rand({10, kDim}));
    const auto a = rows_of(at::rand({10, kDim}));
    const auto want_p = repo_gram_schmidt(p, 0, pt);
    const auto want_k = repo_gram_schmidt(k, 0, pt);
    const auto want_a = repo_gram_schmidt(a, 0, pt);
    CHECK(max_difference(selector.components(slot), want_p) < 1e-5);
    CHECK(max_difference(selector.keys(slot), want_k) < 1e-5);
    CHECK(max_difference(selector.attention(slot), want_a) < 1e-5);
    for (const auto* x : {&selector.components(slot), &selector.keys(slot), &selector.attention(slot)})
      CHECK(all_zero(x->narrow(0, 2, 8)));  // later tasks' rows: zero until their task
  }

  // Tasks 1..4 (zoo.py:51-71, process_task_count): after "training" the earlier rows (no longer
  // orthogonal), K, A, P of each layer in turn, projected on the raw earlier rows.
  enter(selector, 0);
  for (int64_t t = 1; t < kTasks; ++t) {
    {
      at::NoGradGuard no_grad;
      at::manual_seed(100 + t);
      for (int64_t slot = 0; slot < 5; ++slot)
        for (const auto* x : {&selector.components(slot), &selector.keys(slot), &selector.attention(slot)})
          x->narrow(0, 0, t * 2).add_(0.3 * at::randn_like(x->narrow(0, 0, t * 2)));
    }
    std::vector<std::array<Rows, 3>> before;
    for (int64_t slot = 0; slot < 5; ++slot)
      before.push_back(
          {rows_of(selector.keys(slot)), rows_of(selector.attention(slot)), rows_of(selector.components(slot))});
    std::vector<std::array<at::Tensor, 3>> raw;
    for (int64_t slot = 0; slot < 5; ++slot)
      raw.push_back({selector.keys(slot).detach().clone(), selector.attention(slot).detach().clone(),
                     selector.components(slot).detach().clone()});
    at::manual_seed(200 + t);
    selector.begin_task(ctx(t, true));
    at::manual_seed(200 + t);
    const std::size_t s = pt * static_cast<std::size_t>(t), f = s + pt;
    for (int64_t slot = 0; slot < 5; ++slot) {
      const std::array<const at::Tensor*, 3> now{&selector.keys(slot), &selector.attention(slot),
                                                 &selector.components(slot)};
      for (std::size_t i = 0; i < 3; ++i) {
        const auto want = repo_gram_schmidt(before[static_cast<std::size_t>(slot)][i], s, f);
        CHECK(max_difference(*now[i], want) < 1e-5);
        const auto& x = *now[i];
        const auto& r = raw[static_cast<std::size_t>(slot)][i];
        CHECK(at::equal(x.narrow(0, 0, static_cast<int64_t>(s)), r.narrow(0, 0, static_cast<int64_t>(s))));  // kept raw
        CHECK(all_zero(x.narrow(0, static_cast<int64_t>(f), static_cast<int64_t>(M - f))));           // still zero
        auto fresh = x.narrow(0, static_cast<int64_t>(s), 2).reshape({2, -1});
        CHECK(at::allclose(fresh.norm(2, {1}), at::ones({2}), 1e-5, 1e-5));
        // Classical Gram-Schmidt against non-orthogonal raw rows: the new rows are not orthogonal
        // to the trained ones (orthonormal_basis would make them so, see the test above).
        auto old = x.narrow(0, 0, static_cast<int64_t>(s)).reshape({static_cast<int64_t>(s), -1});
        old = old / old.norm(2, {1}, true);
        CHECK(at::mm(fresh, old.t()).abs().max().item<double>() > 1e-4);
      }
    }
  }
  // The selector works on these rows: evaluation over [0, f), no row beyond f is used.
  auto q = at::randn({3, kDim});
  auto s = selector.select(q, ctx(4, false));
  for (const auto& l : s.prompts.layers) CHECK(at::isfinite(l.key_prefix).all().item<bool>());
}

TEST_CASE("AttentionDecomposed: gram_schmidt = orthonormal_basis (the default) draws as before", "[selector][coda]") {
  // The default keeps its earlier draw order: all layers uniform, then Gram-Schmidt of [0, pt)
  // layer by layer (P, K, A), so a given seed gives the same parameters as before the option.
  at::manual_seed(22);
  AttentionDecomposed a(small_options(), small_dims());
  at::manual_seed(22);
  std::vector<std::array<at::Tensor, 3>> uniform;
  for (int64_t slot = 0; slot < 5; ++slot)
    uniform.push_back({at::rand({10, 4, kDim}), at::rand({10, kDim}), at::rand({10, kDim})});
  for (int64_t slot = 0; slot < 5; ++slot) {
    auto& u = uniform[static_cast<std::size_t>(slot)];
    clprompt::detail::gram_schmidt_rows(u[0].view({10, -1}), 0, 2);
    clprompt::detail::gram_schmidt_rows(u[1], 0, 2);
    clprompt::detail::gram_schmidt_rows(u[2], 0, 2);
    CHECK(at::equal(a.components(slot), u[0]));
    CHECK(at::equal(a.keys(slot), u[1]));
    CHECK(at::equal(a.attention(slot), u[2]));
  }
}
