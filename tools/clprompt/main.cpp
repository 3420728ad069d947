// clprompt: the command-line tool. The published methods' CLI (run_cli over builtin_methods())
// plus `pretrain`, which re-creates the shipped glyph-pretrained backbone.
//
//   clprompt run --method finetune,linear-probe           the embedded default (Split Fashion-MNIST)
//   clprompt run --method coda-prompt --align --set train.epochs=3 --out results/coda
//   clprompt config --method l2p                           the resolved configuration
//   clprompt methods [--json]                              methods and head kinds
//   clprompt pretrain --out build/pretrain [--resume]     pre-train the default ViT on font glyphs
#include <string>
#include <vector>

#include <fmt/format.h>

#include "clprompt/methods/registry.hpp"
#include "clprompt/pretrain/pretrain.hpp"
#include "clprompt/run/cli.hpp"
#include "clprompt/run/experiment.hpp"

namespace {

constexpr const char* kPretrainUsage =
    R"([--config FILE.json] [--set FIELD=VALUE]... [--out DIR] [--resume] [--print-config] [--quiet]
pretrain pre-trains the embedded default's ViT on glyphs rendered from the installed fonts
         (scripts/pretrain.sh installs the pinned font packages and runs it): writes
         DIR/state.safetensors (checkpoints; --resume continues from it), DIR/pretrain.json and
         DIR/vit.safetensors (timm names) (DIR defaults to build/pretrain).
)";

int pretrain(const std::vector<std::string>& args) {
  std::string config_file, out = "build/pretrain";
  std::vector<std::string> overrides;
  bool resume = false, print_config = false, quiet = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) throw clprompt::ConfigError(args[i], "needs a value");
      return args[++i];
    };
    if (args[i] == "--config") config_file = value();
    else if (args[i] == "--set") overrides.push_back(value());
    else if (args[i] == "--out") out = value();
    else if (args[i] == "--resume") resume = true;
    else if (args[i] == "--print-config") print_config = true;
    else if (args[i] == "--quiet") quiet = true;
    else throw clprompt::ConfigError(args[i], "unknown argument for 'pretrain'");
  }
  auto patch = clprompt::read_config_file(config_file);
  for (const auto& o : overrides) patch.merge_patch(clprompt::parse_override(o));
  const auto config = clprompt::resolve_pretrain_config(patch);
  if (print_config) {
    fmt::print("{}\n", clprompt::write_options(config).dump(2));
    return 0;
  }
  clprompt::PretrainHooks hooks;
  if (quiet) hooks.log = nullptr;
  const auto result = clprompt::pretrain(config, out, resume, hooks);
  fmt::print("pretrain: {} steps, held-out font accuracy {:.2f}%, {:.0f} s{}\n", result.steps_done,
             result.validation_accuracy, result.seconds,
             result.finished ? ", weights " + result.weights_path : " (not finished: --resume continues)");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return clprompt::run_cli(argc, argv, clprompt::builtin_methods(), {{"pretrain", {kPretrainUsage, pretrain}}});
}
