// Device-aware tests ([device]): on the CPU in every run, and on the GPU with
// CLPROMPT_TEST_DEVICE=cuda (CTest cuda.device_tests; skipped without a GPU). They check that a
// training step, a whole run with class statistics and alignment, checkpoints and mixed precision
// give on the test device what they give on the CPU.
#include <cmath>

#include "clprompt/methods/coda_prompt.hpp"
#include "clprompt/methods/dualprompt.hpp"
#include "clprompt/methods/finetune.hpp"
#include "clprompt/methods/l2p.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/methods/slca.hpp"
#include "clprompt/core/seed.hpp"
#include "clprompt/optim/precision.hpp"
#include "clprompt/optim/trainer.hpp"
#include "clprompt/run/experiment.hpp"
#include "clprompt/stats/ridge_regression.hpp"
#include "test_util.hpp"

#include <catch2/catch.hpp>

using namespace clprompt;

namespace {

/// Two models built from the same seed: one stays on the CPU, the other goes to the test device;
/// one Adam step on the same batch; their parameters must agree.
template <class Make>
void same_step_on_both(const char* name, Make make) {
  INFO(name << " on " << test::device());
  const auto ctx = test::task_ctx(1, true, 3);
  auto run = [&](c10::Device device) {
    seed_everything(5);
    auto model = make(std::make_shared<VisionTransformer>(test::tiny_vit(5)));
    model->begin_task(test::task_ctx(0, true, 3));
    model->end_task();
    model->begin_task(ctx);
    model->to(device);
    auto images = at::randn({6, 3, 8, 8}, make_generator(6, 0)).to(device);
    auto labels = at::tensor({2, 3, 2, 3, 2, 3}, at::kLong).to(device);
    OptimizerOptions o;
    o.lr = 1e-2;
    o.clip_grad_norm = 1.0;
    Trainer trainer("device test", model->parameter_groups().trainer_groups(0.01), o);
    trainer.step(model->loss(model->forward(images, ctx), labels, ctx));
    std::vector<at::Tensor> params;
    for (const auto& p : model->parameters()) params.push_back(p.detach().cpu());
    return params;
  };
  const auto cpu = run(c10::kCPU), dev = run(test::device());
  REQUIRE(cpu.size() == dev.size());
  for (std::size_t i = 0; i < cpu.size(); ++i) CHECK(at::allclose(cpu[i], dev[i], 1e-4, 1e-5));
}

Json tiny_run(const test::TempDir& dir) {
  return Json{{"data", {{"root", dir.str()}}},
              {"backbone", write_options(test::tiny_vit(5))},
              {"pretrained", ""},
              {"scenario", {{"train_per_class", 0}, {"num_tasks", 2}}},
              {"train", {{"batch_size", 8}}},
              {"save_checkpoint", true},
              {"transform", {{"size", 8}, {"horizontal_flip", false}, {"train_crop", "none"}, {"test_resize", 0}}},
              {"device", test::device().str()}};
}

}  // namespace

TEST_CASE("a training step gives the same parameters on the test device as on the CPU", "[device]") {
  same_step_on_both("fine-tuning", [](auto vit) { return make_finetune(vit); });
  same_step_on_both("L2P", [](auto vit) { return make_l2p(vit); });
  same_step_on_both("DualPrompt", [](auto vit) { return make_dualprompt(vit); });
  same_step_on_both("CODA-Prompt", [](auto vit) {
    AttentionDecomposedOptions o;
    o.pool_size = 12;
    o.num_tasks = 3;
    return make_coda_prompt(vit, o);
  });
  same_step_on_both("SLCA", [](auto vit) { return make_slca(vit); });
}

TEST_CASE("a whole run with statistics, alignment and a checkpoint works on the test device", "[device]") {
  test::TempDir dir;
  test::write_idx_files(dir.str(), "train", *test::texture_classes(10, 6, 1));
  test::write_idx_files(dir.str(), "t10k", *test::texture_classes(10, 3, 2));
  const auto registry = builtin_methods();
  auto overrides = tiny_run(dir);
  overrides["head"] = "slca";
  overrides["head_options"] = {{"alignment", {{"epochs", 1}, {"samples_per_class", 8}}}};
  overrides["method_options"] = {{"selector", {{"pool_size", 10}}}};
  ExperimentOutput output{dir / "out", {}};
  output.hooks.log = nullptr;
  const auto results = run_experiment(registry, resolve_config(registry, "coda-prompt", overrides), output);
  CHECK(results.complete());
  CHECK(results.accuracy.back().size() == 2);
  // The checkpoint written from the device loads into a model on the CPU.
  AttentionDecomposedOptions o;
  o.pool_size = 10;
  o.num_tasks = 2;
  auto restored = make_coda_prompt(std::make_shared<VisionTransformer>(test::tiny_vit(5)), o,
                                   make_slca_head(SLCAHeadOptions{}, BackboneDims{16, 5, 2}));
  CHECK(restored->load(dir / "out/model.safetensors").at("clprompt.method") == "coda-prompt");
  CHECK(restored->tasks_started() == 2);
}

TEST_CASE("bf16 autocast training stays within a tolerance of fp32", "[device][precision]") {
  // A linear probe and fine-tuning on tiny data: bf16 matrix products (8 significant bits) move
  // the learned weights a little; the accuracy after each task stays within 10 points of fp32
  // (a tenth of the 2-class range; the two runs see the same batches).
  test::TempDir dir;
  test::write_idx_files(dir.str(), "train", *test::texture_classes(10, 12, 1));
  test::write_idx_files(dir.str(), "t10k", *test::texture_classes(10, 6, 2));
  const auto registry = builtin_methods();
  for (const char* method : {"linear-probe", "finetune"}) {
    INFO(method);
    auto matrix = [&](const char* precision) {
      auto overrides = tiny_run(dir);
      overrides["save_checkpoint"] = false;
      overrides["train"]["precision"] = precision;
      overrides["train"]["epochs"] = 3;
      ExperimentOutput quiet;
      quiet.hooks.log = nullptr;
      return run_experiment(registry, resolve_config(registry, method, overrides), quiet).accuracy;
    };
    const auto fp32 = matrix("fp32"), bf16 = matrix("bf16");
    REQUIRE(fp32.size() == bf16.size());
    for (std::size_t t = 0; t < fp32.size(); ++t)
      for (std::size_t j = 0; j < fp32[t].size(); ++j) CHECK(std::abs(fp32[t][j] - bf16[t][j]) <= 10.0);
  }
}

TEST_CASE("fp16 scales the loss on CUDA and is refused on the CPU", "[device][precision]") {
  const auto device = test::device();
  auto w = at::full({4}, 0.01, at::TensorOptions(device)).set_requires_grad(true);
  OptimizerOptions o;
  o.optimizer = OptimizerKind::sgd;
  o.momentum = 0.0;
  o.lr = 0.5;
  Trainer trainer("fp16", {{{w}}}, o);
  trainer.set_precision(Precision::fp16);
  if (!device.is_cuda()) {
    CHECK_THROWS_WITH((AutocastScope(Precision::fp16, device)), Catch::Contains("CUDA only"));
    return;
  }
  at::Tensor loss;
  {
    AutocastScope autocast(Precision::fp16, device);
    loss = at::matmul(w.unsqueeze(0), w.unsqueeze(1)).to(at::kFloat).sum();  // w·w, the product in half
  }
  trainer.step(loss);
  // d(w·w)/dw = 2w; SGD: w - 0.5 · 2w = 0, after scaling by 2^16 and unscaling.
  CHECK(w.detach().cpu().abs().max().item<double>() < 1e-4);
  CHECK(trainer.scaler()->scale() == 65536.0);
  // An overflowing step is skipped and the scale halved.
  const auto before = w.detach().clone();
  trainer.step((w * 1e38).sum());  // a finite loss whose gradient overflows once scaled
  CHECK(at::equal(w.detach(), before));
  CHECK(trainer.scaler()->scale() == 32768.0);
}

TEST_CASE("RanPAC's ridge regression and the prototype methods run on the test device", "[device][ranpac]") {
  // The solve where G lives (cuSOLVER on a GPU, Eigen in place on the CPU) equals a CPU solve in double.
  auto gen = make_generator(4, 1);
  const auto h = at::relu(at::randn({80, 24}, gen, at::kDouble));
  const auto g = at::matmul(h.t(), h), c = at::matmul(h.t(), at::randn({80, 3}, gen, at::kDouble));
  const auto on_device = solve_ridge_system(g.to(test::device()), c.to(test::device()), 0.1).cpu();
  CHECK(at::allclose(on_device, at::linalg_solve(g + 0.1 * at::eye(24, at::kDouble), c), 1e-8, 1e-10));
  const auto selection = select_ridge_lambda(h.to(test::device()), at::eye(3, at::kDouble).repeat({27, 1}).narrow(0, 0, 80),
                                             RidgeOptions{});
  CHECK(selection.errors.size() == 17);

  test::TempDir dir;
  test::write_idx_files(dir.str(), "train", *test::texture_classes(10, 6, 1));
  test::write_idx_files(dir.str(), "t10k", *test::texture_classes(10, 3, 2));
  const auto registry = builtin_methods();
  for (const std::string method : {"ranpac", "aper", "simplecil"}) {
    INFO(method);
    auto overrides = tiny_run(dir);
    overrides["save_checkpoint"] = false;
    if (method == "ranpac") overrides["head_options"] = {{"projection_dim", 64}};
    ExperimentOutput output{dir / method, {}};
    output.hooks.log = nullptr;
    const auto results = run_experiment(registry, resolve_config(registry, method, overrides), output);
    CHECK(results.complete());
    CHECK(results.accuracy.back().size() == 2);
  }
}
