#pragma once
// Named parameters and buffers of a module, and loading them back from a checkpoint with a
// report (or, in strict mode, an error) that lists every name that did not match.
#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "clprompt/io/safetensors.hpp"

namespace clprompt {

/// Parameters and buffers of `module` and its descendants, named as named_parameters() names
/// them ("blocks.0.attn.qkv.weight") with `prefix` prepended. The tensors are detached but
/// share storage with the module (no copy).
TensorMap state_dict(const torch::nn::Module& module, const std::string& prefix = "");

struct LoadOptions {
  /// Throw CheckpointError unless every model tensor is loaded and every checkpoint tensor used.
  bool strict = true;
  /// Checkpoint names starting with one of these (before or after strip_prefix) are skipped,
  /// and model tensors under them that stay unloaded are not reported missing, e.g. "head."
  /// to load a backbone whose classifier has a different number of classes.
  std::vector<std::string> ignore_prefixes;
  /// File name used in messages.
  std::string source = "<memory>";
  /// Removed from checkpoint names that start with it before matching, e.g. "model.".
  std::string strip_prefix;
};

struct LoadReport {
  std::vector<std::string> loaded;      ///< model names that were copied
  std::vector<std::string> missing;     ///< model names absent from the checkpoint
  std::vector<std::string> unexpected;  ///< checkpoint names the model does not have
  std::vector<std::string> ignored;     ///< checkpoint names skipped by ignore_prefixes
  std::vector<std::string> mismatched;  ///< "name: checkpoint [3, 4] vs model [3, 5]"
  /// No missing, unexpected or mismatched names.
  bool ok() const;
  /// One line of counts, then one line per non-empty list naming every entry.
  std::string summary() const;
};

/// Copies the checkpoint tensors into the module's parameters and buffers under NoGradGuard,
/// converting to each parameter's dtype and device (an F16 checkpoint loads into an F32 model).
/// strict: nothing is copied unless everything matches; otherwise CheckpointError, starting with
/// options.source, lists all missing, unexpected and mis-shaped names with a hint.
/// Non-strict: loads what matches and returns the report.
LoadReport load_state_dict(torch::nn::Module& module, const TensorMap& tensors, const LoadOptions& options = {});

}  // namespace clprompt
