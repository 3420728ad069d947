// clprompt: the command-line front end of the library.
//
//   clprompt run --method finetune,linear-probe           the embedded default (Split Fashion-MNIST)
//   clprompt run --method finetune --config my.json --set train.epochs=3 --out results/ft
//   clprompt config --method finetune                      print the resolved configuration
//   clprompt methods                                       list the methods
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

namespace {

constexpr const char* kUsage = R"(usage:
  clprompt run [--method NAME[,NAME...]] [--config FILE.json] [--set FIELD=VALUE]... [--align] [--out DIR] [--quiet]
  clprompt config [--method NAME] [--config FILE.json] [--set FIELD=VALUE]...
  clprompt methods

run      trains and evaluates each method on the scenario of the configuration (default: the embedded
         Split Fashion-MNIST, 5 tasks x 2 classes), prints the accuracy matrix and writes
         DIR/<method>/results.json, accuracy.svg, model.safetensors and DIR/comparison.svg
         (DIR defaults to results/).
config   prints the resolved configuration (defaults of the method + FILE + --set), the schema of --config.
methods  lists the available methods.

--align adds SLCA's classifier alignment to the method (= --set align=true; options under
method_options.head.alignment and .logit_norm), e.g. clprompt run --method coda-prompt --align.
--set takes a dotted field path and a JSON value, e.g. --set train.lr=0.01 --set scenario.num_tasks=10.
The thread count is config field 'threads' (0: $OMP_NUM_THREADS, else all cores).
)";

struct Arguments {
  std::string command;
  std::vector<std::string> methods;
  std::string config_file;
  std::vector<std::string> overrides;
  std::string out = "results";
  bool quiet = false;
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
    } else if (arg == "--align") {
      a.overrides.push_back("align=true");
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

int run(const Arguments& a) {
  auto methods = a.methods;
  if (methods.empty()) methods.push_back("");  // the configuration's method, else finetune
  clprompt::AccuracyPlot comparison;
  comparison.title = "accuracy over seen tasks after each task";
  for (const auto& method : methods) {
    const auto config = resolve(a, method);
    // "+align" runs get their own directory so they never overwrite the plain method's results.
    const auto name = config.align ? config.method + "+align" : config.method;
    const auto directory = (std::filesystem::path(a.out) / name).string();
    clprompt::ExperimentOutput output{directory, {}};
    if (a.quiet) output.hooks.log = nullptr;
    fmt::print("== {} on {} ({}) ==\n", config.method, config.data.dataset, config.data.root);
    const auto results = clprompt::run_experiment(config, output);
    fmt::print("{}", clprompt::format_summary(results));
    fmt::print("wrote {}/results.json, accuracy.svg{} ({:.1f} s, {} threads)\n\n", directory,
               config.save_checkpoint ? ", model.safetensors" : "", results.total_seconds, results.threads);
    comparison.curves.push_back({name, clprompt::average_accuracy_per_task(results.accuracy)});
    if (comparison.matrix.empty()) {
      comparison.matrix = results.accuracy;
      comparison.title = fmt::format("accuracy over seen tasks after each task (heat map: {})", name);
    }
  }
  if (methods.size() > 1) {
    const auto path = (std::filesystem::path(a.out) / "comparison.svg").string();
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
