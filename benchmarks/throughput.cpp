// Throughput of the embedded default's model: evaluation forward (images/s) and one training
// step of fine-tuning and of linear probing, at the default batch sizes. Also a ViT-B/16-sized
// forward for reference. Run:  build/bin/bench_throughput --benchmark_min_time=2
#include <benchmark/benchmark.h>

#include "clprompt/core/memory.hpp"
#include "clprompt/core/threads.hpp"
#include "clprompt/run/run_config.hpp"
#include "clprompt/optim/trainer.hpp"
#include "clprompt/methods/finetune.hpp"
#include "clprompt/methods/linear_probe.hpp"

namespace {

using namespace clprompt;

ViTOptions default_backbone() { return embedded_default().backbone; }

void eval_forward(benchmark::State& state, ViTOptions options) {
  configure_threads();
  keep_freed_memory();
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
  keep_freed_memory();
  at::manual_seed(0);
  const auto config = embedded_default();
  auto vit = std::make_shared<VisionTransformer>(config.backbone);
  auto model = train_backbone ? make_finetune(vit) : make_linear_probe(vit);
  const auto ctx = TaskContext::for_task(0, 5, {2, 2, 2, 2, 2}, true);
  model->begin_task(ctx);
  Trainer trainer("benchmark", model->parameter_groups().trainer_groups(config.train.slow_lr_scale), config.train.optim);
  const int64_t batch = config.train.batch_size;
  auto images = at::randn({batch, 3, config.backbone.image_size, config.backbone.image_size});
  auto labels = at::randint(0, 2, {batch}, at::kLong);
  model->train();
  for (auto _ : state) {
    trainer.step(model->loss(model->forward(images, ctx), labels, ctx));
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(batch * state.iterations()), benchmark::Counter::kIsRate);
}

BENCHMARK_CAPTURE(eval_forward, default_backbone, default_backbone())->Arg(32)->Arg(64)->Arg(128)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(eval_forward, vit_b16_224, ViTOptions::base_patch16_224())->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(train_step, finetune, true)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(train_step, linear_probe, false)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
