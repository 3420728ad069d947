#include "clprompt/selector/dualprompt.hpp"

#include <torch/optim/adam.h>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/io/state_dict.hpp"
#include "clprompt/model/continual_model.hpp"
#include "selector/pool_reference.hpp"
#include "clprompt/methods/dualprompt.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which Catch's must override.
#include <catch2/catch.hpp>

using namespace clprompt;

namespace {

static_assert(PromptSelector<DualPrompt>);
static_assert(DualPrompt::query_source == clprompt::QuerySource::backbone);

constexpr BackboneDims kDims{16, 5, 2};

using DualModel = DualPromptModel;

std::shared_ptr<DualModel> make_model(const DualPrompt::Options& o) {
  return make_dualprompt(std::make_shared<VisionTransformer>(test::tiny_vit(5)), o);
}

}  // namespace

TEST_CASE("DualPrompt options: dualprompt-pytorch defaults, CODA repo preset, errors name the field", "[selector][dualprompt]") {
  DualPrompt::Options o;
  CHECK((o.g_length == 5 && o.g_layers == std::vector<int64_t>{0, 1}));
  CHECK((o.e_pool_size == 10 && o.e_length == 5 && o.e_layers == std::vector<int64_t>{2, 3, 4}));
  CHECK((o.top_k == 1 && o.pull_coefficient == 1.0 && !o.batchwise_eval));
  CHECK(o.prefix_style == PrefixStyle::key_value);
  const auto coda = DualPrompt::Options::coda_repo();
  CHECK((coda.e_pool_size == 10 && coda.e_length == 20 && coda.g_length == 6));
  CHECK(coda.prefix_style == PrefixStyle::halves);
  auto j = write_options(coda);
  CHECK(write_options(options_from_json<DualPrompt::Options>(j)) == j);

  auto message = [](DualPrompt::Options bad) {
    return test::error_message<ConfigError>([&] { DualPrompt(bad, kDims); });
  };
  auto bad = o;
  bad.e_layers = {2, 3, 5};
  CHECK_THAT(message(bad), Catch::Contains("'e_layers[2]'") && Catch::Contains("[0, 5)"));
  bad = o;
  bad.g_layers = {1, 1};
  CHECK_THAT(message(bad), Catch::Contains("'g_layers[1]'") && Catch::Contains("twice"));
  bad = coda;
  bad.e_length = 5;
  CHECK_THAT(message(bad), Catch::Contains("'e_length'") && Catch::Contains("even"));
  bad = coda;
  bad.g_length = 3;
  CHECK_THAT(message(bad), Catch::Contains("'g_length'"));
  bad = o;
  bad.top_k = 0;
  CHECK_THAT(message(bad), Catch::Contains("'top_k'"));
  bad = o;
  bad.e_layers = {};
  CHECK_THAT(message(bad), Catch::Contains("'e_layers'"));
  bad = o;
  bad.e_layers = {2, 3, 5};
  CHECK_THROWS_WITH(validate_in_context(bad, "method_options.selector", kDims),
                    Catch::Contains("'method_options.selector.e_layers[2]'"));
  CHECK_THROWS_WITH(options_from_json<DualPrompt::Options>(Json{{"prefix_style", "thirds"}}, "selector"),
                    Catch::Contains("selector.prefix_style") && Catch::Contains("key_value"));

  // Task identity past the pool is an error naming the option.
  DualPrompt dual(o, kDims);
  CHECK_THROWS_WITH(dual.begin_task(test::task_ctx(10, true, 11)), Catch::Contains("'e_pool_size'"));
  CHECK_THROWS_AS(dual.select(at::randn({2, 16}), test::task_ctx(10, true, 11)), ConfigError);
  CHECK_NOTHROW(dual.begin_task(test::task_ctx(9, true, 11)));
}

TEST_CASE("DualPrompt injects E then G prefixes equal to the parameter slices", "[selector][dualprompt]") {
  at::manual_seed(7);
  auto q = at::randn({3, 16});

  SECTION("dualprompt-pytorch: full-length key and value prompts") {
    DualPrompt dual(DualPrompt::Options{}, kDims);
    auto names = state_dict(dual);
    REQUIRE(names.size() == 3);
    CHECK(names.at("e_pool.keys").sizes() == at::IntArrayRef({10, 16}));
    CHECK(names.at("e_pool.prompts").sizes() == at::IntArrayRef({10, 3, 2, 5, 16}));
    CHECK(names.at("g_prompt").sizes() == at::IntArrayRef({2, 2, 5, 16}));

    auto s = dual.select(q, test::task_ctx(2, true));
    CHECK(s.prompts.readout == Readout::class_token);
    CHECK_FALSE(s.prompts.input_tokens.defined());
    REQUIRE(s.prompts.layers.size() == 5);
    const auto& E = dual.e_pool->prompts;
    for (int64_t b = 0; b < 3; ++b) {
      for (int64_t l : {0, 1}) {
        CHECK(at::equal(s.prompts.layers[l].key_prefix[b], dual.g_prompt[l][0]));
        CHECK(at::equal(s.prompts.layers[l].value_prefix[b], dual.g_prompt[l][1]));
      }
      for (int64_t l : {2, 3, 4}) {  // training task 2 uses E-prompt 2
        CHECK(at::equal(s.prompts.layers[l].key_prefix[b], E[2][l - 2][0]));
        CHECK(at::equal(s.prompts.layers[l].value_prefix[b], E[2][l - 2][1]));
      }
    }
    REQUIRE(s.aux_loss.defined());
    const auto sim = test::direct_cosine(q, dual.e_pool->keys);
    CHECK(s.aux_loss.item<double>() ==
          Approx(test::direct_pull(sim, std::vector<std::vector<int64_t>>(3, std::vector<int64_t>{2}))).epsilon(1e-5));
  }

  SECTION("a layer with both gets [E, G]; per-sample E at evaluation") {
    DualPrompt::Options o;
    o.g_layers = {0, 2};
    o.e_layers = {2, 3};
    DualPrompt dual(o, kDims);
    auto s = dual.select(q, test::task_ctx(1, false));
    auto idx = dual.select_indices(q, test::task_ctx(1, false));
    CHECK(test::to_rows(idx) == test::direct_top_k(test::direct_cosine(q, dual.e_pool->keys), 1));
    CHECK_FALSE(s.aux_loss.defined());
    const auto& l2 = s.prompts.layers[2];
    CHECK(l2.key_prefix.sizes() == at::IntArrayRef({3, 10, 16}));
    CHECK(s.prompts.find_layer(1) == nullptr);
    CHECK(s.prompts.find_layer(4) == nullptr);
    for (int64_t b = 0; b < 3; ++b) {
      auto e = dual.e_pool->prompts[idx[b][0].item<int64_t>()][0];
      CHECK(at::equal(l2.key_prefix[b], at::cat({e[0], dual.g_prompt[1][0]})));
      CHECK(at::equal(l2.value_prefix[b], at::cat({e[1], dual.g_prompt[1][1]})));
    }
  }

  SECTION("CODA-Prompt repo: halves") {
    DualPrompt::Options o = DualPrompt::Options::coda_repo();
    o.g_layers = {0, 1, 2};
    DualPrompt dual(o, kDims);
    CHECK(dual.e_pool->prompts.sizes() == at::IntArrayRef({10, 3, 20, 16}));
    CHECK(dual.g_prompt.sizes() == at::IntArrayRef({3, 6, 16}));
    auto s = dual.select(q, test::task_ctx(0, true));
    const auto& l2 = s.prompts.layers[2];
    CHECK(l2.key_prefix.sizes() == at::IntArrayRef({3, 13, 16}));
    auto e = dual.e_pool->prompts[0][0];
    auto g = dual.g_prompt[2];
    CHECK(at::equal(l2.key_prefix[1], at::cat({e.narrow(0, 0, 10), g.narrow(0, 0, 3)})));
    CHECK(at::equal(l2.value_prefix[1], at::cat({e.narrow(0, 10, 10), g.narrow(0, 3, 3)})));
    CHECK(s.prompts.layers[0].key_prefix.sizes() == at::IntArrayRef({3, 3, 16}));
    CHECK(s.prompts.layers[4].key_prefix.sizes() == at::IntArrayRef({3, 10, 16}));
  }
}

TEST_CASE("DualPrompt: evaluation top-1 and batch-wise selection match a direct computation", "[selector][dualprompt]") {
  at::manual_seed(8);
  DualPrompt::Options o;
  o.batchwise_eval = true;
  DualPrompt dual(o, kDims);
  for (int trial = 0; trial < 10; ++trial) {
    auto q = at::randn({2 + trial, 16});
    const auto per_sample = test::direct_top_k(test::direct_cosine(q, dual.e_pool->keys), 1);
    const auto major = test::direct_batchwise(per_sample, 1);
    for (const auto& row : test::to_rows(dual.select_indices(q, test::task_ctx(2, false)))) CHECK(row == major);
    // Training ignores the query: the task's own E-prompt.
    for (const auto& row : test::to_rows(dual.select_indices(q, test::task_ctx(2, true)))) CHECK(row == std::vector<int64_t>{2});
  }
}

TEST_CASE("ContinualModel<ViT, DualPrompt, LinearHead>: gradients, frozen E-prompts, checkpoints", "[selector][dualprompt][model]") {
  test::TempDir dir;
  at::manual_seed(9);
  auto x = at::randn({4, 3, 8, 8});
  auto y = at::tensor({2, 3, 3, 2}, at::kLong);

  for (const auto& options : {DualPrompt::Options{}, DualPrompt::Options::coda_repo()}) {
    auto model = make_model(options);
    model->begin_task(test::task_ctx(0, true));
    model->end_task();
    model->begin_task(test::task_ctx(1, true));
    const auto ctx = test::task_ctx(1, true);
    auto& dual = model->selector();

    auto out = model->forward(x, ctx);
    CHECK(out.logits.sizes() == at::IntArrayRef({4, 4}));
    model->loss(out, y, ctx).backward();
    for (auto& p : model->backbone().parameters()) CHECK_FALSE(p.grad().defined());
    CHECK(dual.g_prompt.grad().abs().sum().item<double>() > 0);
    for (const auto* t : {&dual.e_pool->prompts, &dual.e_pool->keys}) {
      auto g = t->grad();
      CHECK(g[1].abs().sum().item<double>() > 0);  // only task 1's E-prompt and key
      CHECK(g.narrow(0, 0, 1).abs().sum().item<double>() == 0.0);
      CHECK(g.narrow(0, 2, 8).abs().sum().item<double>() == 0.0);
    }

    // A few Adam steps: other tasks' E-prompts and keys stay bit-identical; task 1's and G move.
    auto prompts0 = dual.e_pool->prompts.detach().clone();
    auto keys0 = dual.e_pool->keys.detach().clone();
    auto g0 = dual.g_prompt.detach().clone();
    torch::optim::Adam adam(model->parameter_groups().normal, torch::optim::AdamOptions(1e-2));
    for (int step = 0; step < 3; ++step) {
      adam.zero_grad();
      model->loss(model->forward(x, ctx), y, ctx).backward();
      adam.step();
    }
    for (int64_t m = 0; m < 10; ++m) {
      CHECK(at::equal(dual.e_pool->prompts[m], prompts0[m]) == (m != 1));
      CHECK(at::equal(dual.e_pool->keys[m], keys0[m]) == (m != 1));
    }
    CHECK_FALSE(at::equal(dual.g_prompt, g0));

    const auto path = dir.file("dualprompt.safetensors");
    model->save(path);
    auto names = read_safetensors(path).tensors;
    for (const char* name : {"selector.e_pool.keys", "selector.e_pool.prompts", "selector.g_prompt"})
      CHECK(names.count(name) == 1);
    auto restored = make_model(options);
    restored->load(path);
    model->eval();
    restored->eval();
    at::NoGradGuard no_grad;
    CHECK(at::equal(model->forward(x, ctx.for_evaluation()).logits, restored->forward(x, ctx.for_evaluation()).logits));
    CHECK(at::equal(model->predict(x), restored->predict(x)));
  }
}
