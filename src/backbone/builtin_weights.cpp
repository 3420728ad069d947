// Compiled part of include/clprompt/backbone/builtin_weights.hpp: the shipped weights and their SHA-256.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "clprompt/backbone/builtin_weights.hpp"
#include "clprompt/core/error.hpp"
#include "clprompt/io/sha256.hpp"
#include "clprompt_paths.hpp"

namespace clprompt {

const std::vector<BuiltinWeights>& builtin_weights() {
  static const std::vector<BuiltinWeights> table{
      {"vit-glyph-d128", "vit-glyph-d128.safetensors",
       "a05e6a65321f45fa86804192ea10b4fe3b6929435c983ff7f8e489da5b5bdcea",
       "ViT (28 px, patch 4, D 128, depth 6, 4 heads) pre-trained by `clprompt pretrain` on digits and Latin "
       "letters rendered from the pinned Debian font packages (docs/pretraining.md)",
       "bash scripts/pretrain.sh"},
  };
  return table;
}

std::vector<std::string> builtin_weights_search_path() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("CLPROMPT_MODELS_DIR"); env != nullptr && *env != '\0') dirs.emplace_back(env);
  dirs.emplace_back(CLPROMPT_INSTALLED_MODELS_DIR);
  dirs.emplace_back(CLPROMPT_SOURCE_MODELS_DIR);
  return dirs;
}

std::string resolve_pretrained_path(const std::string& spec, const std::string& field) {
  constexpr std::string_view prefix = "builtin:";
  if (spec.rfind(prefix, 0) != 0) return spec;
  const auto name = spec.substr(prefix.size());
  const auto& table = builtin_weights();
  const auto it = std::find_if(table.begin(), table.end(), [&](const BuiltinWeights& w) { return w.name == name; });
  if (it == table.end()) {
    std::vector<std::string> names;
    for (const auto& w : table) names.push_back("builtin:" + w.name);
    throw ConfigError(field, fmt::format("unknown shipped weights '{}'; available: {}", spec, fmt::join(names, ", ")));
  }
  const auto dirs = builtin_weights_search_path();
  for (const auto& dir : dirs) {
    const auto path = (std::filesystem::path(dir) / it->file).string();
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) continue;
    const auto actual = sha256_file_hex(path);
    if (actual != it->sha256)
      throw FileError(path, fmt::format("SHA-256 is {} but {} expects {}: the file is corrupt or from another "
                                        "version; restore it from git or regenerate it with `{}`",
                                        actual, spec, it->sha256, it->regenerate));
    return path;
  }
  throw FileError(it->file, fmt::format("shipped weights {} not found in {} (set CLPROMPT_MODELS_DIR, or "
                                        "regenerate them with `{}`)",
                                        spec, fmt::join(dirs, ", "), it->regenerate));
}

}  // namespace clprompt
