#pragma once
// RunConfig: one run of one method on one scenario, as one JSON document (what `clprompt run`
// executes and `clprompt config` prints). The method's own options (method_options) and its head
// (head, head_options) are typed by the method's registration and checked by it (run/experiment.hpp).
#include <cstdint>
#include <string>
#include <vector>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/core/device.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/core/threads.hpp"
#include "clprompt/data/data_options.hpp"
#include "clprompt/data/scenario.hpp"
#include "clprompt/data/transforms.hpp"
#include "clprompt/methods/method.hpp"
#include "clprompt/optim/train_options.hpp"

namespace clprompt {

/// The whole configuration of a run; every field has a default (resolve_config).
struct RunConfig {
  std::string method = "finetune";
  /// A published protocol (run/benchmarks.hpp: split-cifar100, split-imagenet-r, ...): the
  /// method's reference recipe on it instead of the embedded default; "" = the embedded default.
  std::string benchmark;
  /// The runs the protocol averages (each its own seed and class order); empty = one run with
  /// `seed` and scenario.order. `clprompt run` runs them all and reports mean ± std.
  std::vector<Trial> trials;
  int64_t seed = 1993;   ///< fixes class order, initialisation, subsampling and data order
  int64_t threads = 0;   ///< 0: $OMP_NUM_THREADS, else all cores
  std::string device = "auto";  ///< cpu, cuda, cuda:N, auto (CUDA if this LibTorch has it)
  DataOptions data;
  ScenarioOptions scenario;
  TransformOptions transform;
  ViTOptions backbone;
  /// timm ViT safetensors to initialise the backbone from: a path, "builtin:<name>" for weights
  /// shipped in models/ (verified by SHA-256), or empty for a random initialisation.
  std::string pretrained;
  TrainOptions train;
  /// The method's options, typed by its registration (e.g. {"selector": {...}} for the prompt methods).
  Json method_options = Json::object();
  /// The head kind (`clprompt methods` lists them): linear, slca (SLCA's classifier alignment, `--align`).
  std::string head = "linear";
  /// The head kind's options (e.g. {"mask_other_tasks": true, "alignment": {...}} for slca).
  Json head_options = Json::object();
  bool save_checkpoint = true;  ///< write model.safetensors to the output directory at the end
  /// What the benchmark's reference says (weights it loads, its published result, the files the
  /// recipe's values come from); informational, printed by `clprompt config`.
  Json reference = Json::object();

  static constexpr auto fields() {
    return std::tuple{field("method", &RunConfig::method), field("benchmark", &RunConfig::benchmark),
                      field("trials", &RunConfig::trials), field("seed", &RunConfig::seed),
                      field("threads", &RunConfig::threads), field("device", &RunConfig::device),
                      field("data", &RunConfig::data),
                      field("scenario", &RunConfig::scenario), field("transform", &RunConfig::transform),
                      field("backbone", &RunConfig::backbone), field("pretrained", &RunConfig::pretrained),
                      field("train", &RunConfig::train), field("method_options", &RunConfig::method_options),
                      field("head", &RunConfig::head), field("head_options", &RunConfig::head_options),
                      field("save_checkpoint", &RunConfig::save_checkpoint), field("reference", &RunConfig::reference)};
  }
  void validate(const std::string& path) const {
    require_option(seed >= 0, path, "seed", "must be >= 0");
    require_option(threads >= 0 && threads <= kMaxThreads, path, "threads",
                   fmt::format("must be in [0, {}] (0 = all cores), got {}", kMaxThreads, threads));
    require_option(method_options.is_object(), path, "method_options", "must be an object");
    require_option(head_options.is_object(), path, "head_options", "must be an object");
    (void)resolve_device(device, path.empty() ? "device" : path + ".device");
  }
};

/// The embedded default: Split Fashion-MNIST (Debian's dataset-fashion-mnist, 5 tasks × 2
/// classes) with the shipped glyph-pretrained small ViT; every method's recipe on top of it is
/// shortened to one epoch at batch 64 (resolve_config).
RunConfig embedded_default();

}  // namespace clprompt
