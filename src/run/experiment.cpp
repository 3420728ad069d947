// Compiled part of include/clprompt/run/experiment.hpp and run_config.hpp: the embedded default,
// configuration resolution through the method registry, and the run itself.
#include "clprompt/run/experiment.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#include <fmt/format.h>

#include "clprompt/backbone/builtin_weights.hpp"
#include "clprompt/backbone/timm_loader.hpp"
#include "clprompt/core/seed.hpp"
#include "clprompt/core/json_parse.hpp"
#include "clprompt/core/memory.hpp"
#include "clprompt/core/threads.hpp"
#include "clprompt/io/atomic_file.hpp"
#include "clprompt/io/file_bytes.hpp"
#include "clprompt/io/svg_plot.hpp"
#include "clprompt/learn/metrics.hpp"
#include "clprompt/run/benchmarks.hpp"

namespace clprompt {

/// Split Fashion-MNIST (5 tasks x 2 classes) with a small ViT on the native 28x28 images (patch 4
/// -> 49 patches + [CLS]; D 128, 6 layers so that the published prompt layers 0-4 exist; ~1.2 M
/// parameters), initialised from the shipped weights that `clprompt pretrain` produced on font
/// glyphs (models/, docs/pretraining.md). Sized so that `clprompt run` of a method takes one to
/// three minutes on 2 cores (docs/results.md).
RunConfig embedded_default() {
  RunConfig c;
  c.data.dataset = "fashion-mnist";
  c.data.root = "/usr/share/datasets/fashion-mnist";
  c.scenario.num_tasks = 5;
  c.scenario.train_per_class = 1000;
  c.scenario.test_per_class = 500;  // of 1000: halves evaluation time, +-2% binomial error per task
  // The methods' input pipelines are scaled to this size (resolve_config); ImageNet statistics,
  // as the shipped backbone was pre-trained with.
  c.transform.size = 28;
  c.transform.horizontal_flip = true;
  c.backbone.image_size = 28;
  c.backbone.patch_size = 4;
  c.backbone.embed_dim = 128;
  c.backbone.depth = 6;
  c.backbone.num_heads = 4;
  c.pretrained = "builtin:vit-glyph-d128";
  c.train.optim.optimizer = OptimizerKind::adam;
  c.train.batch_size = 64;
  c.train.epochs = 1;
  return c;
}

namespace {

/// A published recipe on the embedded default: one epoch per task (none where the recipe trains
/// none) and batch 64 instead of 5-20 epochs and batches of 16-128, the learning rate scaled as the reference scales it (linearly
/// with the batch for L2P and DualPrompt; fixed for the others).
TrainOptions embedded_recipe(TrainOptions published, bool scale_lr_with_batch) {
  const int64_t batch = 64;
  if (scale_lr_with_batch)
    published.optim.lr *= static_cast<double>(batch) / static_cast<double>(published.batch_size);
  published.batch_size = batch;
  published.epochs = std::min<int64_t>(published.epochs, 1);
  return published;
}

BackboneDims dims_of(const ViTOptions& vit) { return {vit.embed_dim, vit.depth, vit.num_heads}; }

MethodSetting setting_of(const RunConfig& c) { return {dims_of(c.backbone), c.scenario.num_tasks, c.train}; }

std::string string_field(const Json& overrides, const char* key) {
  if (!overrides.contains(key)) return "";
  if (!overrides.at(key).is_string()) throw ConfigError(key, fmt::format("expected a string, got {}", overrides.at(key).dump()));
  return overrides.at(key).get<std::string>();
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

}  // namespace

namespace {

/// The method's input pipeline at the embedded default's 28 px: the same crops, flips and
/// jitter at the same ratios (Resize(256) + CenterCrop(224) -> Resize(32) + CenterCrop(28)),
/// with the normalisation the shipped backbone was pre-trained with.
TransformOptions embedded_transform(TransformOptions reference, const TransformOptions& embedded) {
  const double scale = static_cast<double>(embedded.size) / 224.0;
  auto scaled = [&](int64_t px) { return px > 0 ? static_cast<int64_t>(std::lround(static_cast<double>(px) * scale)) : px; };
  reference.size = embedded.size;
  reference.train_resize = scaled(reference.train_resize);
  reference.test_resize = scaled(reference.test_resize);
  reference.crop_padding = scaled(reference.crop_padding);
  reference.mean = embedded.mean;
  reference.std = embedded.std;
  return reference;
}

/// The geometry of `pretrained` (a path or builtin:<name>), or `backbone` as it is when none is given.
ViTOptions geometry_of(const std::string& pretrained, const ViTOptions& backbone) {
  if (pretrained.empty()) return backbone;
  return vit_options_from_weights(resolve_pretrained_path(pretrained), backbone);
}

std::string describe(const ViTOptions& v) {
  return fmt::format("D {}, depth {}, patch {}, {} px", v.embed_dim, v.depth, v.patch_size, v.image_size);
}

Json merged(Json base, const Json& patch) {
  base.merge_patch(patch);
  return base;
}

}  // namespace

RunConfig resolve_config(const MethodRegistry& registry, const std::string& method, const Json& overrides) {
  if (!overrides.is_object()) throw ConfigError("<root>", "the configuration must be a JSON object");
  std::string name = method;
  if (const auto configured = string_field(overrides, "method"); !configured.empty()) {
    if (name.empty()) name = configured;
    else if (configured != name)
      throw ConfigError("method", fmt::format("the configuration says '{}' but '{}' was requested", configured, name));
  }
  if (name.empty()) name = "finetune";
  const MethodEntry& entry = registry.at(name);
  auto head = string_field(overrides, "head");
  if (head.empty()) head = entry.default_head;
  MethodRegistry::check_head(head);
  const auto benchmark = string_field(overrides, "benchmark");
  const auto pretrained = string_field(overrides, "pretrained");

  Json without_method_options = overrides;
  without_method_options.erase("method_options");
  without_method_options.erase("head_options");

  RunConfig defaults;
  Json head_patch = Json::object(), preset_options;
  if (benchmark.empty()) {
    defaults = embedded_default();
    defaults.train = embedded_recipe(entry.recipe, entry.lr_scales_with_batch);
    if (!pretrained.empty()) defaults.backbone = geometry_of(pretrained, defaults.backbone);
    // The method's transforms at the side the backbone takes (28 px unless the user's backbone
    // or weights say otherwise); a user's transform fields still override them below.
    TransformOptions embedded = defaults.transform;
    embedded.size = options_from_json<RunConfig>(merged(write_options(defaults), without_method_options)).backbone.image_size;
    defaults.transform = embedded_transform(entry.transform, embedded);
  } else {
    const Benchmark& b = find_benchmark(benchmark);
    ResolvedPreset base;
    base.data = b.data;
    base.scenario = b.scenario;
    const auto preset = entry.preset(benchmark, base);
    if (!preset) {
      std::vector<std::string> with;
      for (const auto& e : registry.entries())
        if (e.preset(benchmark, base)) with.push_back(e.name);
      throw ConfigError("benchmark", fmt::format("{} has no published recipe for {}; methods with one: {}", name,
                                                 benchmark, with.empty() ? "none" : fmt::format("{}", fmt::join(with, ", "))));
    }
    defaults.benchmark = benchmark;
    defaults.data = preset->data;
    defaults.scenario = preset->scenario;
    defaults.transform = preset->transform;
    defaults.train = preset->train;
    defaults.backbone = b.backbone;
    defaults.pretrained = "";
    defaults.trials = preset->trials;
    if (!defaults.trials.empty()) {
      defaults.seed = defaults.trials.front().seed;
      defaults.scenario.order = defaults.trials.front().order;
      defaults.scenario.order_seed = defaults.trials.front().order_seed;
    }
    if (head == entry.default_head) head_patch = preset->head_options;  // the preset speaks of its own head
    preset_options = preset->options;
    defaults.reference = Json{{"weights", preset->weights}, {"reported", preset->reported}, {"sources", preset->sources}};
    if (!pretrained.empty()) {
      const auto found = geometry_of(pretrained, b.backbone);
      if (found.embed_dim != b.backbone.embed_dim || found.depth != b.backbone.depth ||
          found.patch_size != b.backbone.patch_size || found.image_size != b.backbone.image_size)
        throw ConfigError("pretrained", fmt::format("{} is a ViT of {}, but the {} protocol runs {} (the reference loads "
                                                    "{}); give weights of that geometry",
                                                    pretrained, describe(found), benchmark, describe(b.backbone),
                                                    preset->weights));
      defaults.backbone = found;
    }
  }
  defaults.method = name;
  defaults.head = head;
  // The method's option defaults may follow the setting (number of tasks, training recipe), so
  // they are computed after the user's scenario and train fields are in.
  const auto setting = setting_of(options_from_json<RunConfig>(merged(write_options(defaults), without_method_options)));
  defaults.method_options = benchmark.empty() ? entry.default_options(setting) : preset_options;
  defaults.head_options = merged(entry.default_head_options(head, /*embedded=*/benchmark.empty()), head_patch);

  auto config = options_from_json<RunConfig>(merged(write_options(defaults), overrides));
  entry.check(config.method_options, "method_options", config.head, config.head_options, "head_options",
              setting_of(config));
  return config;
}

Json parse_override(const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError(brief(assignment), "an override must look like field.subfield=value, e.g. train.lr=0.01");
  const std::string key = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  // Configurations are JSON, which is UTF-8: a field name, or a value kept as a string, with other
  // bytes would make every later dump of the configuration (error messages, results.json) throw
  // nlohmann's type_error far from here (found by fuzz/override_fuzzer.cpp).
  try {
    (void)Json(assignment).dump();
  } catch (const Json::type_error&) {
    throw ConfigError(brief(key), "the override is not valid UTF-8 text; configuration values are JSON strings, "
                                  "which must be UTF-8");
  }
  std::vector<std::string> parts;
  for (std::size_t begin = 0;;) {
    const auto dot = key.find('.', begin);
    parts.push_back(key.substr(begin, dot == std::string::npos ? std::string::npos : dot - begin));
    if (parts.back().empty())
      throw ConfigError(brief(key), "empty field name in the override's path (expected field.subfield=value)");
    if (dot == std::string::npos) break;
    begin = dot + 1;
  }
  if (parts.size() > 32)  // the patch nests once per part; no configuration is this deep
    throw ConfigError(brief(key), fmt::format("a field path of {} parts; configurations nest at most 32 deep", parts.size()));
  Json value;
  try {
    value = parse_json<Json>(text);
  } catch (const JsonSyntaxError&) {
    value = text;  // not JSON: the text itself, e.g. --set data.root=/data
  } catch (const JsonLimitError& e) {
    throw ConfigError(brief(key), e.what());
  }
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) value = Json{{*it, std::move(value)}};
  return value;
}

std::string run_name(const MethodRegistry& registry, const RunConfig& config) {
  return registry.at(config.method).run_name(config.method_options, config.head);
}

std::vector<RunConfig> trial_configs(const RunConfig& config) {
  if (config.trials.empty()) return {config};
  std::vector<RunConfig> out;
  for (const auto& trial : config.trials) {
    RunConfig c = config;
    c.trials.clear();
    c.seed = trial.seed;
    c.scenario.order = trial.order;
    c.scenario.order_seed = trial.order_seed;
    out.push_back(std::move(c));
  }
  return out;
}

namespace {

/// Sizes whose tensors cannot fit in this machine's memory are refused by name, with the computed
/// size, before anything is allocated (otherwise LibTorch's allocator fails mid-run).
void require_sizes_fit(const RunConfig& config) {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return;
  const double memory = static_cast<double>(pages) * static_cast<double>(page);
  auto require = [&](double bytes, const std::string& field, const std::string& what) {
    if (bytes > memory)
      throw ConfigError(field, fmt::format("{} needs {:.1f} GB, more than this machine's {:.1f} GB of memory", what,
                                           bytes / 1e9, memory / 1e9));
  };
  const auto& b = config.backbone;
  const double batch = static_cast<double>(std::max(config.train.batch_size, config.train.eval_batch_size));
  for (const auto& [field, side] : {std::pair{"transform.size", config.transform.size},
                                    std::pair{"transform.train_resize", config.transform.train_resize},
                                    std::pair{"transform.test_resize", config.transform.test_resize},
                                    std::pair{"backbone.image_size", b.image_size}}) {
    const double s = static_cast<double>(side);
    require(batch * 3.0 * s * s * 4.0, field, fmt::format("a batch of {} images of {} x {} pixels", batch, side, side));
  }
  const double D = static_cast<double>(b.embed_dim), tokens = static_cast<double>(b.num_patches() + 1);
  require(4.0 * tokens * D * batch, "backbone.image_size",
          fmt::format("a batch of {} sequences of {} tokens of width {}", batch, tokens, b.embed_dim));
  const double per_block = (4.0 + 2.0 * b.mlp_ratio) * D * D;  // qkv + proj + the MLP's two layers
  const double parameters = static_cast<double>(b.depth) * per_block;
  require(4.0 * parameters, "backbone.embed_dim",
          fmt::format("a ViT of width {} and depth {} ({:.3g} parameters)", b.embed_dim, b.depth, parameters));
}

/// The configuration a resumed run must repeat: everything but where and how fast it runs.
Json comparable(const Json& resolved) {
  Json j = resolved;
  for (const char* key : {"threads", "device", "save_checkpoint"}) j.erase(key);
  return j;
}

/// ConfigError naming the first field of `config` that differs from the run in `directory`.
void require_same_configuration(const Json& recorded, const Json& config, const std::string& file) {
  if (const auto field = first_difference(comparable(recorded), comparable(config)); !field.empty()) {
    auto value_at = [&](const Json& root) -> std::string {
      const Json* node = &root;
      std::stringstream path(field);
      for (std::string key; std::getline(path, key, '.');) {
        if (!node->is_object() || !node->contains(key)) return "absent";
        node = &node->at(key);
      }
      return brief(node->dump());
    };
    const auto was = value_at(recorded), now = value_at(config);
    throw ConfigError(field, fmt::format("differs from the run in {} (there {}, now {}); resume with the same "
                                         "configuration, or --overwrite / another --out to start a new run",
                                         file, was, now));
  }
}

/// Temporary files of atomic writes that a killed run left behind.
void remove_stale_temporaries(const std::string& directory) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(directory, ec))
    if (entry.path().filename().string().find(".tmp-") != std::string::npos) std::filesystem::remove(entry.path(), ec);
}

}  // namespace

std::string resume_checkpoint_path(const std::string& directory) {
  return (std::filesystem::path(directory) / "resume.safetensors").string();
}

void check_run_directory(const std::string& directory, ExistingRun existing) {
  if (directory.empty() || existing != ExistingRun::refuse) return;
  for (const auto& file : {resume_checkpoint_path(directory), (std::filesystem::path(directory) / "results.json").string()}) {
    std::error_code ec;
    if (std::filesystem::exists(file, ec))
      throw ConfigError("out", fmt::format("{} holds a run ({}); --resume continues it, --overwrite starts it again, "
                                           "--out DIR writes elsewhere",
                                           directory, std::filesystem::path(file).filename().string()));
  }
}

Results run_experiment(const MethodRegistry& registry, const RunConfig& config, const ExperimentOutput& output) {
  const MethodEntry& entry = registry.at(config.method);
  if (!config.benchmark.empty()) {
    const auto weights = config.reference.value("weights", std::string());
    if (config.pretrained.empty())
      throw ConfigError("pretrained", fmt::format("the {} protocol needs the pre-trained ViT: --pretrained FILE.safetensors "
                                                  "({} as its reference loads it, from timm)",
                                                  config.benchmark, weights.empty() ? "a timm ViT" : weights));
    if (config.data.root.empty())
      throw ConfigError("data.root", fmt::format("the {} protocol needs the data: --data DIR ({})", config.benchmark,
                                                 find_benchmark(config.benchmark).description));
  }
  // `config` prints a recipe without data; a run needs it.
  if (config.data.root.empty())
    throw ConfigError("data.root", fmt::format("must name the {} directory (--data DIR)", config.data.dataset));
  entry.check(config.method_options, "method_options", config.head, config.head_options, "head_options",
              setting_of(config));
  require_sizes_fit(config);
  check_run_directory(output.directory, output.existing);
  const int threads = configure_threads(static_cast<int>(config.threads));
  keep_freed_memory();
  seed_everything(static_cast<uint64_t>(config.seed));
  // In a data-parallel run rank 0 alone writes (every rank computes the same results).
  const auto* collective = output.data_parallel.collective.get();
  const int world_size = collective != nullptr ? collective->world_size() : 1;
  const bool writes = collective == nullptr || collective->rank() == 0;
  if (!output.directory.empty() && writes) {
    std::error_code ec;
    std::filesystem::create_directories(output.directory, ec);
    if (ec) throw FileError(output.directory, "cannot create the output directory: " + ec.message());
    // A read-only directory (or a full disk) is found now, not when the first results are written.
    const auto probe = (std::filesystem::path(output.directory) / ".clprompt-write-test").string();
    {
      std::ofstream out(probe, std::ios::binary);
      out << "clprompt";
      out.flush();
      if (!out) {
        std::filesystem::remove(probe, ec);
        throw FileError(output.directory, "the output directory is not writable (read-only, no permission or full "
                                          "disk); results could not be saved");
      }
    }
    std::filesystem::remove(probe, ec);
  }
  // An existing run: continued from its checkpoint, reported when complete, or replaced.
  const auto resolved = write_options(config);
  std::optional<ResumeState> resume;
  Json resumed_config;
  const auto state_path = output.directory.empty() ? std::string() : resume_checkpoint_path(output.directory);
  const auto results_path = output.directory.empty() ? std::string() : (std::filesystem::path(output.directory) / "results.json").string();
  if (!output.directory.empty()) {
    std::error_code ec;
    if (writes) remove_stale_temporaries(output.directory);
    if (output.existing == ExistingRun::overwrite) {
      if (writes) std::filesystem::remove(state_path, ec);
    } else if (output.existing == ExistingRun::resume) {
      if (std::filesystem::exists(state_path, ec)) {
        resume = read_resume_checkpoint(state_path);
        const auto recorded = resume->metadata.find("clprompt.config");
        if (recorded == resume->metadata.end())
          throw CheckpointError(state_path + ": the run's configuration (metadata 'clprompt.config') is missing");
        Json saved;
        try {
          saved = parse_json<Json>(recorded->second);
        } catch (const JsonError& e) {
          throw CheckpointError(fmt::format("{}: metadata 'clprompt.config': {}", state_path, e.what()));
        }
        require_same_configuration(saved, resolved, state_path);
        resumed_config = saved;
        // The shards (and the reduction order) depend on the number of processes.
        const auto recorded_world = resume->metadata.find("clprompt.world_size");
        const int was = recorded_world == resume->metadata.end() ? 1 : std::atoi(recorded_world->second.c_str());
        if (was != world_size)
          throw CheckpointError(fmt::format("{}: written by a run of {} process{}, this one has {}; resume with {}",
                                            state_path, was, was == 1 ? "" : "es", world_size,
                                            was == 1 ? "one process (no --nproc)" : fmt::format("--nproc {}", was)));
      } else if (std::filesystem::exists(results_path, ec)) {
        Results done;
        try {
          const auto bytes = detail::read_file_bytes(results_path);
          done = Results::from_json(parse_json<Json>(std::string(bytes.begin(), bytes.end())));
        } catch (const JsonError& e) {
          throw FileError(results_path, e.what());
        } catch (const Json::exception& e) {
          throw FileError(results_path, fmt::format("not a clprompt results.json: {}", brief(e.what())));
        }
        require_same_configuration(done.config, resolved, results_path);
        if (!done.complete())
          throw CheckpointError(fmt::format("{}: {} of {} tasks are done but there is no {} to continue from; "
                                            "--overwrite starts the run again",
                                            results_path, done.completed_tasks(), done.num_tasks, state_path));
        if (output.hooks.log) output.hooks.log(fmt::format("{} is complete; nothing to resume", results_path));
        return done;
      }
    }
  }
  auto [train, test] = load_datasets(config.data);
  Scenario scenario(train, test, config.scenario, static_cast<uint64_t>(config.seed), "scenario");

  std::vector<std::string> notes;
  auto note = [&](const std::string& text) {
    notes.push_back(text);
    if (output.hooks.log) output.hooks.log("note: " + text);
  };
  auto backbone = std::make_shared<VisionTransformer>(config.backbone);
  if (config.pretrained.empty()) {
    note("backbone randomly initialised: no pre-trained weights were given (config field 'pretrained'); prompt "
         "methods need a pre-trained backbone to behave as published");
  } else {
    // Shipped weights ("builtin:...") are verified, then take the same timm loader as a user's file.
    const auto path = resolve_pretrained_path(config.pretrained);
    load_timm_vit(*backbone, path);
    note(path == config.pretrained
             ? "backbone initialised from " + path
             : fmt::format("backbone initialised from {} ({}, SHA-256 verified)", config.pretrained, path));
  }

  const auto name = entry.run_name(config.method_options, config.head);
  auto fill = [&](Results r) {
    r.method = name;
    r.threads = threads;
    r.notes = notes;
    r.config = resolved;
    return r;
  };
  MethodRun run;
  run.options = config.method_options;
  run.head = config.head;
  run.head_options = config.head_options;
  run.context.backbone = backbone;
  run.context.dims = dims_of(*backbone);
  run.context.num_tasks = scenario.num_tasks();
  run.context.class_names = scenario.class_names();
  run.context.transform = config.transform;
  run.context.train = config.train;
  run.context.note = note;
  run.scenario = &scenario;
  run.transform = config.transform;
  run.seed = static_cast<uint64_t>(config.seed);
  run.device = resolve_device(config.device);
  if (collective != nullptr && run.device.is_cuda() && !run.device.has_index())
    run.device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(output.local_rank));  // a GPU per local rank
  run.data_parallel = output.data_parallel;
  run.hooks = output.hooks;
  auto user_hook = output.hooks.on_task_end;
  run.hooks.on_task_end = [&](const Results& partial) {
    if (writes) write_outputs(output.directory, fill(partial));
    if (user_hook) user_hook(partial);
  };
  if (config.save_checkpoint && !output.directory.empty()) {
    run.checkpoint_path = (std::filesystem::path(output.directory) / "model.safetensors").string();
    run.checkpoint_metadata = {{"clprompt.method", config.method}, {"clprompt.config", resolved.dump()}};
  }
  if (!output.directory.empty()) {
    run.hooks.checkpoint.path = state_path;
    run.hooks.checkpoint.every_steps = output.checkpoint_every_steps;
    run.hooks.checkpoint.metadata = {{"clprompt.method", config.method},
                                     {"clprompt.config", resolved.dump()},
                                     {"clprompt.world_size", std::to_string(world_size)}};
  }
  if (resume) {
    run.resume = &*resume;
    // Results carry the notes and times of the whole run, the part before the stop included.
    for (const char* field : {"threads", "device"})
      if (const auto was = resumed_config.value(field, Json()); was != resolved.at(field))
        note(fmt::format("resumed with {} {} instead of {}: the continuation is not bit-identical to an "
                         "uninterrupted run", field, resolved.at(field).dump(), was.dump()));
  }
  auto results = fill(entry.run(run));
  if (!output.directory.empty() && writes) {
    std::error_code ec;
    std::filesystem::remove(state_path, ec);  // complete: results.json and the model are the run's record
  }
  return results;
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
