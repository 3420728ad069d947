#include "clprompt/selector/key_query_pool.hpp"

#include <set>

#include <torch/optim/adam.h>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/head/linear.hpp"
#include "clprompt/io/state_dict.hpp"
#include "clprompt/model/continual_model.hpp"
#include "selector/pool_reference.hpp"
#include "clprompt/methods/l2p.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which Catch's must override.
#include <catch2/catch.hpp>

using namespace clprompt;

namespace {

static_assert(PromptSelector<KeyQueryPool>);
static_assert(KeyQueryPool::query_source == clprompt::QuerySource::backbone);

constexpr BackboneDims kPoolDims{16, 5, 2};

using L2PModel = L2P;

std::shared_ptr<L2PModel> make_model(const KeyQueryPool::Options& o) {
  return make_l2p(std::make_shared<VisionTransformer>(test::tiny_vit(5)), o);
}

}  // namespace

TEST_CASE("KeyQueryPool options: l2p-pytorch defaults, JSON round trip, errors name the field", "[selector][l2p]") {
  KeyQueryPool::Options o;
  CHECK(o.pool_size == 10);
  CHECK(o.length == 5);
  CHECK(o.top_k == 5);
  CHECK(o.pull_coefficient == 0.1);
  CHECK(o.batchwise_train);
  CHECK_FALSE(o.batchwise_eval);
  CHECK_FALSE(o.prompt_mask_by_task);
  CHECK(o.injection == PromptInjection::prompt_tuning);
  CHECK(o.readout == Readout::prompt_mean);
  const auto pp = KeyQueryPool::Options::l2p_plus_plus();
  CHECK((pp.pool_size == 30 && pp.length == 20 && pp.top_k == 5 && pp.prefix_layers == std::vector<int64_t>{0}));
  CHECK(pp.injection == PromptInjection::prefix_tuning);

  auto j = write_options(pp);
  CHECK(j.at("injection") == "prefix_tuning");
  CHECK(j.at("prefix_style") == "halves");
  auto back = options_from_json<KeyQueryPool::Options>(j);
  CHECK(write_options(back) == j);

  auto message = [](KeyQueryPool::Options bad) {
    return test::error_message<ConfigError>([&] { KeyQueryPool(bad, kPoolDims); });
  };
  auto bad = o;
  bad.top_k = 11;
  CHECK_THAT(message(bad), Catch::Contains("'top_k'") && Catch::Contains("pool_size = 10"));
  bad = o;
  bad.length = 0;
  CHECK_THAT(message(bad), Catch::Contains("'length'"));
  bad = o;
  bad.init_high = -2;
  CHECK_THAT(message(bad), Catch::Contains("'init_high'"));
  bad = pp;
  bad.length = 7;
  CHECK_THAT(message(bad), Catch::Contains("'length'") && Catch::Contains("even"));
  bad = pp;
  bad.prefix_layers = {0, 5};
  CHECK_THAT(message(bad), Catch::Contains("'prefix_layers[1]'") && Catch::Contains("[0, 5)"));
  bad = pp;
  bad.readout = Readout::prompt_mean;
  CHECK_THAT(message(bad), Catch::Contains("'readout'"));
  CHECK_THROWS_WITH(options_from_json<KeyQueryPool::Options>(Json{{"pool_sise", 3}}, "selector"),
                    Catch::Contains("selector.pool_sise"));
  CHECK_THROWS_WITH(options_from_json<KeyQueryPool::Options>(Json{{"injection", "suffix"}}, "selector"),
                    Catch::Contains("selector.injection") && Catch::Contains("prompt_tuning"));
}

TEST_CASE("KeyQueryPool options that reproduce a repository: defaults, presets, JSON, validation", "[selector][l2p]") {
  // Defaults: l2p-pytorch configs/cifar100_l2p.py:86-87 and the paper's pull constraint.
  const KeyQueryPool::Options o;
  CHECK_FALSE(o.shared_prompt_pool);
  CHECK_FALSE(o.shared_prompt_key);
  CHECK(o.pull_loss == PullLossKind::own_keys);
  CHECK(o.pull_loss_chunk == 0);
  // l2p_plus_plus() keeps clprompt's form; l2p_plus_plus_coda_repo() differs only in the loss.
  const auto pp = KeyQueryPool::Options::l2p_plus_plus();
  CHECK(pp.pull_loss == PullLossKind::own_keys);
  CHECK(pp.pull_loss_chunk == 0);
  CHECK(pp.pull_coefficient == 0.1);
  const auto repo = KeyQueryPool::Options::l2p_plus_plus_coda_repo();
  CHECK(repo.pull_loss == PullLossKind::all_pairs);
  CHECK(repo.pull_loss_chunk == 32);
  CHECK(repo.pull_coefficient == 1.0);
  {
    auto same = repo;
    same.pull_loss = pp.pull_loss;
    same.pull_loss_chunk = pp.pull_loss_chunk;
    same.pull_coefficient = pp.pull_coefficient;
    CHECK(write_options(same) == write_options(pp));
  }
  // l2p-pytorch configs/five_datasets_l2p.py:79-92.
  const auto five = KeyQueryPool::Options::five_datasets();
  CHECK((five.pool_size == 20 && five.length == 10 && five.top_k == 4 && five.pull_coefficient == 0.5));
  CHECK((five.prompt_mask_by_task && five.shared_prompt_pool && !five.shared_prompt_key));
  CHECK_NOTHROW(KeyQueryPool(five, kPoolDims));

  for (const auto& preset : {repo, five}) {
    auto j = write_options(preset);
    CHECK(write_options(options_from_json<KeyQueryPool::Options>(j)) == j);
  }
  auto j = write_options(repo);
  CHECK(j.at("pull_loss") == "all_pairs");
  CHECK(j.at("pull_loss_chunk") == 32);
  CHECK(j.at("shared_prompt_pool") == false);
  CHECK_THROWS_WITH(options_from_json<KeyQueryPool::Options>(Json{{"pull_loss", "pairs"}}, "selector"),
                    Catch::Contains("selector.pull_loss") && Catch::Contains("all_pairs"));

  auto message = [](KeyQueryPool::Options bad) {
    return test::error_message<ConfigError>([&] { KeyQueryPool(bad, kPoolDims); });
  };
  auto bad = o;
  bad.shared_prompt_pool = true;  // without the prompt mask no task owns slots
  CHECK_THAT(message(bad), Catch::Contains("'shared_prompt_pool'") && Catch::Contains("prompt_mask_by_task"));
  bad = o;
  bad.shared_prompt_key = true;
  CHECK_THAT(message(bad), Catch::Contains("'shared_prompt_key'") && Catch::Contains("prompt_mask_by_task"));
  bad = repo;
  bad.pull_loss_chunk = -1;
  CHECK_THAT(message(bad), Catch::Contains("'pull_loss_chunk'"));
  bad = pp;
  bad.pull_loss_chunk = 32;  // own_keys has no chunks
  CHECK_THAT(message(bad), Catch::Contains("'pull_loss_chunk'") && Catch::Contains("all_pairs"));
  CHECK_THROWS_WITH(bad.validate("method_options.selector"),
                    Catch::Contains("'method_options.selector.pull_loss_chunk'"));
}

TEST_CASE("KeyQueryPool: shared prompt pool and key copy task t-1's slots, as l2p-pytorch's train_and_evaluate",
          "[selector][l2p]") {
  at::manual_seed(11);
  // The reference's loop (engine.py:182-225): at the start of task t > 0 copy [(t-1)k, tk) to
  // [tk, (t+1)k); then train (here: a random change of the task's rows).
  auto run = [](KeyQueryPool::Options o, int64_t tasks) {
    KeyQueryPool pool(o, kPoolDims);
    const int64_t k = o.top_k;
    for (int64_t t = 0; t < tasks; ++t) {
      const auto prompts = pool.pool->prompts.detach().clone();
      const auto keys = pool.pool->keys.detach().clone();
      pool.begin_task(test::task_ctx(t, true, tasks));
      const auto want_prompts = o.shared_prompt_pool ? test::direct_shared_copy(prompts, t, k, 0) : prompts;
      const auto want_keys = o.shared_prompt_key ? test::direct_shared_copy(keys, t, k, 0) : keys;
      CHECK(at::equal(pool.pool->prompts, want_prompts));
      CHECK(at::equal(pool.pool->keys, want_keys));
      if (t > 0 && o.shared_prompt_pool)  // the copy is task t-1's trained prompts, not its initial ones
        CHECK(at::equal(pool.pool->prompts.narrow(0, t * k, k), pool.pool->prompts.narrow(0, (t - 1) * k, k)));
      at::NoGradGuard no_grad;  // "training" task t moves its own slots
      pool.pool->prompts.narrow(0, t * k, k).add_(at::randn_like(pool.pool->prompts.narrow(0, t * k, k)));
      pool.pool->keys.narrow(0, t * k, k).add_(at::randn_like(pool.pool->keys.narrow(0, t * k, k)));
    }
  };
  SECTION("5-datasets preset: prompts shared, keys not") { run(KeyQueryPool::Options::five_datasets(), 5); }
  SECTION("prompts and keys, prefix tuning (every layer, key and value halves)") {
    auto o = KeyQueryPool::Options::l2p_plus_plus();
    o.prefix_layers = {0, 2};
    o.top_k = 3;
    o.pool_size = 12;
    o.prompt_mask_by_task = true;
    o.shared_prompt_pool = true;
    o.shared_prompt_key = true;
    run(o, 4);
  }
  SECTION("keys only") {
    KeyQueryPool::Options o;
    o.top_k = 2;
    o.prompt_mask_by_task = true;
    o.shared_prompt_key = true;
    run(o, 5);
  }
  SECTION("default: no copy") {
    KeyQueryPool::Options o;
    o.top_k = 2;
    o.prompt_mask_by_task = true;
    run(o, 5);
  }
}

TEST_CASE("KeyQueryPool: the all-pairs pull loss (CODA-Prompt repo's L2P++) equals a loop over pairs and chunks",
          "[selector][l2p]") {
  at::manual_seed(12);
  auto o = KeyQueryPool::Options::l2p_plus_plus_coda_repo();
  for (int64_t chunk : {int64_t{0}, int64_t{32}, int64_t{5}}) {
    o.pull_loss_chunk = chunk;
    KeyQueryPool pool(o, kPoolDims);
    for (int64_t B : {int64_t{1}, int64_t{7}, int64_t{70}, int64_t{128}}) {
      auto q = at::randn({B, 16});
      const auto sim = test::direct_cosine(q, pool.pool->keys);
      const auto idx = test::direct_top_k(sim, 5);  // L2P++: per-sample top-5, no batch-wise vote
      CHECK(test::to_rows(pool.select_indices(q, test::task_ctx(0, true))) == idx);
      auto s = pool.select(q, test::task_ctx(0, true));
      REQUIRE(s.aux_loss.defined());
      const double want = test::direct_all_pairs_pull(sim, idx, static_cast<std::size_t>(chunk));
      CHECK(s.aux_loss.item<double>() == Approx(want).epsilon(1e-5));
    }
  }
  // chunk 32 at batch 128 is the sum of four whole-batch losses on consecutive quarters, as the
  // four DataParallel replicas computed them (CODA-Prompt models/vit.py:186-192, learners/prompt.py:37).
  o.pull_loss_chunk = 32;
  KeyQueryPool chunked(o, kPoolDims);
  o.pull_loss_chunk = 0;
  KeyQueryPool whole(o, kPoolDims);
  {
    at::NoGradGuard no_grad;
    whole.pool->keys.copy_(chunked.pool->keys);
    whole.pool->prompts.copy_(chunked.pool->prompts);
  }
  auto q = at::randn({128, 16});
  double replicas = 0;
  for (int64_t r = 0; r < 4; ++r)
    replicas += whole.select(q.narrow(0, 32 * r, 32), test::task_ctx(0, true)).aux_loss.item<double>();
  CHECK(chunked.select(q, test::task_ctx(0, true)).aux_loss.item<double>() == Approx(replicas).epsilon(1e-6));
  CHECK(whole.select(q, test::task_ctx(0, true)).aux_loss.item<double>() > 3 * replicas);  // not the same loss

  // The gradient reaches the selected keys only (the query is a constant).
  auto s = chunked.select(q, test::task_ctx(0, true));
  s.aux_loss.backward();
  std::set<int64_t> used;
  for (const auto& row : test::to_rows(chunked.select_indices(q, test::task_ctx(0, true))))
    used.insert(row.begin(), row.end());
  auto g = chunked.pool->keys.grad();
  for (int64_t m = 0; m < 30; ++m) CHECK((g[m].abs().sum().item<double>() > 0) == (used.count(m) == 1));
}

TEST_CASE("KeyQueryPool: shapes, state-dict names and the injected tokens", "[selector][l2p]") {
  at::manual_seed(3);
  KeyQueryPool::Options o;
  KeyQueryPool pool(o, kPoolDims);
  auto names = state_dict(pool);
  REQUIRE(names.size() == 2);
  CHECK(names.at("pool.keys").sizes() == at::IntArrayRef({10, 16}));
  CHECK(names.at("pool.prompts").sizes() == at::IntArrayRef({10, 5, 16}));
  for (auto& p : pool.parameters()) {
    CHECK(p.requires_grad());
    CHECK(p.min().item<double>() >= -1.0);
    CHECK(p.max().item<double>() <= 1.0);
  }

  auto q = at::randn({6, 16});
  for (bool training : {true, false}) {
    auto s = pool.select(q, test::task_ctx(0, training));
    CHECK(s.prompts.input_tokens.sizes() == at::IntArrayRef({6, 25, 16}));
    CHECK(s.prompts.readout == Readout::prompt_mean);
    CHECK(s.prompts.layers.empty());
    CHECK(s.aux_loss.defined() == training);
    if (training) CHECK(s.aux_loss.dim() == 0);
    // The tokens are the selected prompts, concatenated in selection order.
    auto idx = pool.select_indices(q, test::task_ctx(0, training));
    for (int64_t b = 0; b < 6; ++b)
      for (int64_t j = 0; j < 5; ++j)
        CHECK(at::equal(s.prompts.input_tokens[b].narrow(0, j * 5, 5), pool.pool->prompts[idx[b][j].item<int64_t>()]));
  }
  CHECK_THROWS_WITH(pool.select(at::randn({6, 8}), test::task_ctx(0, true)), Catch::Contains("[B, 16]") && Catch::Contains("[6, 8]"));

  SECTION("L2P++: halves prefixes at layer 0, [CLS] readout") {
    KeyQueryPool pp(KeyQueryPool::Options::l2p_plus_plus(), kPoolDims);
    CHECK(state_dict(pp).at("pool.prompts").sizes() == at::IntArrayRef({30, 1, 20, 16}));
    auto s = pp.select(q, test::task_ctx(0, false));
    CHECK_FALSE(s.prompts.input_tokens.defined());
    CHECK(s.prompts.readout == Readout::class_token);
    REQUIRE(s.prompts.layers.size() == 1);
    const auto& l0 = s.prompts.layers[0];
    CHECK(l0.key_prefix.sizes() == at::IntArrayRef({6, 50, 16}));  // 5 prompts x 10 tokens
    auto idx = pp.select_indices(q, test::task_ctx(0, false));
    for (int64_t j = 0; j < 5; ++j) {
      auto p = pp.pool->prompts[idx[2][j].item<int64_t>()][0];  // [20, 16]
      CHECK(at::equal(l0.key_prefix[2].narrow(0, j * 10, 10), p.narrow(0, 0, 10)));
      CHECK(at::equal(l0.value_prefix[2].narrow(0, j * 10, 10), p.narrow(0, 10, 10)));
    }
  }
}

TEST_CASE("KeyQueryPool: top-k, batch-wise top-k and the pull loss match a direct computation", "[selector][l2p]") {
  at::manual_seed(4);
  KeyQueryPool::Options o;
  o.top_k = 3;
  o.pull_coefficient = 0.25;
  o.batchwise_eval = false;
  o.batchwise_train = true;
  KeyQueryPool pool(o, kPoolDims);
  int ties = 0;
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t B = 1 + trial % 9;
    auto q = at::randn({B, 16});
    const auto sim = test::direct_cosine(q, pool.pool->keys);
    const auto per_sample = test::direct_top_k(sim, 3);
    CHECK(test::to_rows(pool.select_indices(q, test::task_ctx(0, false))) == per_sample);

    const auto batchwise = test::direct_batchwise(per_sample, 3);
    const auto rows = test::to_rows(pool.select_indices(q, test::task_ctx(0, true)));
    for (const auto& row : rows) CHECK(row == batchwise);
    {  // count how often the tie rule was exercised
      std::map<int64_t, int64_t> counts;
      for (const auto& r : per_sample)
        for (auto id : r) ++counts[id];
      std::map<int64_t, int> by_count;
      for (auto [id, c] : counts) ++by_count[c];
      for (auto [c, n] : by_count) ties += n > 1;
    }

    auto train = pool.select(q, test::task_ctx(0, true));
    CHECK(train.aux_loss.item<double>() == Approx(0.25 * test::direct_pull(sim, rows)).epsilon(1e-5));
    // l2p-pytorch's form: -coeff * reduce_sim differs only by the constant coeff * k.
    auto q_hat = clprompt::detail::l2_normalize(q);
    auto k_hat = clprompt::detail::l2_normalize(pool.pool->keys.detach());
    auto idx = pool.select_indices(q, test::task_ctx(0, true));
    const double reduce_sim = (k_hat.index_select(0, idx.flatten()).view({B, 3, 16}) * q_hat.unsqueeze(1)).sum().item<double>() / B;
    CHECK(train.aux_loss.item<double>() == Approx(0.25 * (3 - reduce_sim)).epsilon(1e-5));
  }
  CHECK(ties > 0);  // the random batches did contain equal counts

  SECTION("batchwise_top_k breaks ties by the lower index") {
    auto idx = at::tensor({4, 7, 2, 7, 4, 9}, at::kLong).view({3, 2});  // counts: 4:2 7:2 2:1 9:1
    CHECK(test::to_rows(clprompt::detail::batchwise_top_k(idx, 10, 3).unsqueeze(0)) == std::vector<std::vector<int64_t>>{{4, 7, 2}});
  }
}

TEST_CASE("KeyQueryPool: prompt mask by task uses the task's slice, trains only it", "[selector][l2p]") {
  at::manual_seed(5);
  KeyQueryPool::Options o;
  o.pool_size = 10;
  o.top_k = 3;
  o.prompt_mask_by_task = true;
  KeyQueryPool pool(o, kPoolDims);
  auto q = at::randn({4, 16});
  auto idx = pool.select_indices(q, test::task_ctx(2, true));
  for (const auto& row : test::to_rows(idx)) CHECK(row == std::vector<int64_t>{6, 7, 8});
  // Evaluation has no task identity: top-k over the whole pool.
  CHECK(test::to_rows(pool.select_indices(q, test::task_ctx(2, false))) ==
        test::direct_top_k(test::direct_cosine(q, pool.pool->keys), 3));

  auto s = pool.select(q, test::task_ctx(2, true));
  CHECK(at::equal(s.prompts.input_tokens[1], pool.pool->prompts.narrow(0, 6, 3).reshape({15, 16})));
  (s.prompts.input_tokens.pow(2).sum() + s.aux_loss).backward();
  for (const auto* t : {&pool.pool->prompts, &pool.pool->keys}) {
    auto g = t->grad();
    CHECK(g.narrow(0, 0, 6).abs().sum().item<double>() == 0.0);
    CHECK(g.narrow(0, 9, 1).abs().sum().item<double>() == 0.0);
    for (int64_t m = 6; m < 9; ++m) CHECK(g[m].abs().sum().item<double>() > 0.0);
  }

  // Task 3 would need prompts [9, 12) of a pool of 10.
  CHECK_THROWS_WITH(pool.begin_task(test::task_ctx(3, true, 4)),
                    Catch::Contains("'pool_size'") && Catch::Contains("[9, 12)"));
  CHECK_THROWS_AS(pool.select(q, test::task_ctx(3, true, 4)), ConfigError);
  CHECK_NOTHROW(pool.select(q, test::task_ctx(3, false, 4)));
}

TEST_CASE("ContinualModel<ViT, KeyQueryPool, LinearHead>: training, frozen slices, checkpoints", "[selector][l2p][model]") {
  test::TempDir dir;
  at::manual_seed(6);
  auto x = at::randn({4, 3, 8, 8});
  auto y = at::tensor({2, 3, 3, 2}, at::kLong);

  for (const auto& options : {[] {
                                KeyQueryPool::Options o;
                                o.top_k = 2;
                                o.prompt_mask_by_task = true;
                                return o;
                              }(),
                              KeyQueryPool::Options::l2p_plus_plus()}) {
    auto model = make_model(options);
    model->begin_task(test::task_ctx(0, true));
    model->end_task();
    model->begin_task(test::task_ctx(1, true));
    const auto ctx = test::task_ctx(1, true);

    auto out = model->forward(x, ctx);
    CHECK(out.logits.sizes() == at::IntArrayRef({4, 4}));
    REQUIRE(out.aux_loss.defined());
    model->loss(out, y, ctx).backward();
    for (auto& p : model->backbone().parameters()) CHECK_FALSE(p.grad().defined());
    CHECK(model->selector().pool->keys.grad().abs().sum().item<double>() > 0);
    CHECK(model->selector().pool->prompts.grad().abs().sum().item<double>() > 0);

    if (options.prompt_mask_by_task) {
      // Task 1 trains prompts [2, 4) only; everything else stays bit-identical under Adam.
      auto prompts0 = model->selector().pool->prompts.detach().clone();
      auto keys0 = model->selector().pool->keys.detach().clone();
      torch::optim::Adam adam(model->parameter_groups().normal, torch::optim::AdamOptions(1e-2));
      for (int step = 0; step < 3; ++step) {
        adam.zero_grad();
        model->loss(model->forward(x, ctx), y, ctx).backward();
        adam.step();
      }
      auto& pool = *model->selector().pool;
      for (int64_t m = 0; m < 10; ++m) {
        const bool trained = m == 2 || m == 3;
        CHECK(at::equal(pool.prompts[m], prompts0[m]) != trained);
        CHECK(at::equal(pool.keys[m], keys0[m]) != trained);
      }
    }

    // save/load: same names, same outputs.
    const auto path = dir.file("l2p.safetensors");
    model->save(path);
    auto names = read_safetensors(path).tensors;
    CHECK(names.count("selector.pool.keys") == 1);
    CHECK(names.count("selector.pool.prompts") == 1);
    auto restored = make_model(options);
    restored->load(path);
    model->eval();
    restored->eval();
    at::NoGradGuard no_grad;
    CHECK(at::equal(model->forward(x, ctx.for_evaluation()).logits, restored->forward(x, ctx.for_evaluation()).logits));
    CHECK(at::equal(model->forward(x, ctx).aux_loss, restored->forward(x, ctx).aux_loss));
  }
}
