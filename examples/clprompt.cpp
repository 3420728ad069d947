// clprompt: the command-line front end of the library.
//
//   clprompt run --method finetune,linear-probe           the embedded default (Split Fashion-MNIST)
//   clprompt run --method finetune --config my.json --set train.epochs=3 --out results/ft
//   clprompt config --method finetune                      print the resolved configuration
//   clprompt methods                                       list the methods
//   clprompt pretrain --out build/pretrain [--resume]     pre-train the default ViT on font glyphs
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "clprompt/io/atomic_file.hpp"
#include "clprompt/io/svg_plot.hpp"
#include "clprompt/learn/experiment.hpp"
#include "clprompt/learn/pretrain.hpp"

namespace {

constexpr const char* kUsage = R"(usage:
  clprompt run [--method NAME[,NAME...]] [--config FILE.json] [--set FIELD=VALUE]... [--align] [--clip DIR]
               [--out DIR] [--quiet]
  clprompt config [--method NAME] [--config FILE.json] [--set FIELD=VALUE]...
  clprompt methods
  clprompt pretrain [--config FILE.json] [--set FIELD=VALUE]... [--out DIR] [--resume] [--print-config]

run      trains and evaluates each method on the scenario of the configuration (default: the embedded
         Split Fashion-MNIST, 5 tasks x 2 classes), prints the accuracy matrix and writes
         DIR/<method>/results.json, accuracy.svg, model.safetensors and DIR/comparison.svg
         (DIR defaults to results/).
config   prints the resolved configuration (defaults of the method + FILE + --set), the schema of --config.
methods  lists the available methods.
pretrain pre-trains the embedded default's ViT on glyphs rendered from the installed fonts
         (scripts/pretrain.sh installs the pinned font packages and runs it): writes
         DIR/state.safetensors (checkpoints; --resume continues from it), DIR/pretrain.json and
         DIR/vit.safetensors (timm names) (DIR defaults to build/pretrain).

--align adds SLCA's classifier alignment to the method (= --set align=true; options under
method_options.head.alignment and .logit_norm), e.g. clprompt run --method coda-prompt --align.
--clip DIR gives star-prompt its CLIP (= --set clip=DIR): a directory with the weights (model.safetensors
from Hugging Face's openai/clip-vit-base-patch16, or an open_clip/OpenAI-named *.safetensors) and the
tokenizer (vocab.json + merges.txt, or bpe_simple_vocab_16e6.txt.gz). Without it star-prompt runs with
class-mean prototypes of the backbone and reports as star-prompt-fallback.
--set takes a dotted field path and a JSON value, e.g. --set train.lr=0.01 --set scenario.num_tasks=10.
The thread count is config field 'threads' (0: $OMP_NUM_THREADS, else all cores).
)";

struct Arguments {
  std::string command;
  std::vector<std::string> methods;
  std::string config_file;
  std::vector<std::string> overrides;
  std::string out;  // default depends on the command
  bool quiet = false;
  bool resume = false;
  bool print_config = false;
};

Arguments parse(int argc, char** argv) {
  Arguments a;
  if (argc < 2) throw std::invalid_argument("missing command");
  a.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--method") {
      std::stringstream list(value());
      for (std::string m; std::getline(list, m, ',');)
        if (!m.empty()) a.methods.push_back(m);
    } else if (arg == "--config") {
      a.config_file = value();
    } else if (arg == "--set") {
      a.overrides.push_back(value());
    } else if (arg == "--out") {
      a.out = value();
    } else if (arg == "--clip") {
      a.overrides.push_back("clip=" + clprompt::Json(value()).dump());
    } else if (arg == "--align") {
      a.overrides.push_back("align=true");
    } else if (arg == "--resume") {
      a.resume = true;
    } else if (arg == "--print-config") {
      a.print_config = true;
    } else if (arg == "--quiet") {
      a.quiet = true;
    } else if (arg == "--help" || arg == "-h") {
      a.command = "help";
    } else {
      throw std::invalid_argument("unknown argument '" + arg + "'");
    }
  }
  return a;
}

clprompt::Json read_config_file(const std::string& path) {
  if (path.empty()) return clprompt::Json::object();
  std::ifstream in(path);
  if (!in) throw clprompt::FileError(path, "cannot open the configuration file");
  try {
    return clprompt::Json::parse(in);
  } catch (const clprompt::Json::parse_error& e) {
    throw clprompt::FileError(path, fmt::format("not valid JSON: {}", e.what()));
  }
}

clprompt::RunConfig resolve(const Arguments& a, const std::string& method) {
  auto overrides = read_config_file(a.config_file);
  for (const auto& o : a.overrides) overrides.merge_patch(clprompt::parse_override(o));
  return clprompt::resolve_config(method, overrides);
}

std::string forgetting_text(const clprompt::Results& r) {
  const double f = clprompt::average_forgetting(r.accuracy);
  return std::isnan(f) ? std::string("n/a") : fmt::format("{:.2f}", f);
}

int pretrain(const Arguments& a) {
  auto overrides = read_config_file(a.config_file);
  for (const auto& o : a.overrides) overrides.merge_patch(clprompt::parse_override(o));
  const auto config = clprompt::resolve_pretrain_config(overrides);
  if (a.print_config) {
    fmt::print("{}\n", clprompt::write_options(config).dump(2));
    return 0;
  }
  const auto out = a.out.empty() ? std::string("build/pretrain") : a.out;
  clprompt::PretrainHooks hooks;
  if (a.quiet) hooks.log = nullptr;
  const auto result = clprompt::pretrain(config, out, a.resume, hooks);
  fmt::print("pretrain: {} steps, held-out font accuracy {:.2f}%, {:.0f} s{}\n", result.steps_done,
             result.validation_accuracy, result.seconds,
             result.finished ? ", weights " + result.weights_path : " (not finished: --resume continues)");
  return 0;
}

int run(const Arguments& a) {
  auto methods = a.methods;
  if (methods.empty()) methods.push_back("");  // the configuration's method, else finetune
  const std::string out = a.out.empty() ? "results" : a.out;
  clprompt::AccuracyPlot comparison;
  comparison.title = "accuracy over seen tasks after each task";
  std::vector<std::string> summary_rows;
  for (const auto& method : methods) {
    const auto config = resolve(a, method);
    // "+align" and fallback runs get their own directory so they never overwrite the method's results.
    const auto name = clprompt::run_name(config);
    const auto directory = (std::filesystem::path(out) / name).string();
    clprompt::ExperimentOutput output{directory, {}};
    if (a.quiet) output.hooks.log = nullptr;
    fmt::print("== {} on {} ({}) ==\n", config.method, config.data.dataset, config.data.root);
    const auto results = clprompt::run_experiment(config, output);
    fmt::print("{}", clprompt::format_summary(results));
    fmt::print("wrote {}/results.json, accuracy.svg{} ({:.1f} s, {} threads)\n\n", directory,
               config.save_checkpoint ? ", model.safetensors" : "", results.total_seconds, results.threads);
    comparison.curves.push_back({name, clprompt::average_accuracy_per_task(results.accuracy)});
    summary_rows.push_back(fmt::format("{:<20} {:>9.2f} {:>11.2f} {:>11} {:>9.1f}", name,
                                       clprompt::final_average_accuracy(results.accuracy),
                                       clprompt::average_incremental_accuracy(
                                           clprompt::average_accuracy_per_task(results.accuracy)),
                                       forgetting_text(results), results.total_seconds));
    if (comparison.matrix.empty()) {
      comparison.matrix = results.accuracy;
      comparison.title = fmt::format("accuracy over seen tasks after each task (heat map: {})", name);
    }
  }
  if (methods.size() > 1) {
    fmt::print("{:<20} {:>9} {:>11} {:>11} {:>9}\n", "method", "final acc", "avg inc acc", "forgetting", "time (s)");
    for (const auto& row : summary_rows) fmt::print("{}\n", row);
    const auto path = (std::filesystem::path(out) / "comparison.svg").string();
    clprompt::write_accuracy_svg(path, comparison);
    fmt::print("wrote {}\n", path);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Arguments args;
  try {
    args = parse(argc, argv);
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "clprompt: {}\n{}", e.what(), kUsage);
    return 2;
  }
  try {
    if (args.command == "run") return run(args);
    if (args.command == "pretrain") return pretrain(args);
    if (args.command == "config") {
      fmt::print("{}\n", clprompt::write_options(resolve(args, args.methods.empty() ? "" : args.methods.front())).dump(2));
      return 0;
    }
    if (args.command == "methods") {
      for (const auto& m : clprompt::available_methods()) fmt::print("{:<14} {}\n", m.name, m.description);
      return 0;
    }
    if (args.command == "help") {
      fmt::print("{}", kUsage);
      return 0;
    }
    fmt::print(stderr, "clprompt: unknown command '{}'\n{}", args.command, kUsage);
    return 2;
  } catch (const clprompt::Error& e) {
    fmt::print(stderr, "clprompt: error: {}\n", e.what());
    return 1;
  }
}
