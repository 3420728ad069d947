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
#include "clprompt/data/image_folder.hpp"
#include "clprompt/data/scenario.hpp"
#include "clprompt/data/transforms.hpp"
#include "clprompt/optim/train_options.hpp"

namespace clprompt {

/// Where the images come from.
struct DataOptions {
  /// fashion-mnist | mnist (IDX files in root), cifar100 | cifar10 (binary version in root),
  /// image-folder (root/train/<class>/*.jpg and root/test/<class>/*.jpg, e.g. ImageNet-R).
  std::string dataset = "fashion-mnist";
  std::string root = "/usr/share/datasets/fashion-mnist";
  ImageFolderOptions image_folder;

  static constexpr auto fields() {
    return std::tuple{field("dataset", &DataOptions::dataset), field("root", &DataOptions::root),
                      field("image_folder", &DataOptions::image_folder)};
  }
  void validate(const std::string& path) const {
    static const std::vector<std::string> known{"fashion-mnist", "mnist", "cifar100", "cifar10", "image-folder"};
    require_option(std::find(known.begin(), known.end(), dataset) != known.end(), path, "dataset",
                   fmt::format("unknown dataset '{}'; expected one of: fashion-mnist, mnist, cifar100, cifar10, "
                               "image-folder", dataset));
    require_option(!root.empty(), path, "root", "must name the dataset directory");
  }
};

/// The whole configuration of a run; every field has a default (see default_config).
struct RunConfig {
  std::string method = "finetune";
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

  static constexpr auto fields() {
    return std::tuple{field("method", &RunConfig::method), field("seed", &RunConfig::seed),
                      field("threads", &RunConfig::threads), field("device", &RunConfig::device),
                      field("data", &RunConfig::data),
                      field("scenario", &RunConfig::scenario), field("transform", &RunConfig::transform),
                      field("backbone", &RunConfig::backbone), field("pretrained", &RunConfig::pretrained),
                      field("train", &RunConfig::train), field("method_options", &RunConfig::method_options),
                      field("head", &RunConfig::head), field("head_options", &RunConfig::head_options),
                      field("save_checkpoint", &RunConfig::save_checkpoint)};
  }
  void validate(const std::string& path) const {
    require_option(seed >= 0, path, "seed", "must be >= 0");
    require_option(threads >= 0, path, "threads", "must be >= 0 (0 = all cores)");
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
