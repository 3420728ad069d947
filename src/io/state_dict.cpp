// Compiled part of include/clprompt/io/state_dict.hpp: loading by name with a full mismatch report.
#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <torch/nn/module.h>

#include "clprompt/core/error.hpp"
#include "clprompt/io/state_dict.hpp"

namespace clprompt {
namespace detail {
namespace {

namespace fs = std::filesystem;

// ---- state dicts ----------------------------------------------------------------------------

std::string shape_text(at::IntArrayRef shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

bool starts_with_any(const std::string& name, const std::vector<std::string>& prefixes) {
  return std::any_of(prefixes.begin(), prefixes.end(),
                     [&](const std::string& p) { return !p.empty() && name.starts_with(p); });
}

std::string join_names(const std::vector<std::string>& names) { return fmt::format("{}", fmt::join(names, ", ")); }

// A prefix that, stripped from unexpected names, would turn them into missing ones.
std::string guess_strip_prefix(const LoadReport& report) {
  for (const auto& u : report.unexpected)
    for (const auto& m : report.missing)
      if (u.size() > m.size() && u.ends_with(m) && u[u.size() - m.size() - 1] == '.')
        return u.substr(0, u.size() - m.size());
  return {};
}


}  // namespace
}  // namespace detail

// ==== state_dict.hpp =========================================================================

TensorMap state_dict(const torch::nn::Module& module, const std::string& prefix) {
  TensorMap result;
  for (const auto& item : module.named_parameters(/*recurse=*/true))
    if (item.value().defined()) result.emplace(prefix + item.key(), item.value().detach());
  for (const auto& item : module.named_buffers(/*recurse=*/true))
    if (item.value().defined()) result.emplace(prefix + item.key(), item.value().detach());
  return result;
}

bool LoadReport::ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }

namespace detail {
namespace {
// `loaded_word` is "matching" in a strict-load error, where nothing was copied.
std::string describe(const LoadReport& r, const char* loaded_word) {
  std::string s = fmt::format("{} {}, missing {}, unexpected {}, mis-shaped {}, ignored {}", loaded_word, r.loaded.size(),
                              r.missing.size(), r.unexpected.size(), r.mismatched.size(), r.ignored.size());
  auto list = [&](const char* what, const std::vector<std::string>& names) {
    if (!names.empty()) s += fmt::format("\n  {} ({}): {}", what, names.size(), join_names(names));
  };
  list("missing from the checkpoint", r.missing);
  list("unexpected in the checkpoint", r.unexpected);
  list("shape mismatch", r.mismatched);
  return s;
}
}  // namespace
}  // namespace detail

std::string LoadReport::summary() const { return detail::describe(*this, "loaded"); }

LoadReport load_state_dict(torch::nn::Module& module, const TensorMap& tensors, const LoadOptions& options) {
  const TensorMap model = state_dict(module);
  LoadReport report;
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // (model tensor, checkpoint tensor)
  std::map<std::string, std::string> used;                // model name -> checkpoint name
  for (const auto& [raw_name, value] : tensors) {
    std::string name = raw_name;
    if (!options.strip_prefix.empty() && name.starts_with(options.strip_prefix))
      name.erase(0, options.strip_prefix.size());
    if (detail::starts_with_any(raw_name, options.ignore_prefixes) ||
        detail::starts_with_any(name, options.ignore_prefixes)) {
      report.ignored.push_back(raw_name);
      continue;
    }
    const auto it = model.find(name);
    if (it == model.end() || !value.defined()) {
      report.unexpected.push_back(raw_name);
      continue;
    }
    if (const auto [prev, inserted] = used.emplace(name, raw_name); !inserted) {
      // Both "model.x" and "x" map to "x" after stripping: keep the first, flag the second.
      report.unexpected.push_back(fmt::format("{} (also given as {})", raw_name, prev->second));
      continue;
    }
    if (value.sizes() != it->second.sizes()) {
      report.mismatched.push_back(fmt::format("{}: checkpoint {} vs model {}", name, detail::shape_text(value.sizes()),
                                              detail::shape_text(it->second.sizes())));
      continue;
    }
    copies.emplace_back(it->second, value);
    report.loaded.push_back(name);
  }
  for (const auto& [name, tensor] : model) {
    (void)tensor;
    const bool covered = used.count(name) != 0;
    if (!covered && !detail::starts_with_any(name, options.ignore_prefixes)) report.missing.push_back(name);
  }
  if (options.strict && !report.ok()) {
    std::string hint = "hint: ";
    if (const auto prefix = detail::guess_strip_prefix(report); !prefix.empty())
      hint += fmt::format("the checkpoint names look prefixed; try strip_prefix = \"{}\"", prefix);
    else
      hint += "use strip_prefix for prefixed checkpoint names (e.g. \"model.\"), ignore_prefixes to skip parts such as "
              "\"head.\", or strict = false to load only what matches";
    throw CheckpointError(fmt::format("{}: checkpoint does not match the model, nothing was loaded ({})\n{}",
                                      options.source, detail::describe(report, "matching"), hint));
  }
  torch::NoGradGuard no_grad;
  for (auto& [target, source] : copies) target.copy_(source);
  return report;
}

}  // namespace clprompt
