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
  // dualprompt-pytorch configs/cifar100_dualprompt.py:98-99 (shared_prompt_pool on: a fix, audit A3).
  CHECK((o.shared_prompt_pool && !o.shared_prompt_key));
  CHECK(o.e_keys == EKeySets::shared);
  CHECK(o.pull_reduction == PullReduction::mean);
  const auto coda = DualPrompt::Options::coda_repo();
  CHECK((coda.e_pool_size == 10 && coda.e_length == 20 && coda.g_length == 6));
  CHECK(coda.prefix_style == PrefixStyle::halves);
  // The CODA-Prompt repository: per-E-layer keys, summed pull loss (coefficient 1), no shared pool.
  CHECK(coda.e_keys == EKeySets::per_layer);
  CHECK(coda.pull_reduction == PullReduction::sum);
  CHECK(coda.pull_coefficient == 1.0);
  CHECK((!coda.shared_prompt_pool && !coda.shared_prompt_key));
  CHECK(write_options(coda).at("e_keys") == "per_layer");
  CHECK_THROWS_WITH(options_from_json<DualPrompt::Options>(Json{{"e_keys", "per_block"}}, "selector"),
                    Catch::Contains("selector.e_keys") && Catch::Contains("per_layer"));
  CHECK_THROWS_WITH(options_from_json<DualPrompt::Options>(Json{{"pull_reduction", "max"}}, "selector"),
                    Catch::Contains("selector.pull_reduction") && Catch::Contains("sum"));
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

  SECTION("CODA-Prompt repo: halves, a key set per E-layer") {
    DualPrompt::Options o = DualPrompt::Options::coda_repo();
    o.g_layers = {0, 1, 2};
    DualPrompt dual(o, kDims);
    auto names = state_dict(dual);
    REQUIRE(names.size() == 3);
    CHECK(names.count("e_pool.keys") == 0);
    CHECK(names.at("e_keys").sizes() == at::IntArrayRef({3, 10, 16}));
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
    // Keys with the pool axis first: [M, D] (shared) or [M, |e_layers|, D] (per_layer).
    const bool per_layer = options.e_keys == EKeySets::per_layer;
    auto keys_of = [&] { return per_layer ? dual.e_keys.transpose(0, 1) : dual.e_pool->keys; };
    for (const auto& g : {dual.e_pool->prompts.grad(), per_layer ? dual.e_keys.grad().transpose(0, 1)
                                                                  : dual.e_pool->keys.grad()}) {
      CHECK(g[1].abs().sum().item<double>() > 0);  // only task 1's E-prompt and key
      CHECK(g.narrow(0, 0, 1).abs().sum().item<double>() == 0.0);
      CHECK(g.narrow(0, 2, 8).abs().sum().item<double>() == 0.0);
    }
    if (per_layer)  // every E-layer pulls its own key of task 1
      for (int64_t j = 0; j < 3; ++j) CHECK(dual.e_keys.grad()[j][1].abs().sum().item<double>() > 0);

    // A few Adam steps: other tasks' E-prompts and keys stay bit-identical; task 1's and G move.
    auto prompts0 = dual.e_pool->prompts.detach().clone();
    auto keys0 = keys_of().detach().clone();
    auto g0 = dual.g_prompt.detach().clone();
    torch::optim::Adam adam(model->parameter_groups().normal, torch::optim::AdamOptions(1e-2));
    for (int step = 0; step < 3; ++step) {
      adam.zero_grad();
      model->loss(model->forward(x, ctx), y, ctx).backward();
      adam.step();
    }
    for (int64_t m = 0; m < 10; ++m) {
      CHECK(at::equal(dual.e_pool->prompts[m], prompts0[m]) == (m != 1));
      CHECK(at::equal(keys_of()[m], keys0[m]) == (m != 1));
    }
    CHECK_FALSE(at::equal(dual.g_prompt, g0));

    const auto path = dir.file("dualprompt.safetensors");
    model->save(path);
    auto names = read_safetensors(path).tensors;
    for (const char* name : {per_layer ? "selector.e_keys" : "selector.e_pool.keys", "selector.e_pool.prompts",
                             "selector.g_prompt"})
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

TEST_CASE("DualPrompt: the shared prompt pool copies task t-1's E-prompt, as dualprompt-pytorch's train_and_evaluate",
          "[selector][dualprompt]") {
  at::manual_seed(10);
  // The reference's loop (engine.py:182-225): at the start of task t > 0 copy E-prompts
  // [(t-1)k, tk) to [tk, (t+1)k) (all E-layers, key and value parts), keys only with
  // shared_prompt_key; then train (here: a random change of the task's entries).
  auto run = [](const DualPrompt::Options& o, int64_t tasks) {
    DualPrompt dual(o, kDims);
    const int64_t k = o.top_k;
    const bool per_layer = o.e_keys == EKeySets::per_layer;
    auto& keys = per_layer ? dual.e_keys : dual.e_pool->keys;
    const int64_t key_axis = per_layer ? 1 : 0;
    for (int64_t t = 0; t < tasks; ++t) {
      const auto prompts = dual.e_pool->prompts.detach().clone();
      const auto key_values = keys.detach().clone();
      const auto g = dual.g_prompt.detach().clone();
      dual.begin_task(test::task_ctx(t, true, tasks));
      CHECK(at::equal(dual.e_pool->prompts,
                      o.shared_prompt_pool ? test::direct_shared_copy(prompts, t, k, 0) : prompts));
      CHECK(at::equal(keys, o.shared_prompt_key ? test::direct_shared_copy(key_values, t, k, key_axis) : key_values));
      CHECK(at::equal(dual.g_prompt, g));
      at::NoGradGuard no_grad;
      dual.e_pool->prompts.narrow(0, t * k, k).add_(1.0);
      keys.narrow(key_axis, t * k, k).add_(1.0);
      dual.g_prompt.add_(1.0);
    }
    return dual.e_pool->prompts.detach().clone();
  };
  SECTION("default (dualprompt-pytorch configs): E-prompts shared, keys not") {
    DualPrompt::Options o;
    auto final_prompts = run(o, 10);
    // Each task starts from the previous task's E-prompt, so entry t ends as entry 0 + t.
    for (int64_t t = 1; t < 10; ++t)
      CHECK(at::allclose(final_prompts[t], final_prompts[0] + static_cast<double>(t)));
  }
  SECTION("top_k 2, keys shared too") {
    DualPrompt::Options o;
    o.top_k = 2;
    o.shared_prompt_key = true;
    run(o, 5);
  }
  SECTION("per-layer keys, shared") {
    DualPrompt::Options o = DualPrompt::Options::coda_repo();
    o.shared_prompt_pool = true;
    o.shared_prompt_key = true;
    run(o, 10);
  }
  SECTION("off: CODA-Prompt repo preset") { run(DualPrompt::Options::coda_repo(), 10); }
}

TEST_CASE("DualPrompt per-layer E-keys (CODA-Prompt repo): selection and pull loss equal a per-sample loop",
          "[selector][dualprompt]") {
  at::manual_seed(12);
  DualPrompt::Options o = DualPrompt::Options::coda_repo();  // G at 0, 1; E at 2, 3, 4; halves
  DualPrompt dual(o, kDims);
  {
    at::NoGradGuard no_grad;  // keys uniform(0, 1) are all alike; spread them so layers disagree
    dual.e_keys.copy_(at::randn_like(dual.e_keys));
  }
  CHECK_THROWS_WITH(dual.select_indices(at::randn({2, 16}), test::task_ctx(0, false)),
                    Catch::Contains("select_layer_indices"));
  int layers_disagree = 0;
  for (int trial = 0; trial < 10; ++trial) {
    const int64_t B = 1 + 3 * trial;
    auto q = at::randn({B, 16});
    // Evaluation (zoo.py:269-272, 280-282): each E-layer l takes the top-1 of cos(q, e_k_l) and
    // that E-prompt's first half as key prefix, second half as value prefix.
    const auto eval = test::task_ctx(9, false, 10);
    auto s = dual.select(q, eval);
    CHECK_FALSE(s.aux_loss.defined());
    auto layer_idx = dual.select_layer_indices(q, eval);
    REQUIRE(layer_idx.sizes() == at::IntArrayRef({3, B, 1}));
    std::vector<std::vector<std::vector<int64_t>>> tops;
    for (int64_t j = 0; j < 3; ++j) {
      tops.push_back(test::direct_top_k(test::direct_cosine(q, dual.e_keys[j]), 1));
      CHECK(test::to_rows(layer_idx[j]) == tops.back());
      const auto& layer = s.prompts.layers.at(static_cast<std::size_t>(2 + j));
      for (int64_t b = 0; b < B; ++b) {
        const auto p = dual.e_pool->prompts[tops[j][static_cast<std::size_t>(b)][0]][j];  // [20, 16]
        CHECK(at::equal(layer.key_prefix[b], p.narrow(0, 0, 10)));
        CHECK(at::equal(layer.value_prefix[b], p.narrow(0, 10, 10)));
      }
    }
    for (std::size_t b = 0; b < tops[0].size(); ++b)
      layers_disagree += tops[0][b] != tops[1][b] || tops[1][b] != tops[2][b];

    // Training task 3 (zoo.py:259-263, 275-278): every E-layer uses E-prompt 3; loss
    // sum over E-layers of (1.0 - cos_sim[:, task_id]).sum(), coefficient 1 (vit.py:191-192).
    const auto train = test::task_ctx(3, true, 10);
    auto t = dual.select(q, train);
    double want = 0;
    for (int64_t j = 0; j < 3; ++j) {
      const auto sim = test::direct_cosine(q, dual.e_keys[j]);
      for (int64_t b = 0; b < B; ++b) want += 1.0 - sim[static_cast<std::size_t>(b)][3];
      const auto& layer = t.prompts.layers.at(static_cast<std::size_t>(2 + j));
      for (int64_t b = 0; b < B; ++b)
        CHECK(at::equal(layer.key_prefix[b], dual.e_pool->prompts[3][j].narrow(0, 0, 10)));
    }
    REQUIRE(t.aux_loss.defined());
    CHECK(t.aux_loss.item<double>() == Approx(want).epsilon(1e-5));
  }
  CHECK(layers_disagree > 0);  // the per-layer choice was exercised

  SECTION("shared keys: every layer the same indices; pull_reduction sum = B x mean") {
    DualPrompt::Options shared;
    DualPrompt a(shared, kDims);
    shared.pull_reduction = PullReduction::sum;
    DualPrompt b(shared, kDims);
    {
      at::NoGradGuard no_grad;
      b.e_pool->keys.copy_(a.e_pool->keys);
      b.e_pool->prompts.copy_(a.e_pool->prompts);
      b.g_prompt.copy_(a.g_prompt);
    }
    auto q = at::randn({6, 16});
    auto idx = a.select_layer_indices(q, test::task_ctx(2, false));
    for (int64_t j = 0; j < 3; ++j) CHECK(at::equal(idx[j], a.select_indices(q, test::task_ctx(2, false))));
    const auto ctx = test::task_ctx(2, true);
    CHECK(b.select(q, ctx).aux_loss.item<double>() ==
          Approx(6 * a.select(q, ctx).aux_loss.item<double>()).epsilon(1e-6));
  }
}
