#pragma once
// An experiment: one method on one scenario, configured by one JSON document (RunConfig).
// This is what `clprompt run` executes; the embedded default is Split Fashion-MNIST from
// Debian's dataset-fashion-mnist with a small ViT.
#include <cstdint>
#include <string>
#include <vector>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/core/device.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/data/image_folder.hpp"
#include "clprompt/data/scenario.hpp"
#include "clprompt/data/transforms.hpp"
#include "clprompt/learn/learner.hpp"
#include "clprompt/learn/results.hpp"
#include "clprompt/learn/train_options.hpp"

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
  /// Options of the method's policies, e.g. {"head": {"mask_other_tasks": true}}.
  Json method_options = Json::object();
  bool save_checkpoint = true;  ///< write model.safetensors to the output directory at the end
  /// Classifier alignment (SLCA's CA) on top of the method: the head becomes
  /// Aligned<LogitNormalized<LinearHead>>, options under method_options.head ("alignment",
  /// "logit_norm"). Always on for slca.
  bool align = false;
  /// STAR-Prompt's CLIP: a directory with CLIP weights (safetensors, Hugging Face or OpenAI/
  /// open_clip names) and its tokenizer files. Empty: star-prompt runs with the class-mean
  /// fallback prototypes and is reported as "star-prompt-fallback".
  std::string clip;

  static constexpr auto fields() {
    return std::tuple{field("method", &RunConfig::method), field("seed", &RunConfig::seed),
                      field("threads", &RunConfig::threads), field("device", &RunConfig::device),
                      field("data", &RunConfig::data),
                      field("scenario", &RunConfig::scenario), field("transform", &RunConfig::transform),
                      field("backbone", &RunConfig::backbone), field("pretrained", &RunConfig::pretrained),
                      field("train", &RunConfig::train), field("method_options", &RunConfig::method_options),
                      field("save_checkpoint", &RunConfig::save_checkpoint), field("align", &RunConfig::align),
                      field("clip", &RunConfig::clip)};
  }
  void validate(const std::string& path) const {
    require_option(seed >= 0, path, "seed", "must be >= 0");
    require_option(threads >= 0, path, "threads", "must be >= 0 (0 = all cores)");
    require_option(method_options.is_object(), path, "method_options", "must be an object");
    (void)resolve_device(device, path.empty() ? "device" : path + ".device");
  }
};

/// A method the CLI can run.
struct MethodInfo {
  std::string name;
  std::string description;
};
std::vector<MethodInfo> available_methods();

/// The embedded default configuration of `method` (throws ConfigError for an unknown method).
RunConfig default_config(const std::string& method);

/// default_config(method), then the JSON `overrides` merged over it (RFC 7386 merge patch), then
/// strictly parsed and validated: every unknown or invalid field is a ConfigError naming it.
RunConfig resolve_config(const std::string& method, const Json& overrides = Json::object());

/// Parses "train.lr=0.01" into {"train": {"lr": 0.01}} (the value is JSON if it parses as JSON,
/// else a string).
Json parse_override(const std::string& assignment);

struct ExperimentOutput {
  std::string directory;  ///< results.json, accuracy.svg and model.safetensors go here ("" = none)
  LearnerHooks hooks;
};

/// The name results are reported under: the method, "+align" with alignment added, and
/// "star-prompt-fallback" for star-prompt without CLIP (its numbers are not STAR-Prompt's).
std::string run_name(const RunConfig& config);

/// Runs `config` end to end; writes results.json and accuracy.svg after every task (atomically,
/// so an interrupted run keeps the tasks it finished) and the model checkpoint at the end.
Results run_experiment(const RunConfig& config, const ExperimentOutput& output = {});

/// A plain-text table of the accuracy matrix and summary metrics.
std::string format_summary(const Results& results);

}  // namespace clprompt
