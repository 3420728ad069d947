#include <cmath>
#include <csignal>
#include <fstream>

#include "clprompt/core/interrupt.hpp"
#include "clprompt/core/seed.hpp"
#include "clprompt/data/dataset.hpp"
#include "clprompt/data/idx.hpp"
#include "clprompt/run/experiment.hpp"
#include "clprompt/learn/learner.hpp"
#include "clprompt/learn/metrics.hpp"
#include "clprompt/methods/finetune.hpp"
#include "clprompt/methods/linear_probe.hpp"
#include "clprompt/methods/slca.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which Catch's must override.
#include <catch2/catch.hpp>

using namespace clprompt;

namespace {

using test::texture_classes;

// A head whose loss is NaN, to check that divergence is caught and named.
struct NanHead : LinearHead {
  using LinearHead::LinearHead;
  at::Tensor loss(const at::Tensor& logits, const at::Tensor&, const TaskContext&) {
    return logits.sum() * std::numeric_limits<double>::quiet_NaN();
  }
};

// A head that records what the learner's consolidate() stream delivers.
struct RecordingHead : LinearHead {
  using LinearHead::LinearHead;
  void consolidate(const TaskContext& ctx, const FeatureStream& features) {
    int64_t images = 0;
    bool labels_in_task = true, no_grad = true;
    features([&](const at::Tensor& f, const at::Tensor& labels) {
      images += f.size(0);
      no_grad = no_grad && !f.requires_grad();
      labels_in_task = labels_in_task && labels.min().item<int64_t>() >= ctx.class_begin &&
                       labels.max().item<int64_t>() < ctx.class_end;
    });
    streamed.push_back(images);
    all_ok = all_ok && labels_in_task && no_grad;
  }
  std::vector<int64_t> streamed;
  bool all_ok = true;
};

}  // namespace

TEST_CASE("heads that consolidate get the task's training features once per task", "[learn][learner]") {
  auto train = texture_classes(4, 24, 1), test_set = texture_classes(4, 8, 2);
  ScenarioOptions so;
  so.num_tasks = 2;
  Scenario scenario(train, test_set, so, 3);
  auto vit = std::make_shared<VisionTransformer>(test::tiny_vit(1));
  auto head = std::make_shared<RecordingHead>(LinearHeadOptions{}, dims_of(*vit));
  ContinualModel<VisionTransformer, NoPrompts, RecordingHead> model(vit, std::make_shared<NoPrompts>(), head);
  static_assert(decltype(model)::head_consolidates);
  Learner<decltype(model)> learner(model, scenario, TrainOptions{}, TransformOptions{}, 3);
  LearnerHooks hooks;
  hooks.log = nullptr;
  learner.run(hooks);
  CHECK(head->streamed == std::vector<int64_t>{48, 48});
  CHECK(head->all_ok);
}

TEST_CASE("metrics follow the definitions on a known accuracy matrix", "[learn][metrics]") {
  const AccuracyMatrix a{{90}, {70, 80}, {50, 60, 85}};
  CHECK(final_average_accuracy(a) == Approx((50 + 60 + 85) / 3.0));
  const auto per_task = average_accuracy_per_task(a);
  CHECK(per_task == std::vector<double>{90, 75, (50 + 60 + 85) / 3.0});
  CHECK(average_incremental_accuracy(per_task) == Approx((90 + 75 + 65) / 3.0));
  // task 0: max(90, 70) - 50 = 40; task 1: 80 - 60 = 20
  CHECK(average_forgetting(a) == Approx(30.0));
  CHECK(std::isnan(average_forgetting({{90}})));
  CHECK_THROWS_AS(final_average_accuracy({{1, 2}}), ShapeError);
}

TEST_CASE("the learner runs a scenario task by task and is reproducible", "[learn][learner]") {
  auto train = texture_classes(4, 24, 1), test = texture_classes(4, 8, 2);
  ScenarioOptions so;
  so.num_tasks = 2;
  TransformOptions to;
  TrainOptions tr;
  tr.optim.lr = 0.1;
  tr.epochs = 8;
  tr.batch_size = 16;

  auto run_once = [&] {
    seed_everything(7);
    Scenario scenario(train, test, so, 7);
    auto model = make_linear_probe(std::make_shared<VisionTransformer>(test::tiny_vit(1)));
    Learner<FineTune> learner(*model, scenario, tr, to, 7);
    LearnerHooks hooks;
    hooks.log = nullptr;
    int calls = 0;
    hooks.on_task_end = [&](const Results& r) { CHECK(r.completed_tasks() == ++calls); };
    auto results = learner.run(hooks);
    CHECK(calls == 2);
    return results;
  };
  const auto r1 = run_once();
  REQUIRE(r1.accuracy.size() == 2);
  CHECK(r1.accuracy[0].size() == 1);
  CHECK(r1.accuracy[1].size() == 2);
  INFO("epoch losses " << Json(r1.tasks[0].epoch_loss).dump());
  CHECK(r1.accuracy[0][0] > 75.0);  // a visible, 2-way task is learnt by a linear probe
  CHECK(r1.tasks[0].train_images == 8 * 48);
  CHECK(r1.tasks[1].eval_images == 32);
  CHECK(r1.tasks[0].epoch_loss.size() == 8);
  const auto j = r1.to_json();
  for (const char* key : {"accuracy_matrix", "final_average_accuracy", "average_incremental_accuracy", "forgetting",
                          "class_order", "tasks"})
    CHECK(j.contains(key));
  CHECK(run_once().accuracy == r1.accuracy);  // one seed fixes everything
}

TEST_CASE("a NaN loss stops training with a named error", "[learn][learner]") {
  auto train = texture_classes(2, 8, 1), test = texture_classes(2, 4, 2);
  ScenarioOptions so;
  so.num_tasks = 1;
  Scenario scenario(train, test, so, 1);
  auto vit = std::make_shared<VisionTransformer>(test::tiny_vit(1));
  ContinualModel<VisionTransformer, NoPrompts, NanHead> model(vit, std::make_shared<NoPrompts>(),
                                                              std::make_shared<NanHead>(LinearHeadOptions{}, dims_of(*vit)));
  Learner<decltype(model)> learner(model, scenario, TrainOptions{}, TransformOptions{}, 1);
  LearnerHooks hooks;
  hooks.log = nullptr;
  CHECK_THROWS_WITH(learner.run(hooks), Catch::Contains("diverged") && Catch::Contains("task 0, epoch 0, batch 0"));
}

TEST_CASE("configurations resolve over the method's defaults and name bad fields", "[learn][config]") {
  auto c = resolve_config(builtin_methods(), "linear-probe", parse_override("train.lr=0.5"));
  CHECK(c.train.optim.lr == 0.5);
  CHECK(c.method == "linear-probe");
  CHECK(c.data.dataset == "fashion-mnist");
  CHECK(parse_override("scenario.class_order=[1,0]") == Json::parse(R"({"scenario": {"class_order": [1, 0]}})"));
  CHECK(parse_override("data.root=/tmp/x") == Json::parse(R"({"data": {"root": "/tmp/x"}})"));
  CHECK_THROWS_WITH(resolve_config(builtin_methods(), "no-such-method"), Catch::Contains("finetune") && Catch::Contains("linear-probe"));
  CHECK_THROWS_WITH(resolve_config(builtin_methods(), "finetune", Json::parse(R"({"train": {"lr": -1}})")), Catch::Contains("'train.lr'"));
  CHECK_THROWS_WITH(resolve_config(builtin_methods(), "finetune", Json::parse(R"({"trian": {}})")), Catch::Contains("'trian'"));
  CHECK_THROWS_WITH(resolve_config(builtin_methods(), "finetune", Json::parse(R"({"data": {"dataset": "imagenet"}})")),
                    Catch::Contains("'data.dataset'"));
  CHECK_THROWS_WITH(resolve_config(builtin_methods(), "finetune", Json::parse(R"({"method": "linear-probe"})")),
                    Catch::Contains("'method'"));
  CHECK_THROWS_AS(parse_override("novalue"), ConfigError);
}

TEST_CASE("run_experiment writes results, plot and checkpoint from IDX files", "[learn][experiment]") {
  test::TempDir dir;
  // A tiny data set in the Fashion-MNIST file layout (gzip IDX), classes drawn as patches.
  test::write_idx_files(dir.str(), "train", *texture_classes(10, 6, 1));
  test::write_idx_files(dir.str(), "t10k", *texture_classes(10, 3, 2));

  Json overrides{{"data", {{"root", dir.path().string()}}},
                 {"backbone", write_options(test::tiny_vit(1))},
                 {"pretrained", ""},
                 {"scenario", {{"train_per_class", 0}}},
                 {"train", {{"batch_size", 8}}},
                 {"transform", {{"horizontal_flip", false}}}};
  const auto config = resolve_config(builtin_methods(), "finetune", overrides);
  ExperimentOutput output{dir.file("out"), {}};
  output.hooks.log = nullptr;
  const auto results = run_experiment(builtin_methods(), config, output);
  CHECK(results.complete());
  CHECK(results.num_tasks == 5);
  CHECK(results.config.at("data").at("root") == dir.path().string());
  std::ifstream in(dir.file("out/results.json"));
  const auto j = Json::parse(in);
  CHECK(j.at("completed_tasks") == 5);
  CHECK(j.at("accuracy_matrix").size() == 5);
  CHECK(j.at("notes").at(0).get<std::string>().find("randomly initialised") != std::string::npos);
  CHECK(std::filesystem::file_size(dir.file("out/accuracy.svg")) > 500);
  auto restored = make_finetune(std::make_shared<VisionTransformer>(test::tiny_vit(1)));
  CHECK(restored->load(dir.file("out/model.safetensors")).at("clprompt.method") == "finetune");
  CHECK(restored->tasks_started() == 5);

  SECTION("a missing data directory is a named error") {
    auto bad = config;
    bad.data.root = dir.file("nowhere");
    CHECK_THROWS_WITH(run_experiment(builtin_methods(), bad, {}), Catch::Contains(dir.file("nowhere")));
  }
}

TEST_CASE("a learner stopped by a signal resumes from its checkpoint to the uninterrupted results",
          "[learn][learner][resume]") {
  auto train = texture_classes(4, 24, 1), test_set = texture_classes(4, 8, 2);
  ScenarioOptions so;
  so.num_tasks = 2;
  TrainOptions tr;
  tr.optim.lr = 0.05;
  tr.epochs = 3;
  tr.batch_size = 16;  // 3 batches an epoch
  test::TempDir dir;
  const auto path = (dir.path() / "resume.safetensors").string();
  // SLCA: a slow-learning backbone, Adam moments, class statistics and the alignment's generator.
  auto make_model = [] {
    seed_everything(11);
    return make_slca(std::make_shared<VisionTransformer>(test::tiny_vit(1)));
  };
  // stop_after_first_task: SIGINT arrives when task 1 ends; the learner acts on it at task 2's first step.
  auto run = [&](Scenario& scenario, auto& model, bool stop_after_first_task, const ResumeState* resume) {
    Learner<SLCA> learner(*model, scenario, tr, TransformOptions{}, 11);
    LearnerHooks hooks;
    hooks.log = nullptr;
    hooks.checkpoint.path = path;
    hooks.checkpoint.every_steps = 2;
    InterruptHandler interrupts;
    if (stop_after_first_task) hooks.on_task_end = [](const Results&) { std::raise(SIGINT); };
    return resume ? learner.resume(*resume, hooks) : learner.run(hooks);
  };
  Scenario scenario(train, test_set, so, 11);
  auto reference_model = make_model();
  const auto reference = run(scenario, reference_model, false, nullptr);
  std::filesystem::remove(path);

  // Stopped by SIGINT after task 1 (at task 2's first step: a checkpoint mid-epoch), then resumed.
  auto first = make_model();
  const auto stopped = test::error_message<Interrupted>([&] { run(scenario, first, true, nullptr); });
  CHECK_THAT(stopped, Catch::Contains("stopped by signal 2 at task 2, epoch 1, batch 1; checkpoint written"));
  const auto state = read_resume_checkpoint(path);
  CHECK(state.position.task == 1);
  CHECK(state.position.epoch == 0);
  CHECK(state.position.batch == 1);
  CHECK(state.results.completed_tasks() == 1);
  auto second = make_model();
  const auto resumed = run(scenario, second, false, &state);
  CHECK(resumed.accuracy == reference.accuracy);
  REQUIRE(resumed.tasks.size() == 2);
  for (std::size_t t = 0; t < 2; ++t) CHECK(resumed.tasks[t].epoch_loss == reference.tasks[t].epoch_loss);
  const auto reference_state = state_dict(*reference_model);
  for (const auto& [name, t] : state_dict(*second)) {
    INFO(name);
    CHECK(t.equal(reference_state.at(name)));  // every tensor, the alignment's generator state included
  }

  // Another scenario (other class order), another model state or a used model: refused by name.
  Scenario other(train, test_set, so, 12);
  auto third = make_model();
  CHECK_THAT(test::error_message<CheckpointError>([&] { run(other, third, false, &state); }),
             Catch::Contains("written for another scenario"));
  CHECK_THAT(test::error_message<CheckpointError>([&] { run(scenario, second, false, &state); }),
             Catch::Contains("needs a freshly constructed model"));
  ResumeState broken = state;
  broken.model.erase(broken.model.begin());
  auto fourth = make_model();
  CHECK_THAT(test::error_message<CheckpointError>([&] { run(scenario, fourth, false, &broken); }),
             Catch::Contains("missing"));
}
