#pragma once
// The registry-driven runner behind `clprompt run` and `clprompt config`: resolves a RunConfig
// for a registered method (its recipe on the embedded default, the user's configuration merged
// over it, everything checked before any work starts) and runs it end to end.
//
//   auto registry = clprompt::builtin_methods();
//   auto config = clprompt::resolve_config(registry, "coda-prompt", clprompt::parse_override("train.epochs=3"));
//   auto results = clprompt::run_experiment(registry, config, {.directory = "results/coda-prompt"});
#include <string>

#include "clprompt/core/options.hpp"
#include "clprompt/learn/learner.hpp"
#include "clprompt/learn/results.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/run/run_config.hpp"

namespace clprompt {

/// The default configuration of `method`: with "benchmark" in the overrides, the method's
/// published protocol on that benchmark (Method::preset: data, split, class order and trials,
/// transforms, recipe, options); otherwise the embedded default with the method's recipe at one
/// epoch per task and batch 64 (the learning rate scaled linearly where the method's reference
/// scales it) and its input pipeline scaled to 28 px. A "pretrained" file gives the backbone's
/// geometry (read from its header; a benchmark refuses weights of another geometry). Then the
/// JSON `overrides` (RFC 7386 merge patch; "method", "head" and "benchmark" in them choose) are
/// merged over it, parsed strictly and checked by the method: every unknown or invalid field is
/// a ConfigError naming it, before any data is read. `method` empty: overrides' "method", else finetune.
RunConfig resolve_config(const MethodRegistry& registry, const std::string& method,
                         const Json& overrides = Json::object());

/// Parses "train.lr=0.01" into {"train": {"lr": 0.01}} (the value is JSON if it parses as JSON,
/// else a string).
Json parse_override(const std::string& assignment);

/// What run_experiment does with an output directory that already holds a run (results.json or
/// a resume checkpoint).
enum class ExistingRun {
  refuse,     ///< ConfigError before any work: a run is never overwritten silently
  resume,     ///< continue it from its checkpoint (same configuration), or report it when complete
  overwrite,  ///< start again, replacing it
};

struct ExperimentOutput {
  /// results.json, accuracy.svg, model.safetensors and, while the run is unfinished, its resume
  /// checkpoint resume.safetensors go here ("" = none of them, no resume).
  std::string directory;
  LearnerHooks hooks;
  ExistingRun existing = ExistingRun::refuse;
  int64_t checkpoint_every_steps = 0;  ///< resume checkpoints also every N steps (0: epoch ends only)
  /// One process of a data-parallel run (distributed/process_group.hpp): every rank calls
  /// run_experiment with the same configuration; rank 0 alone writes the directory's files (the
  /// others read a resume checkpoint from it: a filesystem every rank sees, or a copy on each node).
  DataParallel data_parallel;
  int local_rank = 0;  ///< device "cuda" means cuda:<local_rank> in a data-parallel run
};

/// The resume checkpoint of a run directory.
std::string resume_checkpoint_path(const std::string& directory);

/// Throws ConfigError when `directory` holds a run and `existing` is refuse, naming the file
/// found and the flags that resume or replace it (`clprompt run` checks every run's directory
/// before the first starts).
void check_run_directory(const std::string& directory, ExistingRun existing);

/// One configuration per trial of config.trials (seed and class order set, trials cleared), or
/// config itself when it has none.
std::vector<RunConfig> trial_configs(const RunConfig& config);

/// The name results are reported under: the method's run name ("star-prompt-fallback" for
/// star-prompt without CLIP), plus "+align" etc. when the head is not the method's default.
std::string run_name(const MethodRegistry& registry, const RunConfig& config);

/// Runs `config` end to end; writes results.json and accuracy.svg after every task (atomically,
/// so an interrupted run keeps the tasks it finished) and the model checkpoint at the end.
Results run_experiment(const MethodRegistry& registry, const RunConfig& config, const ExperimentOutput& output = {});

/// A plain-text table of the accuracy matrix and summary metrics.
std::string format_summary(const Results& results);

}  // namespace clprompt
