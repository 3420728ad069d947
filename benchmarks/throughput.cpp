// Throughput of the embedded default's model: evaluation forward (images/s) and one training
// step of fine-tuning and of linear probing, at the default batch sizes. Also a ViT-B/16-sized
// forward for reference. Run:  build/bin/bench_throughput --benchmark_min_time=2
#include <benchmark/benchmark.h>

#include "clprompt/core/threads.hpp"
#include "clprompt/learn/experiment.hpp"
#include "clprompt/learn/optimizer.hpp"
#include "clprompt/methods/baselines.hpp"

namespace {

using namespace clprompt;

ViTOptions default_backbone() { return default_config("finetune").backbone; }

void eval_forward(benchmark::State& state, ViTOptions options) {
  configure_threads();
  at::manual_seed(0);
  VisionTransformer vit(options);
  vit.eval();
  const int64_t batch = state.range(0);
  auto images = at::randn({batch, 3, options.image_size, options.image_size});
  at::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(vit.forward(images, Prompts{}));
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(batch * state.iterations()), benchmark::Counter::kIsRate);
  state.counters["threads"] = at::get_num_threads();
}

void train_step(benchmark::State& state, bool train_backbone) {
  configure_threads();
  at::manual_seed(0);
  const auto config = default_config(train_backbone ? "finetune" : "linear-probe");
  auto model = make_linear_model(std::make_shared<VisionTransformer>(config.backbone), {}, train_backbone);
  const auto ctx = TaskContext::for_task(0, 5, {2, 2, 2, 2, 2}, true);
  model->begin_task(ctx);
  RoleOptimizer optimizer(model->parameter_groups(), config.train);
  const int64_t batch = config.train.batch_size;
  auto images = at::randn({batch, 3, config.backbone.image_size, config.backbone.image_size});
  auto labels = at::randint(0, 2, {batch}, at::kLong);
  model->train();
  for (auto _ : state) {
    auto loss = model->loss(model->forward(images, ctx), labels, ctx);
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(batch * state.iterations()), benchmark::Counter::kIsRate);
}

BENCHMARK_CAPTURE(eval_forward, default_backbone, default_backbone())->Arg(32)->Arg(64)->Arg(128)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(eval_forward, vit_b16_224, ViTOptions::base_patch16_224())->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(train_step, finetune, true)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(train_step, linear_probe, false)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
