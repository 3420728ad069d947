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
//   bench_gpu_step --serve ...                       (the worker of benchmarks/python/compare_step.py)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <torch/cuda.h>

#if CLPROMPT_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "clprompt/core/options.hpp"
#include "clprompt/core/memory.hpp"
#include "clprompt/core/nvtx.hpp"
#include "clprompt/core/threads.hpp"
#include "clprompt/io/safetensors.hpp"
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

Precision parse_precision(const std::string& name) {
  return options_from_json<TrainOptions>(Json{{"precision", name}}, "precision").precision;
}

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
  /// One fixed random query per batch size (like gpu_step.py's fixed clip_query), so that a dump
  /// and the Python port see the same one.
  at::Tensor query(const at::Tensor& images) {
    auto& q = queries[images.size(0)];
    if (!q.defined()) q = at::randn({images.size(0), 512}, images.options());
    return q;
  }
  std::map<int64_t, at::Tensor> queries;
};

struct Options {
  std::string device = torch::cuda::is_available() ? "cuda" : "cpu";
  int64_t batch = 128, eval_batch = 0, image_size = 224, patch = 16, dim = 768, depth = 12, heads = 12, classes = 100;
  int64_t warmup = 5, windows = 5, iters = 10, threads = 0;
  std::vector<std::string> methods{"finetune", "l2p", "dualprompt", "coda", "slca", "star"};
  std::vector<std::string> precisions{"fp32", "bf16"};
  std::string json;
  bool serve = false;
  bool system_malloc = false;  ///< skip keep_freed_memory(): glibc's defaults, as a Python process has them
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
double throughput(const Options& o, int64_t batch, const c10::Device& device, const std::function<void()>& step) {
  for (int64_t i = 0; i < o.warmup; ++i) step();
  synchronize(device);
  std::vector<double> rates;
  for (int64_t w = 0; w < o.windows; ++w) {
    const auto start = Clock::now();
    for (int64_t i = 0; i < o.iters; ++i) step();
    synchronize(device);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    rates.push_back(static_cast<double>(batch * o.iters) / seconds);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

/// One method's model at the last task of a 10-task split, with fixed inputs: the steps the
/// benchmarks time, and the reference tensors benchmarks/python/compare_step.py checks its Python
/// port against (dump).
struct Session {
  std::string method, precision;
  int64_t trainable_params = 0;
  std::function<void()> train, eval;
  std::function<void(const std::string& path)> dump;
};

/// Adds method-specific inputs (STAR-Prompt's stand-in CLIP queries) to a dump.
using ExtraInputs = std::function<void(TensorMap&)>;

template <class Model>
Session make_session(const Options& o, const std::string& method, Precision precision, std::shared_ptr<Model> model,
                     const TrainOptions& recipe, ExtraInputs extra = {}) {
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
  struct State {
    std::shared_ptr<Model> model;
    std::unique_ptr<Trainer> trainer;
    TaskContext train_ctx, eval_ctx;
    at::Tensor train_images, train_labels, eval_images;
    Precision precision;
    c10::Device device;
    bool training = false;
    void set_training(bool on) {  // only on a change: train() walks every submodule
      if (on != training) model->train(on);
      training = on;
    }
  };
  const auto train_ctx = TaskContext::for_task(tasks - 1, tasks, sizes, /*training=*/true);
  const auto eval_ctx = TaskContext::for_task(tasks - 1, tasks, sizes, /*training=*/false);
  const auto image_options = at::TensorOptions(device);
  auto train_images = at::randn({o.batch, 3, o.image_size, o.image_size}, image_options);
  auto train_labels = at::randint(train_ctx.class_begin, train_ctx.class_end, {o.batch},
                                  at::TensorOptions(at::kLong).device(device));
  auto eval_images = o.eval_batch == o.batch
                         ? train_images
                         : at::randn({o.eval_batch, 3, o.image_size, o.image_size}, image_options);
  auto groups = model->parameter_groups();
  auto trainer = std::make_unique<Trainer>("benchmark", groups.trainer_groups(recipe.slow_lr_scale), recipe.optim);
  trainer->set_precision(precision);
  trainer->set_check_every(1000000);  // no host synchronisation inside a window
  trainer->begin_epoch(0, 1, "benchmark");
  auto s = std::make_shared<State>(State{model, std::move(trainer), train_ctx, eval_ctx, train_images, train_labels,
                                         eval_images, precision, device});

  Session session{method, std::string(to_string(precision))};
  session.trainable_params = groups.slow_elements() + groups.normal_elements();
  s->model->eval();
  session.train = [s] {
    s->set_training(true);
    at::Tensor loss;
    {
      AutocastScope autocast(s->precision, s->device);
      loss = s->model->loss(s->model->forward(s->train_images, s->train_ctx), s->train_labels, s->train_ctx);
    }
    s->trainer->step(loss);
  };
  session.eval = [s] {
    s->set_training(false);
    AutocastScope autocast(s->precision, s->device);
    (void)s->model->predict(s->eval_images);
  };
  session.dump = [s, extra](const std::string& path) {
    // Parameters, inputs, and one fp32 training forward/backward (no optimiser step) and one
    // evaluation forward: what the Python port must reproduce from the same parameters.
    s->trainer->flush();
    TensorMap t;
    auto& model = *s->model;
    for (const auto& item : model.named_parameters()) t["param." + item.key()] = item.value().detach().cpu().clone();
    for (const auto& item : model.named_buffers()) t["buffer." + item.key()] = item.value().detach().cpu().clone();
    t["input.train_images"] = s->train_images.cpu();
    t["input.train_labels"] = s->train_labels.cpu();
    t["input.eval_images"] = s->eval_images.cpu();
    for (auto& p : model.parameters()) p.mutable_grad() = at::Tensor();
    s->set_training(true);
    auto out = model.forward(s->train_images, s->train_ctx);
    auto loss = model.loss(out, s->train_labels, s->train_ctx);
    loss.backward();
    t["output.train_logits"] = out.logits.detach().cpu();
    t["output.train_loss"] = loss.detach().cpu().reshape({1});
    for (const auto& item : model.named_parameters())
      if (item.value().grad().defined()) t["grad." + item.key()] = item.value().grad().cpu().clone();
    for (auto& p : model.parameters()) p.mutable_grad() = at::Tensor();
    s->set_training(false);
    {
      at::NoGradGuard no_grad;
      t["output.eval_logits"] = model.forward(s->eval_images, s->eval_ctx).logits.cpu();
    }
    if (extra) extra(t);  // after the forwards: STAR-Prompt's stand-in queries exist by now
    write_safetensors(path, t);
  };
  return session;
}

/// The median images/s of a session's training and evaluation steps.
Measured measure(const Options& o, Session& session) {
  const c10::Device device(o.device);
  Measured m{session.method, session.precision};
  m.trainable_params = session.trainable_params;
  reset_peak(device);
  m.train_images_per_s = throughput(o, o.batch, device, session.train);
  m.train_peak_mib = peak_mib(device);
  reset_peak(device);
  m.eval_images_per_s = throughput(o, o.eval_batch, device, session.eval);
  m.eval_peak_mib = peak_mib(device);
  return m;
}

Session make_method(const Options& o, const std::string& method, Precision precision) {
  at::manual_seed(0);
  ViTOptions vit_options;
  vit_options.image_size = o.image_size;
  vit_options.patch_size = o.patch;
  vit_options.embed_dim = o.dim;
  vit_options.depth = o.depth;
  vit_options.num_heads = o.heads;
  auto vit = std::make_shared<VisionTransformer>(vit_options);
  const auto dims = dims_of(*vit);
  if (method == "finetune") {
    LinearHeadOptions head;  // the registry's "FT": no train-time masking
    FineTuneMethod::configure_head(head);
    return make_session(o, method, precision, make_finetune(vit, std::make_shared<LinearHead>(head, dims)),
                        FineTuneMethod::recipe());
  }
  if (method == "l2p") return make_session(o, method, precision, make_l2p(vit), l2p_train_options());
  if (method == "dualprompt") {
    DualPromptOptions selector;  // 10 E-prompts: one per task
    return make_session(o, method, precision, make_dualprompt(vit, selector), dualprompt_train_options());
  }
  if (method == "coda") {
    AttentionDecomposedOptions selector;
    selector.num_tasks = 10;
    return make_session(o, method, precision, make_coda_prompt(vit, selector), coda_prompt_train_options());
  }
  if (method == "slca") return make_session(o, method, precision, make_slca(vit), slca_train_options());
  if (method == "star") {
    auto source = std::make_shared<RandomQuerySource>();
    auto selector = std::make_shared<PrototypeKeys<RandomQuerySource>>(PrototypeKeysOptions{}, dims, source);
    ParameterRoles roles;
    roles.backbone = LearningRole::frozen;
    auto model = std::make_shared<ContinualModel<VisionTransformer, PrototypeKeys<RandomQuerySource>, LinearHead>>(
        vit, selector, std::make_shared<LinearHead>(LinearHeadOptions{}, dims), roles);
    return make_session(o, method, precision, model, star_prompt_train_options(), [source](TensorMap& t) {
      for (const auto& [batch, q] : source->queries) t[fmt::format("input.clip_query.{}", batch)] = q.cpu();
    });
  }
  throw ConfigError("methods", fmt::format("unknown method '{}'", method));
}

/// --serve: the worker of benchmarks/python/compare_step.py. One command per line on stdin, one
/// reply line on stdout:
///   build METHOD PRECISION   builds the session             -> "ok TRAINABLE_PARAMS"
///   train N | eval N         N steps, timed here            -> "SECONDS"
///   dump PATH                writes Session::dump's tensors  -> "ok"
///   profile MODE N           N steps with phase times        -> {"total": s, "phases": {name: s}}
///   quit
/// Errors reply "error MESSAGE" and keep serving.
int serve(const Options& o) {
  std::optional<Session> session;
  std::string line;
  auto reply = [](const std::string& text) {
    std::string one_line = text;
    std::replace(one_line.begin(), one_line.end(), '\n', ' ');
    std::fputs((one_line + "\n").c_str(), stdout);
    std::fflush(stdout);
  };
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string command;
    in >> command;
    try {
      if (command == "build") {
        std::string method, precision;
        in >> method >> precision;
        session.reset();
        session = make_method(o, method, parse_precision(precision));
        reply(fmt::format("ok {}", session->trainable_params));
      } else if (command == "train" || command == "eval") {
        int64_t n = 0;
        in >> n;
        if (!session) throw Error("no session: send build first");
        auto& step = command == "train" ? session->train : session->eval;
        const c10::Device device(o.device);
        synchronize(device);
        const auto start = Clock::now();
        for (int64_t i = 0; i < n; ++i) step();
        synchronize(device);
        reply(fmt::format("{:.9f}", std::chrono::duration<double>(Clock::now() - start).count()));
      } else if (command == "profile") {
        // N steps of MODE with the phases' CPU wall time (NvtxRange names) -> one JSON line
        std::string mode;
        int64_t n = 0;
        in >> mode >> n;
        if (!session) throw Error("no session: send build first");
        if (mode != "train" && mode != "eval") throw Error(fmt::format("profile: unknown mode '{}'", mode));
        auto& step = mode == "train" ? session->train : session->eval;
        Json phases = Json::object();
        double total = 0;
        {
          PhaseProfile profile;
          const auto start = Clock::now();
          for (int64_t i = 0; i < n; ++i) step();
          total = std::chrono::duration<double>(Clock::now() - start).count();
          for (const auto& [name, phase] : profile.phases) phases[name] = phase.seconds;
        }
        reply(Json{{"total", total}, {"phases", phases}}.dump());
      } else if (command == "dump") {
        std::string path;
        in >> path;
        if (!session) throw Error("no session: send build first");
        session->dump(path);
        reply("ok");
      } else if (command == "quit") {
        break;
      } else {
        throw Error(fmt::format("unknown command '{}'", command));
      }
    } catch (const std::exception& e) {
      reply(std::string("error ") + e.what());
    }
  }
  return 0;
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
    else if (arg == "--eval-batch") o.eval_batch = number();
    else if (arg == "--serve") o.serve = true;
    else if (arg == "--system-malloc") o.system_malloc = true;
    else if (arg == "--image-size") o.image_size = number();
    else if (arg == "--patch") o.patch = number();
    else if (arg == "--dim") o.dim = number();
    else if (arg == "--depth") o.depth = number();
    else if (arg == "--heads") o.heads = number();
    else if (arg == "--classes") o.classes = number();
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
  if (o.eval_batch <= 0) o.eval_batch = o.batch;
  if (o.classes <= 0 || o.classes % 10 != 0) throw ConfigError("--classes", "must be a positive multiple of 10 (10 tasks)");
  if (o.threads < 0 || o.threads > kMaxThreads)
    throw ConfigError("--threads", fmt::format("must be in [0, {}], got {}", kMaxThreads, o.threads));
  return o;
}

}  // namespace

int main(int argc, char** argv) try {
  const auto o = parse(argc, argv);
  configure_threads(static_cast<int>(o.threads));
  if (!o.system_malloc) keep_freed_memory();
  if (o.serve) return serve(o);
  std::vector<Measured> all;
  fmt::print("{:<11} {:<5} {:>14} {:>12} {:>13} {:>11}\n", "method", "prec", "train img/s", "train MiB", "eval img/s",
             "eval MiB");
  for (const auto& method : o.methods)
    for (const auto& p : o.precisions) {
      auto session = make_method(o, method, parse_precision(p));
      const auto m = measure(o, session);
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
    Json env{{"device", o.device}, {"batch", o.batch}, {"eval_batch", o.eval_batch}, {"image_size", o.image_size}, {"dim", o.dim},
             {"depth", o.depth}, {"heads", o.heads}, {"threads", at::get_num_threads()},
             {"torch", TORCH_VERSION}};
    std::ofstream(o.json) << Json{{"env", env}, {"results", results}}.dump(2) << "\n";
  }
  return 0;
} catch (const clprompt::Error& e) {
  fmt::print(stderr, "bench_gpu_step: error: {}\n", e.what());
  return 1;
}
