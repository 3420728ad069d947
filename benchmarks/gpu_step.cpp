// Training and evaluation throughput of each method's model on ViT-B/16 at 224 (random weights),
// the C++ side of the comparison with PyTorch eager (benchmarks/python/gpu_step.py measures the
// same models and steps with timm). For each method and precision:
//   train images/s   one Trainer step: the query pass (where the method has one), the prompted
//                    forward, the loss, backward, the method's optimiser (its recipe: Adam or
//                    SGD, clipping where the reference clips), under autocast for bf16;
//   eval images/s    predict() without gradient, the query pass included;
//   peak memory      the CUDA caching allocator's peak of each phase (CUDA only).
// The median over --windows timed windows of --iters steps, after --warmup steps, with the device
// synchronised around each window. One fixed random batch on the device (no data loading), at
// the last task of a 10-task, 100-class split (the largest active prompt sets), as gpu_step.py.
// STAR-Prompt's level 2 takes a random [B, 512] query in place of CLIP's image embedding (CLIP is
// not run), as gpu_step.py does.
//
//   bench_gpu_step --device cuda --json gpu_step_cpp.json
//   bench_gpu_step --cpu-smoke                       (tiny ViT on the CPU: what CI runs)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <torch/cuda.h>

#if CLPROMPT_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "clprompt/core/options.hpp"
#include "clprompt/core/threads.hpp"
#include "clprompt/methods/coda_prompt.hpp"
#include "clprompt/methods/dualprompt.hpp"
#include "clprompt/methods/finetune.hpp"
#include "clprompt/methods/l2p.hpp"
#include "clprompt/methods/slca.hpp"
#include "clprompt/methods/star_prompt.hpp"
#include "clprompt/optim/precision.hpp"
#include "clprompt/optim/trainer.hpp"

namespace {

using namespace clprompt;
using Clock = std::chrono::steady_clock;

/// STAR-Prompt's level 2 without CLIP: a random [B, 512] query and random unit keys.
struct RandomQuerySource : torch::nn::Module {
  static constexpr QuerySource query_source = QuerySource::own;
  int64_t key_dim() const { return 512; }
  void begin_task(const TaskContext&) {}
  at::Tensor prototypes(const TaskContext& ctx, const FeatureStream&) {
    auto keys = at::randn({ctx.task_classes(), 512});
    return keys / keys.norm(2, {1}, true);
  }
  std::string description() const { return "random keys (benchmark)"; }
  at::Tensor query(const at::Tensor& images) { return at::randn({images.size(0), 512}, images.options()); }
};

struct Options {
  std::string device = torch::cuda::is_available() ? "cuda" : "cpu";
  int64_t batch = 128, image_size = 224, patch = 16, dim = 768, depth = 12, heads = 12, classes = 100;
  int64_t warmup = 5, windows = 5, iters = 10, threads = 0;
  std::vector<std::string> methods{"finetune", "l2p", "dualprompt", "coda", "slca", "star"};
  std::vector<std::string> precisions{"fp32", "bf16"};
  std::string json;
};

struct Measured {
  std::string method, precision;
  double train_images_per_s = 0, eval_images_per_s = 0;
  double train_peak_mib = -1, eval_peak_mib = -1;
  int64_t trainable_params = 0;
};

void synchronize(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

void reset_peak(const c10::Device& device) {
#if CLPROMPT_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
#endif
  (void)device;
}

double peak_mib(const c10::Device& device) {
#if CLPROMPT_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return static_cast<double>(stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak) /
           (1024.0 * 1024.0);
  }
#endif
  (void)device;
  return -1;
}

/// The median images/s over the timed windows of `step`.
double throughput(const Options& o, const c10::Device& device, const std::function<void()>& step) {
  for (int64_t i = 0; i < o.warmup; ++i) step();
  synchronize(device);
  std::vector<double> rates;
  for (int64_t w = 0; w < o.windows; ++w) {
    const auto start = Clock::now();
    for (int64_t i = 0; i < o.iters; ++i) step();
    synchronize(device);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    rates.push_back(static_cast<double>(o.batch * o.iters) / seconds);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

/// Builds the method's model at the last task, then measures its training and evaluation.
template <class Model>
Measured measure(const Options& o, const std::string& method, Precision precision, std::shared_ptr<Model> model,
                 const TrainOptions& recipe) {
  const c10::Device device(o.device);
  const int64_t tasks = 10, per_task = o.classes / tasks;
  const std::vector<int64_t> sizes(static_cast<size_t>(tasks), per_task);
  for (int64_t t = 0; t < tasks; ++t) {
    const auto ctx = TaskContext::for_task(t, tasks, sizes, /*training=*/true);
    model->begin_task(ctx);
    model->prepare_task([](const FeatureVisitor&) {});
    if (t + 1 < tasks) model->end_task();
  }
  model->to(device);
  const auto ctx = TaskContext::for_task(tasks - 1, tasks, sizes, /*training=*/true);
  const auto images = at::randn({o.batch, 3, o.image_size, o.image_size}, at::TensorOptions(device));
  const auto labels = at::randint(ctx.class_begin, ctx.class_end, {o.batch}, at::TensorOptions(at::kLong).device(device));

  Measured m{method, std::string(to_string(precision))};
  auto groups = model->parameter_groups();
  m.trainable_params = groups.slow_elements() + groups.normal_elements();
  Trainer trainer("benchmark", groups.trainer_groups(recipe.slow_lr_scale), recipe.optim);
  trainer.set_precision(precision);
  trainer.set_check_every(1000000);  // no host synchronisation inside a window
  trainer.begin_epoch(0, 1, "benchmark");
  model->train();
  reset_peak(device);
  m.train_images_per_s = throughput(o, device, [&] {
    at::Tensor loss;
    {
      AutocastScope autocast(precision, device);
      loss = model->loss(model->forward(images, ctx), labels, ctx);
    }
    trainer.step(loss);
  });
  m.train_peak_mib = peak_mib(device);
  trainer.flush();

  model->eval();
  reset_peak(device);
  m.eval_images_per_s = throughput(o, device, [&] {
    AutocastScope autocast(precision, device);
    (void)model->predict(images);
  });
  m.eval_peak_mib = peak_mib(device);
  return m;
}

Measured run_method(const Options& o, const std::string& method, Precision precision) {
  at::manual_seed(0);
  ViTOptions vit_options;
  vit_options.image_size = o.image_size;
  vit_options.patch_size = o.patch;
  vit_options.embed_dim = o.dim;
  vit_options.depth = o.depth;
  vit_options.num_heads = o.heads;
  auto vit = std::make_shared<VisionTransformer>(vit_options);
  const auto dims = dims_of(*vit);
  if (method == "finetune") return measure(o, method, precision, make_finetune(vit), FineTuneMethod::recipe());
  if (method == "l2p") return measure(o, method, precision, make_l2p(vit), l2p_train_options());
  if (method == "dualprompt") {
    DualPromptOptions selector;  // 10 E-prompts: one per task
    return measure(o, method, precision, make_dualprompt(vit, selector), dualprompt_train_options());
  }
  if (method == "coda") {
    AttentionDecomposedOptions selector;
    selector.num_tasks = 10;
    return measure(o, method, precision, make_coda_prompt(vit, selector), coda_prompt_train_options());
  }
  if (method == "slca") return measure(o, method, precision, make_slca(vit), slca_train_options());
  if (method == "star") {
    auto selector = std::make_shared<PrototypeKeys<RandomQuerySource>>(PrototypeKeysOptions{}, dims,
                                                                       std::make_shared<RandomQuerySource>());
    ParameterRoles roles;
    roles.backbone = LearningRole::frozen;
    auto model = std::make_shared<ContinualModel<VisionTransformer, PrototypeKeys<RandomQuerySource>, LinearHead>>(
        vit, selector, std::make_shared<LinearHead>(LinearHeadOptions{}, dims), roles);
    return measure(o, method, precision, model, star_prompt_train_options());
  }
  throw ConfigError("methods", fmt::format("unknown method '{}'", method));
}

std::vector<std::string> split(const std::string& list) {
  std::vector<std::string> out;
  std::string item;
  for (char c : list + ",") {
    if (c == ',') {
      if (!item.empty()) out.push_back(item);
      item.clear();
    } else {
      item += c;
    }
  }
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw ConfigError(arg, "needs a value");
      return argv[++i];
    };
    auto number = [&] { return std::stoll(value()); };
    if (arg == "--device") o.device = value();
    else if (arg == "--batch") o.batch = number();
    else if (arg == "--image-size") o.image_size = number();
    else if (arg == "--patch") o.patch = number();
    else if (arg == "--dim") o.dim = number();
    else if (arg == "--depth") o.depth = number();
    else if (arg == "--heads") o.heads = number();
    else if (arg == "--warmup") o.warmup = number();
    else if (arg == "--windows") o.windows = number();
    else if (arg == "--iters") o.iters = number();
    else if (arg == "--threads") o.threads = number();
    else if (arg == "--methods") o.methods = split(value());
    else if (arg == "--precision") o.precisions = split(value());
    else if (arg == "--json") o.json = value();
    else if (arg == "--cpu-smoke") {
      // What CI runs: every method and precision on a tiny ViT on the CPU (seconds). D 128 holds
      // CODA-Prompt's 100 mutually orthogonal components; depth 5 reaches every prompt layer.
      o.device = "cpu";
      o.batch = 4;
      o.image_size = 32;
      o.dim = 128;
      o.depth = 5;
      o.heads = 2;
      o.warmup = 1;
      o.windows = 1;
      o.iters = 1;
    } else {
      throw ConfigError(arg, "unknown argument; see the file comment of benchmarks/gpu_step.cpp");
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) try {
  const auto o = parse(argc, argv);
  configure_threads(static_cast<int>(o.threads));
  std::vector<Measured> all;
  fmt::print("{:<11} {:<5} {:>14} {:>12} {:>13} {:>11}\n", "method", "prec", "train img/s", "train MiB", "eval img/s",
             "eval MiB");
  for (const auto& method : o.methods)
    for (const auto& p : o.precisions) {
      const auto precision = options_from_json<TrainOptions>(Json{{"precision", p}}, "precision").precision;
      const auto m = run_method(o, method, precision);
      fmt::print("{:<11} {:<5} {:>14.1f} {:>12.0f} {:>13.1f} {:>11.0f}\n", m.method, m.precision,
                 m.train_images_per_s, m.train_peak_mib, m.eval_images_per_s, m.eval_peak_mib);
      std::fflush(stdout);
      all.push_back(m);
    }
  if (!o.json.empty()) {
    Json results = Json::array();
    for (const auto& m : all)
      results.push_back({{"method", m.method},
                         {"precision", m.precision},
                         {"trainable_params", m.trainable_params},
                         {"train_images_per_s", m.train_images_per_s},
                         {"train_peak_mib", m.train_peak_mib < 0 ? Json(nullptr) : Json(m.train_peak_mib)},
                         {"eval_images_per_s", m.eval_images_per_s},
                         {"eval_peak_mib", m.eval_peak_mib < 0 ? Json(nullptr) : Json(m.eval_peak_mib)}});
    Json env{{"device", o.device}, {"batch", o.batch}, {"image_size", o.image_size}, {"dim", o.dim},
             {"depth", o.depth}, {"heads", o.heads}, {"threads", at::get_num_threads()},
             {"torch", TORCH_VERSION}};
    std::ofstream(o.json) << Json{{"env", env}, {"results", results}}.dump(2) << "\n";
  }
  return 0;
} catch (const clprompt::Error& e) {
  fmt::print(stderr, "bench_gpu_step: error: {}\n", e.what());
  return 1;
}
