#include <torch/nn/modules/container/parameterlist.h>

#include "clprompt/methods/finetune.hpp"
#include "clprompt/methods/linear_probe.hpp"
#include "clprompt/io/safetensors.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which Catch's must override.
#include <catch2/catch.hpp>

using namespace clprompt;

namespace {

// A user-written selector: one learned prompt per task, prepended at the input; at evaluation
// (no task identity) the prompts of all seen tasks are averaged. It satisfies the contract with
// nothing but the members it needs.
struct PerTaskPrompt : torch::nn::Module {
  static constexpr clprompt::QuerySource query_source = clprompt::QuerySource::none;
  PerTaskPrompt(int64_t length, int64_t dim) : length_(length), dim_(dim) {
    prompts = register_module("prompts", torch::nn::ParameterList());
  }
  void begin_task(const TaskContext& ctx) {
    // ParameterList keeps the tensor's requires_grad flag, so set it explicitly.
    while (static_cast<int64_t>(prompts->size()) <= ctx.task)
      prompts->append((at::randn({length_, dim_}) * 0.02).set_requires_grad(true));
  }
  Selection select(const at::Tensor& query, const TaskContext& ctx) {
    at::Tensor p;
    if (ctx.training) {
      p = prompts[ctx.task];
    } else {
      std::vector<at::Tensor> seen;
      for (int64_t t = 0; t <= ctx.task; ++t) seen.push_back(prompts[t]);
      p = at::stack(seen).mean(0);
    }
    Selection s;
    s.prompts.input_tokens = p.unsqueeze(0).expand({query.size(0), length_, dim_});
    s.aux_loss = 1e-3 * p.pow(2).sum();
    return s;
  }
  torch::nn::ParameterList prompts{nullptr};
  int64_t length_, dim_;
};
static_assert(PromptSelector<PerTaskPrompt>);

// A user-written head: nearest class mean of the features (no trainable weights), to show the
// head contract needs nothing from LinearHead.
struct NearestMeanHead : torch::nn::Module {
  explicit NearestMeanHead(int64_t dim) : dim_(dim) {}
  void begin_task(const TaskContext& ctx) {
    means_.push_back(register_buffer(fmt::format("means_{}", ctx.task), at::zeros({ctx.task_classes(), dim_})));
  }
  at::Tensor logits(const at::Tensor& features, const TaskContext&) { return -at::cdist(features, at::cat(means_)); }
  at::Tensor loss(const at::Tensor& logits, const at::Tensor& targets, const TaskContext&) {
    return at::cross_entropy_loss(logits, targets);
  }
  int64_t dim_;
  std::vector<at::Tensor> means_;
};
static_assert(ClassifierHead<NearestMeanHead>);

// Deliberately incomplete policies: the concepts reject them.
struct NoSelect : torch::nn::Module {
  static constexpr clprompt::QuerySource query_source = clprompt::QuerySource::backbone;
};
struct NotAModule {
  static constexpr clprompt::QuerySource query_source = clprompt::QuerySource::backbone;
  Selection select(const at::Tensor&, const TaskContext&) { return {}; }
};
struct NoLoss : torch::nn::Module {
  void begin_task(const TaskContext&) {}
  at::Tensor logits(const at::Tensor& f, const TaskContext&) { return f; }
};
static_assert(!PromptSelector<NoSelect>);
static_assert(!PromptSelector<NotAModule>);
static_assert(!ClassifierHead<NoLoss>);
static_assert(Backbone<VisionTransformer>);
static_assert(PromptSelector<NoPrompts>);
static_assert(ClassifierHead<LinearHead>);

}  // namespace

TEST_CASE("LinearHead grows per task and masks other tasks' logits in training", "[model][head]") {
  at::manual_seed(0);
  auto model = make_linear_probe(std::make_shared<VisionTransformer>(test::tiny_vit()));
  auto x = at::randn({4, 3, 8, 8});
  model->begin_task(test::task_ctx(0));
  CHECK(model->forward(x, test::task_ctx(0)).logits.sizes() == at::IntArrayRef({4, 2}));
  model->end_task();
  model->begin_task(test::task_ctx(1));
  auto out = model->forward(x, test::task_ctx(1));
  CHECK(out.logits.sizes() == at::IntArrayRef({4, 4}));

  // Task 1 owns labels 2 and 3; the masked loss gives task 0's classifier no gradient.
  auto loss = model->loss(out, at::tensor({2, 3, 2, 3}, at::kLong), test::task_ctx(1));
  loss.backward();
  auto& heads = model->head().heads;
  auto w0 = heads->ptr<torch::nn::LinearImpl>(0)->weight;
  auto w1 = heads->ptr<torch::nn::LinearImpl>(1)->weight;
  CHECK((!w0.grad().defined() || w0.grad().abs().sum().item<double>() == 0.0));
  CHECK(w1.grad().abs().sum().item<double>() > 0.0);
  // A target outside the current task is an error, not a silent -inf loss.
  CHECK_THROWS_WITH(model->loss(out, at::tensor({0, 3, 2, 3}, at::kLong), test::task_ctx(1)),
                    Catch::Contains("[2, 4)"));
  // At evaluation every seen class competes.
  CHECK(model->predict(x).max().item<int64_t>() < 4);
}

TEST_CASE("parameter groups follow the learning roles", "[model]") {
  auto vit = std::make_shared<VisionTransformer>(test::tiny_vit());
  const int64_t backbone_elements = [&] {
    int64_t n = 0;
    for (auto& p : vit->parameters()) n += p.numel();
    return n;
  }();
  auto probe = make_linear_probe(vit);
  probe->begin_task(test::task_ctx(0));
  auto g = probe->parameter_groups();
  CHECK(g.frozen_elements == backbone_elements);
  CHECK(g.normal_elements() == 16 * 2 + 2);
  CHECK(g.slow.empty());
  for (auto& p : vit->parameters()) CHECK_FALSE(p.requires_grad());

  auto slow = std::make_shared<FineTune>(std::make_shared<VisionTransformer>(test::tiny_vit()), std::make_shared<NoPrompts>(),
                                         std::make_shared<LinearHead>(LinearHeadOptions{}, BackboneDims{16, 2, 2}),
                                         ParameterRoles{LearningRole::slow, LearningRole::normal, LearningRole::normal});
  slow->begin_task(test::task_ctx(0));
  CHECK(slow->parameter_groups().slow_elements() == backbone_elements);
}

TEST_CASE("a user-written selector and head compose into a ContinualModel", "[model][policy]") {
  at::manual_seed(1);
  auto vit = std::make_shared<VisionTransformer>(test::tiny_vit());
  ContinualModel<VisionTransformer, PerTaskPrompt, LinearHead> model(
      vit, std::make_shared<PerTaskPrompt>(3, 16), std::make_shared<LinearHead>(LinearHeadOptions{}, dims_of(*vit)));
  model.begin_task(test::task_ctx(0));
  auto out = model.forward(at::randn({2, 3, 8, 8}), test::task_ctx(0));
  REQUIRE(out.aux_loss.defined());
  model.loss(out, at::tensor({0, 1}, at::kLong), test::task_ctx(0)).backward();
  CHECK(model.selector().prompts[0].grad().abs().sum().item<double>() > 0);  // gradient reaches the prompt
  for (auto& p : vit->parameters()) CHECK_FALSE(p.grad().defined());         // not the frozen ViT

  ContinualModel<VisionTransformer, NoPrompts, NearestMeanHead> nearest(vit, std::make_shared<NoPrompts>(),
                                                                        std::make_shared<NearestMeanHead>(16));
  nearest.begin_task(test::task_ctx(0));
  CHECK(nearest.predict(at::randn({2, 3, 8, 8})).sizes() == at::IntArrayRef({2}));
}

TEST_CASE("checkpoints round-trip grown models and reject mismatches by name", "[model][checkpoint]") {
  test::TempDir dir;
  at::manual_seed(2);
  auto model = make_finetune(std::make_shared<VisionTransformer>(test::tiny_vit()));
  for (int64_t t = 0; t < 2; ++t) {
    model->begin_task(test::task_ctx(t));
    model->end_task();
  }
  const auto path = dir.file("model.safetensors");
  model->save(path, {{"note", "test"}});
  auto x = at::randn({5, 3, 8, 8});

  auto restored = make_finetune(std::make_shared<VisionTransformer>(test::tiny_vit()));
  auto meta = restored->load(path);
  CHECK(meta.at("note") == "test");
  CHECK(restored->tasks_started() == 2);
  model->eval();
  restored->eval();
  CHECK(at::equal(model->forward(x, test::task_ctx(1, false)).logits, restored->forward(x, test::task_ctx(1, false)).logits));

  SECTION("a different architecture lists the mis-shaped tensors") {
    auto o = test::tiny_vit();
    o.embed_dim = 8;
    auto other = make_finetune(std::make_shared<VisionTransformer>(o));
    CHECK_THROWS_WITH(other->load(path), Catch::Contains(path) && Catch::Contains("backbone.pos_embed"));
  }
  SECTION("a file that is not a clprompt checkpoint is named as such") {
    const auto other = dir.file("weights.safetensors");
    write_safetensors(other, {{"pos_embed", at::zeros({1})}});
    auto fresh = make_finetune(std::make_shared<VisionTransformer>(test::tiny_vit()));
    CHECK_THROWS_WITH(fresh->load(other), Catch::Contains(other) && Catch::Contains("not a clprompt model checkpoint"));
  }
  SECTION("loading into a model that has started learning is refused") {
    CHECK_THROWS_AS(model->load(path), CheckpointError);
  }
}
