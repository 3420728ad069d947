#pragma once
// The backbone weights shipped in the repository (models/), referred to in a configuration as
// "builtin:<name>" and verified against the SHA-256 compiled into the library before use.
#include <string>
#include <vector>

namespace clprompt {

struct BuiltinWeights {
  std::string name;        ///< e.g. "vit-glyph-d128"
  std::string file;        ///< file name under the models directory
  std::string sha256;      ///< of the file
  std::string description;
  std::string regenerate;  ///< the command that reproduces the file
};

/// Every shipped weight file.
const std::vector<BuiltinWeights>& builtin_weights();

/// Directories searched for shipped weights, in order: $CLPROMPT_MODELS_DIR, the installed
/// <prefix>/share/clprompt/models, the source tree's models/ this library was built from.
std::vector<std::string> builtin_weights_search_path();

/// "builtin:<name>" -> the path of the verified file; any other string is returned unchanged
/// (a user's checkpoint path). Throws ConfigError (field `field`) for an unknown name and
/// FileError when the file is missing from every search directory or its SHA-256 differs
/// (a corrupt or stale copy), saying how to regenerate it.
std::string resolve_pretrained_path(const std::string& spec, const std::string& field = "pretrained");

}  // namespace clprompt
