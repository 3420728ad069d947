// The compiled part of clprompt's method layer: explicit instantiations of the published
// method aliases (so examples and the CLI do not re-instantiate them) and the experiment
// runner behind `clprompt run`.
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>

#include "clprompt/backbone/builtin_weights.hpp"
#include "clprompt/backbone/clip_loader.hpp"
#include "clprompt/backbone/timm_loader.hpp"
#include "clprompt/core/seed.hpp"
#include "clprompt/core/threads.hpp"
#include "clprompt/data/cifar.hpp"
#include "clprompt/data/idx.hpp"
#include "clprompt/io/atomic_file.hpp"
#include "clprompt/io/svg_plot.hpp"
#include "clprompt/learn/experiment.hpp"
#include "clprompt/methods/baselines.hpp"
#include "clprompt/methods/coda_prompt.hpp"
#include "clprompt/methods/dualprompt.hpp"
#include "clprompt/methods/l2p.hpp"
#include "clprompt/methods/slca.hpp"
#include "clprompt/methods/star_prompt.hpp"

namespace clprompt {

template class ContinualModel<VisionTransformer, NoPrompts, LinearHead>;
template class ContinualModel<VisionTransformer, KeyQueryPool, LinearHead>;
template class ContinualModel<VisionTransformer, DualPrompt, LinearHead>;
template class ContinualModel<VisionTransformer, AttentionDecomposed, LinearHead>;
// SLCA, and the other methods with classifier alignment (`clprompt run --align`).
template class ContinualModel<VisionTransformer, NoPrompts, SLCAHead>;
template class ContinualModel<VisionTransformer, KeyQueryPool, SLCAHead>;
template class ContinualModel<VisionTransformer, DualPrompt, SLCAHead>;
template class ContinualModel<VisionTransformer, AttentionDecomposed, SLCAHead>;
// STAR-Prompt, with CLIP and with the class-mean fallback.
template class ContinualModel<VisionTransformer, PrototypeKeys<ClipTextPrototypes>, SLCAHead>;
template class ContinualModel<VisionTransformer, PrototypeKeys<ClassMeanPrototypes>, SLCAHead>;

namespace {

/// The embedded default: Split Fashion-MNIST (5 tasks x 2 classes) with a small ViT on the
/// native 28x28 images (patch 4 -> 49 patches + [CLS]; D 128, 6 layers so that the published
/// prompt layers 0-4 exist; ~1.2 M parameters), initialised from the shipped weights that
/// `clprompt pretrain` produced on font glyphs (models/, docs/pretraining.md). Sized so that
/// `clprompt run` of a method takes one to three minutes on 2 cores (docs/results.md).
RunConfig embedded_default() {
  RunConfig c;
  c.data.dataset = "fashion-mnist";
  c.data.root = "/usr/share/datasets/fashion-mnist";
  c.scenario.num_tasks = 5;
  c.scenario.train_per_class = 1000;
  c.scenario.test_per_class = 500;  // of 1000: halves evaluation time, +-2% binomial error per task
  c.transform.horizontal_flip = true;
  c.backbone.image_size = 28;
  c.backbone.patch_size = 4;
  c.backbone.embed_dim = 128;
  c.backbone.depth = 6;
  c.backbone.num_heads = 4;
  c.pretrained = "builtin:vit-glyph-d128";
  c.train.optimizer = OptimizerKind::adam;
  c.train.batch_size = 64;
  c.train.epochs = 1;
  return c;
}

/// The published recipe of a method, scaled to the embedded default: one epoch per task and
/// batch 64 instead of 5-20 epochs and batches of 16-128, with the learning rate scaled as the
/// reference scales it (linearly with the batch for L2P and DualPrompt; CODA-Prompt's is fixed).
TrainOptions scaled_recipe(TrainOptions published, bool scale_lr_with_batch) {
  const int64_t batch = 64;
  if (scale_lr_with_batch) published.lr *= static_cast<double>(batch) / static_cast<double>(published.batch_size);
  published.batch_size = batch;
  published.epochs = 1;
  return published;
}

const std::map<std::string, std::string>& method_table() {
  static const std::map<std::string, std::string> table{
      {"finetune", "sequential fine-tuning of the whole ViT and a linear head (lower bound)"},
      {"linear-probe", "frozen ViT, class-incremental linear head"},
      {"l2p", "L2P (CVPR'22): key-query prompt pool, top-k prompts prepended to the input"},
      {"dualprompt", "DualPrompt (ECCV'22): G-prompt + task-keyed E-prompts, prefix tuning"},
      {"coda-prompt", "CODA-Prompt (CVPR'23): attention-weighted prompt components, prefix tuning"},
      {"slca", "SLCA (ICCV'23): slow-learned ViT, per-task linear heads, classifier alignment on class statistics"},
      {"star-prompt", "STAR-Prompt (ECCV'24): CLIP text prototypes key per-class residual prompts (--clip DIR; "
                      "without it: class-mean keys, reported as star-prompt-fallback)"},
  };
  return table;
}

Json parse_section(const Json& options, const char* key, const std::set<std::string>& allowed) {
  for (const auto& [name, value] : options.items())
    if (!allowed.count(name))
      throw ConfigError("method_options." + name,
                        fmt::format("unknown section for this method; expected one of: {}", fmt::join(allowed, ", ")));
  return options.contains(key) ? options.at(key) : Json::object();
}

std::pair<std::shared_ptr<const Dataset>, std::shared_ptr<const Dataset>> load_datasets(const DataOptions& data) {
  auto both = [](auto&& load) {
    return std::pair<std::shared_ptr<const Dataset>, std::shared_ptr<const Dataset>>{load(Split::train),
                                                                                      load(Split::test)};
  };
  if (data.dataset == "fashion-mnist")
    return both([&](Split s) { return std::make_shared<TensorDataset>(load_fashion_mnist(data.root, s)); });
  if (data.dataset == "mnist")
    return both([&](Split s) { return std::make_shared<TensorDataset>(load_mnist(data.root, s)); });
  if (data.dataset == "cifar100")
    return both([&](Split s) { return std::make_shared<TensorDataset>(load_cifar100(data.root, s)); });
  if (data.dataset == "cifar10")
    return both([&](Split s) { return std::make_shared<TensorDataset>(load_cifar10(data.root, s)); });
  namespace fs = std::filesystem;
  return {std::make_shared<ImageFolderDataset>((fs::path(data.root) / "train").string(), data.image_folder),
          std::make_shared<ImageFolderDataset>((fs::path(data.root) / "test").string(), data.image_folder)};
}

void write_outputs(const std::string& directory, const Results& results) {
  if (directory.empty()) return;
  namespace fs = std::filesystem;
  write_text_file_atomically((fs::path(directory) / "results.json").string(), results.to_json().dump(2) + "\n");
  AccuracyPlot plot;
  plot.title = fmt::format("{} - seed {}", results.method, results.seed);
  plot.matrix = results.accuracy;
  plot.curves.push_back({"average accuracy over seen tasks", average_accuracy_per_task(results.accuracy)});
  for (const auto& t : results.tasks) plot.task_labels.push_back(fmt::format("T{}", t.task + 1));
  write_accuracy_svg((fs::path(directory) / "accuracy.svg").string(), plot);
}

template <class Model>
Results run_model(Model& model, const RunConfig& config, const Scenario& scenario, Results prefix,
                  const ExperimentOutput& output) {
  model.to(resolve_device(config.device));
  Learner<Model> learner(model, scenario, config.train, config.transform, static_cast<uint64_t>(config.seed));
  LearnerHooks hooks = output.hooks;
  auto fill = [&](Results r) {
    r.method = prefix.method;
    r.threads = prefix.threads;
    r.notes = prefix.notes;
    r.config = prefix.config;
    return r;
  };
  auto user_hook = hooks.on_task_end;
  hooks.on_task_end = [&](const Results& partial) {
    write_outputs(output.directory, fill(partial));
    if (user_hook) user_hook(partial);
  };
  auto results = fill(learner.run(hooks));
  if (config.save_checkpoint && !output.directory.empty())
    model.save((std::filesystem::path(output.directory) / "model.safetensors").string(),
               {{"clprompt.method", config.method}, {"clprompt.config", write_options(config).dump()}});
  return results;
}

}  // namespace

std::vector<MethodInfo> available_methods() {
  std::vector<MethodInfo> out;
  for (const auto& [name, description] : method_table()) out.push_back({name, description});
  return out;
}

RunConfig default_config(const std::string& method) {
  if (!method_table().count(method)) {
    std::vector<std::string> names;
    for (const auto& m : available_methods()) names.push_back(m.name);
    throw ConfigError("method", fmt::format("unknown method '{}'; available: {}", method, fmt::join(names, ", ")));
  }
  RunConfig c = embedded_default();
  c.method = method;
  if (method == "finetune") {
    // "FT" of the CODA-Prompt paper: plain cross-entropy over all seen classes. With the
    // prompt methods' train-time masking it becomes "FT++" (method_options.head.mask_other_tasks).
    c.method_options = Json{{"head", {{"mask_other_tasks", false}}}};
    c.train.lr = 1e-3;
  } else if (method == "linear-probe") {
    c.train.lr = 1e-2;
  } else if (method == "l2p") {
    c.train = scaled_recipe(l2p_train_options(), /*scale_lr_with_batch=*/true);
    c.method_options = Json{{"selector", write_options(KeyQueryPool::Options{})}};
  } else if (method == "dualprompt") {
    c.train = scaled_recipe(dualprompt_train_options(), true);
    c.method_options = Json{{"selector", write_options(DualPrompt::Options{})}};
  } else if (method == "coda-prompt") {
    c.train = scaled_recipe(coda_prompt_train_options(), false);
    // num_tasks is left out: run_experiment takes it from the scenario (100 components over 5
    // tasks = 20 new per task) unless the configuration sets it.
    auto selector = write_options(AttentionDecomposed::Options{});
    selector.erase("num_tasks");
    c.method_options = Json{{"selector", selector}};
  } else if (method == "slca") {
    // SLCA's learning rates are fixed (not scaled with the batch); alignment keeps its 5 epochs.
    c.train = scaled_recipe(slca_train_options(), /*scale_lr_with_batch=*/false);
    c.method_options = Json{{"head", write_options(SLCAHeadOptions{})}};
  } else if (method == "star-prompt") {
    // Both levels get the scaled epoch budget (the reference's first_stage_epochs = n_epochs).
    c.train = scaled_recipe(star_prompt_train_options(), /*scale_lr_with_batch=*/false);
    ClipPrototypeOptions source;
    source.epochs = c.train.epochs;
    c.method_options = Json{{"selector", write_options(PrototypeKeysOptions{})},
                            {"source", write_options(source)},
                            {"head", write_options(star_prompt_head_options())}};
  }
  return c;
}

RunConfig resolve_config(const std::string& method, const Json& overrides) {
  if (!overrides.is_object()) throw ConfigError("<root>", "the configuration must be a JSON object");
  std::string name = method;
  if (overrides.contains("method")) {
    if (!overrides.at("method").is_string()) throw ConfigError("method", "expected a string");
    if (name.empty()) name = overrides.at("method").get<std::string>();
    else if (overrides.at("method").get<std::string>() != name)
      throw ConfigError("method", fmt::format("the configuration says '{}' but '{}' was requested",
                                              overrides.at("method").get<std::string>(), name));
  }
  if (name.empty()) name = "finetune";
  Json merged = write_options(default_config(name));
  merged.merge_patch(overrides);
  return options_from_json<RunConfig>(merged);
}

Json parse_override(const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError(assignment, "an override must look like field.subfield=value, e.g. train.lr=0.01");
  const std::string key = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  Json value = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = text;
  Json patch = value;
  std::size_t end = key.size();
  while (true) {
    const auto dot = key.rfind('.', end - 1);
    const std::string part = key.substr(dot == std::string::npos ? 0 : dot + 1,
                                        end - (dot == std::string::npos ? 0 : dot + 1));
    if (part.empty()) throw ConfigError(key, "empty field name in override");
    patch = Json{{part, patch}};
    if (dot == std::string::npos) break;
    end = dot;
  }
  return patch;
}

Results run_experiment(const RunConfig& config, const ExperimentOutput& output) {
  const int threads = configure_threads(static_cast<int>(config.threads));
  seed_everything(static_cast<uint64_t>(config.seed));
  if (!output.directory.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(output.directory, ec);
    if (ec) throw FileError(output.directory, "cannot create the output directory: " + ec.message());
  }
  auto [train, test] = load_datasets(config.data);
  Scenario scenario(train, test, config.scenario, static_cast<uint64_t>(config.seed), "scenario");

  Results prefix;
  prefix.method = config.method;
  prefix.threads = threads;
  prefix.config = write_options(config);
  auto backbone = std::make_shared<VisionTransformer>(config.backbone);
  if (config.pretrained.empty()) {
    prefix.notes.push_back("backbone randomly initialised: no pre-trained weights were given (config field "
                           "'pretrained'); prompt methods need a pre-trained backbone to behave as published");
  } else {
    // Shipped weights ("builtin:...") are verified, then take the same timm loader as a user's file.
    const auto path = resolve_pretrained_path(config.pretrained);
    load_timm_vit(*backbone, path);
    prefix.notes.push_back(path == config.pretrained ? "backbone initialised from " + path
                                                     : fmt::format("backbone initialised from {} ({}, SHA-256 verified)",
                                                                   config.pretrained, path));
  }
  if (output.hooks.log)
    for (const auto& note : prefix.notes) output.hooks.log("note: " + note);

  const bool star = config.method == "star-prompt";
  const std::set<std::string> sections =
      star ? std::set<std::string>{"head", "selector", "source"} : std::set<std::string>{"head", "selector"};
  const Json head_json = parse_section(config.method_options, "head", sections);
  const auto selector_json = parse_section(config.method_options, "selector", sections);
  if (!star && !config.clip.empty())
    throw ConfigError("clip", fmt::format("only star-prompt uses CLIP; {} does not", config.method));
  auto selector = [&]<class Options>(Options options) {
    read_options(selector_json, options, "method_options.selector");
    return options;
  };
  const bool aligned = config.align || config.method == "slca" || star;
  prefix.method = run_name(config);
  // With alignment the head is SLCAHead (method_options.head: the linear head's fields plus
  // "logit_norm" and "alignment"), otherwise LinearHead.
  const auto head = aligned ? LinearHeadOptions{} : options_from_json<LinearHeadOptions>(head_json, "method_options.head");
  const auto slca_head = aligned ? options_from_json<SLCAHeadOptions>(head_json, "method_options.head") : SLCAHeadOptions{};
  const auto dims = dims_of(*backbone);
  auto build = [&]<class Selector>(std::shared_ptr<Selector> sel, ParameterRoles roles) {
    if (aligned) {
      auto model = std::make_shared<ContinualModel<VisionTransformer, Selector, SLCAHead>>(
          backbone, std::move(sel), make_slca_head(slca_head, dims), roles);
      return run_model(*model, config, scenario, prefix, output);
    }
    auto model = std::make_shared<ContinualModel<VisionTransformer, Selector, LinearHead>>(
        backbone, std::move(sel), std::make_shared<LinearHead>(head, dims), roles);
    return run_model(*model, config, scenario, prefix, output);
  };
  if (config.method == "finetune" || config.method == "linear-probe" || config.method == "slca") {
    if (!selector_json.empty())
      throw ConfigError("method_options.selector", config.method + " has no prompt selector");
    ParameterRoles roles;
    roles.backbone = config.method == "finetune" ? LearningRole::normal
                     : config.method == "slca"   ? LearningRole::slow
                                                 : LearningRole::frozen;
    return build(std::make_shared<NoPrompts>(), roles);
  }
  if (star) {
    ParameterRoles frozen_backbone;
    frozen_backbone.backbone = LearningRole::frozen;
    const auto keys = selector(PrototypeKeysOptions{});
    // Level 1's options are checked even when the fallback leaves them unused.
    auto source_options = options_from_json<ClipPrototypeOptions>(
        parse_section(config.method_options, "source", sections), "method_options.source");
    if (config.clip.empty()) {
      auto source = std::make_shared<ClassMeanPrototypes>(dims);
      prefix.notes.push_back("prototype source: " + source->description() +
                             "; level 1 (method_options.source) needs --clip and does not run");
      if (output.hooks.log) output.hooks.log("note: " + prefix.notes.back());
      return build(std::make_shared<PrototypeKeys<ClassMeanPrototypes>>(keys, dims, std::move(source)), frozen_backbone);
    }
    auto clip = load_clip_directory(config.clip);
    source_options.input_mean = config.transform.mean;
    source_options.input_std = config.transform.std;
    auto source = std::make_shared<ClipTextPrototypes>(source_options, clip.model, clip.tokenizer,
                                                       scenario.class_names());
    prefix.notes.push_back(fmt::format("prototype source: {}; CLIP weights {} ({} names)", source->description(),
                                       clip.files.weights,
                                       clip.naming == ClipNaming::huggingface ? "Hugging Face" : "OpenAI/open_clip"));
    if (output.hooks.log) output.hooks.log("note: " + prefix.notes.back());
    return build(std::make_shared<PrototypeKeys<ClipTextPrototypes>>(keys, dims, std::move(source)), frozen_backbone);
  }
  if (config.method == "l2p") return build(std::make_shared<KeyQueryPool>(selector(KeyQueryPool::Options{}), dims), {});
  if (config.method == "dualprompt")
    return build(std::make_shared<DualPrompt>(selector(DualPrompt::Options{}), dims), {});
  if (config.method == "coda-prompt") {
    AttentionDecomposed::Options defaults;
    defaults.num_tasks = scenario.num_tasks();
    return build(std::make_shared<AttentionDecomposed>(selector(defaults), dims), {});
  }
  throw ConfigError("method", fmt::format("unknown method '{}'", config.method));
}

std::string run_name(const RunConfig& config) {
  if (config.method == "star-prompt") return config.clip.empty() ? "star-prompt-fallback" : "star-prompt";
  if (config.method == "slca" || !config.align) return config.method;
  return config.method + "+align";
}

std::string format_summary(const Results& r) {
  std::string out = fmt::format("{}: accuracy (%) on each task's test set (columns) after learning task t (rows)\n",
                                r.method);
  out += "         ";
  for (int64_t j = 0; j < r.completed_tasks(); ++j) out += fmt::format("{:>7}", fmt::format("T{}", j + 1));
  out += fmt::format("{:>9}\n", "avg");
  const auto avg = r.accuracy.empty() ? std::vector<double>{} : average_accuracy_per_task(r.accuracy);
  for (std::size_t t = 0; t < r.accuracy.size(); ++t) {
    out += fmt::format("after T{:<2}", t + 1);
    for (double a : r.accuracy[t]) out += fmt::format("{:7.1f}", a);
    out += std::string(7 * (r.accuracy.size() - t - 1), ' ');
    out += fmt::format("{:9.2f}\n", avg[t]);
  }
  if (!r.accuracy.empty()) {
    const double f = average_forgetting(r.accuracy);
    out += fmt::format("final average accuracy {:.2f}% | average incremental accuracy {:.2f}% | forgetting {}\n",
                       final_average_accuracy(r.accuracy), average_incremental_accuracy(avg),
                       std::isnan(f) ? std::string("n/a") : fmt::format("{:.2f}", f));
  }
  return out;
}

}  // namespace clprompt
