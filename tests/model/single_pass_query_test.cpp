// Single-pass queries (QueryOptions::layer): the query read from the prompted forward itself.
#include "clprompt/core/seed.hpp"
#include "clprompt/methods/coda_prompt.hpp"
#include "clprompt/methods/l2p.hpp"
#include "clprompt/methods/linear_probe.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which Catch's must override.
#include <catch2/catch.hpp>

using namespace clprompt;

namespace {

std::shared_ptr<VisionTransformer> seeded_vit(int64_t depth) {
  seed_everything(3);
  return std::make_shared<VisionTransformer>(test::tiny_vit(depth));
}

// Layers [begin, depth) of `vit` from tokens x, by hand (no prompts), then the final norm.
at::Tensor run_blocks(VisionTransformer& vit, at::Tensor x, int64_t begin, const Prompts& prompts) {
  for (int64_t i = begin; i < vit.depth(); ++i)
    x = vit.blocks->ptr<clprompt::detail::Block>(i)->forward(x, prompts.find_layer(i), i);
  return vit.norm->forward(x);
}

}  // namespace

TEST_CASE("a forward split at a layer equals the whole forward; the query is the [CLS] entering it",
          "[backbone][single-pass]") {
  auto vit = seeded_vit(4);
  vit->eval();
  at::NoGradGuard no_grad;
  const auto images = at::randn({3, 3, 8, 8}, make_generator(1, 1));
  Prompts prefixes;
  prefixes.add_prefix(2, at::randn({3, 2, 16}), at::randn({3, 2, 16}));
  prefixes.add_prefix(3, at::randn({3, 2, 16}), at::randn({3, 2, 16}));
  const auto tokens = vit->tokens_before(images, 2);
  CHECK(at::equal(vit->forward_features_from(tokens, 2, prefixes), vit->forward(images, prefixes)));
  // The tokens entering layer 2 are those of two un-prompted layers; the query is their [CLS]
  // through the final norm.
  auto by_hand = at::cat({(vit->cls_token + vit->pos_embed.narrow(1, 0, 1)).expand({3, 1, 16}),
                          vit->patch_embed->forward(images) + vit->pos_embed.narrow(1, 1, 4)},
                         1);
  for (int64_t i = 0; i < 2; ++i) by_hand = vit->blocks->ptr<clprompt::detail::Block>(i)->forward(by_hand, nullptr, i);
  CHECK(at::allclose(tokens, by_hand));
  CHECK(at::allclose(vit->query_of(tokens), vit->norm->forward(by_hand.select(1, 0))));
  // Prompt tuning's tokens enter before the split layer, after [CLS].
  Prompts inserted;
  inserted.input_tokens = at::randn({3, 5, 16});
  inserted.readout = Readout::prompt_mean;
  const auto expected = run_blocks(*vit,
                                   at::cat({tokens.narrow(1, 0, 1), inserted.input_tokens + vit->pos_embed.narrow(1, 0, 1),
                                            tokens.narrow(1, 1, 4)},
                                           1),
                                   2, Prompts{});
  CHECK(at::allclose(vit->forward_features_from(tokens, 2, inserted), expected.narrow(1, 1, 5).mean(1)));
  // Layers before the split have run: prompts for them are refused.
  Prompts early;
  early.add_prefix(1, at::randn({3, 2, 16}), at::randn({3, 2, 16}));
  CHECK_THAT(test::error_message<ShapeError>([&] { vit->forward_features_from(tokens, 2, early); }),
             Catch::Contains("prompts for layer 1") && Catch::Contains("starts at layer 2"));
}

TEST_CASE("a key-query model with a single-pass query selects from the layer's [CLS] in one forward",
          "[model][single-pass]") {
  auto vit = seeded_vit(4);
  KeyQueryPoolOptions pool;
  pool.pool_size = 6;
  pool.length = 2;
  pool.top_k = 2;
  auto model = make_l2p(vit, pool);
  model->set_query_layer(2);
  CHECK(model->query_layer() == 2);
  const auto ctx = test::task_ctx(0, true, 2);
  model->begin_task(ctx);
  model->eval();
  at::NoGradGuard no_grad;
  const auto images = at::randn({4, 3, 8, 8}, make_generator(2, 1));
  const auto out = model->forward(images, ctx);
  // By hand: the tokens entering layer 2, their [CLS] as the query, selection, the rest of the pass.
  const auto tokens = vit->tokens_before(images, 2);
  const auto q = vit->query_of(tokens);
  CHECK(at::allclose(model->query(images), q));
  auto selection = model->selector().select(q, ctx);
  const auto features = vit->forward_features_from(tokens, 2, selection.prompts);
  CHECK(at::allclose(out.features, features));
  CHECK(at::allclose(out.logits, model->head().logits(features, ctx)));
  // ... which differs from the two-pass query of the published form.
  model->set_query_layer(0);
  CHECK_FALSE(at::allclose(model->query(images), q));

  CHECK_THAT(test::error_message<ConfigError>([&] { model->set_query_layer(4); }),
             Catch::Contains("'query.layer'") && Catch::Contains("depth 4"));
  auto probe = make_linear_probe(seeded_vit(4));
  CHECK_THAT(test::error_message<ConfigError>([&] { probe->set_query_layer(1); }),
             Catch::Contains("QuerySource::backbone"));
}

TEST_CASE("single-pass options are checked against the prompt layers before any work", "[methods][single-pass][config]") {
  CodaPromptMethod::Options coda;
  coda.query.layer = 2;
  MethodSetting setting;
  setting.dims = {16, 6, 2};
  setting.num_tasks = 2;
  CHECK_THAT(test::error_message<ConfigError>([&] { CodaPromptMethod::check(coda, "method_options", setting); }),
             Catch::Contains("'method_options.selector.layers'") && Catch::Contains("below the single-pass query's layer 2"));
  coda.selector.layers = {2, 3, 4};
  CHECK_NOTHROW(CodaPromptMethod::check(coda, "method_options", setting));
  coda.query.layer = 6;
  CHECK_THAT(test::error_message<ConfigError>([&] { CodaPromptMethod::check(coda, "method_options", setting); }),
             Catch::Contains("'method_options.query.layer'"));
  L2PMethod::Options l2p;  // prompt tuning: the tokens move to the query's layer
  l2p.query.layer = 3;
  CHECK_NOTHROW(L2PMethod::check(l2p, "method_options", setting));
}
