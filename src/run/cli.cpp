// Compiled part of include/clprompt/run/cli.hpp: the clprompt command line over a MethodRegistry.
#include "clprompt/run/cli.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "clprompt/io/svg_plot.hpp"
#include "clprompt/learn/metrics.hpp"
#include "clprompt/run/experiment.hpp"

namespace clprompt {
namespace {

constexpr const char* kUsage = R"(usage:
  {0} run [--method NAME[,NAME...]] [--config FILE.json] [--set FIELD=VALUE]... [--head KIND | --align]
          [--clip DIR] [--out DIR] [--quiet]
  {0} config [--method NAME] [--config FILE.json] [--set FIELD=VALUE]... [--head KIND | --align] [--clip DIR]
  {0} methods [--json]
{1}
run      trains and evaluates each method on the scenario of the configuration (default: the embedded
         Split Fashion-MNIST, 5 tasks x 2 classes), prints the accuracy matrix and writes
         DIR/<run>/results.json, accuracy.svg, model.safetensors and DIR/comparison.svg
         (DIR defaults to results/; <run> is the method, plus "+align" etc. for another head).
config   prints the resolved configuration (defaults of the method + FILE + --set), the schema of --config.
methods  lists the methods and head kinds; --json for scripts (names, labels, the results table's runs).
{2}
--head KIND puts another head on the method (`{0} methods` lists them): slca adds SLCA's classifier
alignment (options under head_options.alignment and .logit_norm); --align is --head slca.
--clip DIR gives star-prompt its CLIP (= --set method_options.clip=DIR): a directory with the weights
(model.safetensors from Hugging Face's openai/clip-vit-base-patch16, or an open_clip/OpenAI-named
*.safetensors) and the tokenizer (vocab.json + merges.txt, or bpe_simple_vocab_16e6.txt.gz). Without it
star-prompt runs with class-mean prototypes of the backbone and reports as star-prompt-fallback.
--set takes a dotted field path and a JSON value, e.g. --set train.lr=0.01 --set scenario.num_tasks=10.
The thread count is config field 'threads' (0: $OMP_NUM_THREADS, else all cores).
)";

/// A usage error: printed with the usage text, exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct RunArguments {
  std::vector<std::string> methods;
  std::string config_file;
  std::vector<std::string> overrides;
  std::string out = "results";
  bool quiet = false;
  bool json = false;
};

/// The flags of run, config and methods; each command accepts only its own.
RunArguments parse_arguments(const std::string& command, const std::vector<std::string>& args) {
  RunArguments a;
  const bool run = command == "run", config = command == "config", methods = command == "methods";
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) throw UsageError(arg + " needs a value");
      return args[++i];
    };
    auto only = [&](bool allowed) {
      if (!allowed) throw UsageError(fmt::format("'{}' is not an option of '{}'", arg, command));
    };
    if (arg == "--method") {
      only(run || config);
      std::stringstream list(value());
      for (std::string m; std::getline(list, m, ',');)
        if (!m.empty()) a.methods.push_back(m);
      if (config && a.methods.size() > 1) throw UsageError("config takes one --method");
    } else if (arg == "--config") {
      only(run || config);
      a.config_file = value();
    } else if (arg == "--set") {
      only(run || config);
      a.overrides.push_back(value());
    } else if (arg == "--head") {
      only(run || config);
      a.overrides.push_back("head=" + Json(value()).dump());
    } else if (arg == "--align") {
      only(run || config);
      a.overrides.push_back("head=\"slca\"");
    } else if (arg == "--clip") {
      only(run || config);
      a.overrides.push_back("method_options.clip=" + Json(value()).dump());
    } else if (arg == "--out") {
      only(run);
      a.out = value();
    } else if (arg == "--quiet") {
      only(run);
      a.quiet = true;
    } else if (arg == "--json") {
      only(methods);
      a.json = true;
    } else {
      throw UsageError(fmt::format("unknown argument '{}' for '{}'", arg, command));
    }
  }
  return a;
}

RunConfig resolve(const MethodRegistry& registry, const RunArguments& a, const std::string& method) {
  auto overrides = read_config_file(a.config_file);
  for (const auto& o : a.overrides) overrides.merge_patch(parse_override(o));
  return resolve_config(registry, method, overrides);
}

std::string forgetting_text(const Results& r) {
  const double f = average_forgetting(r.accuracy);
  return std::isnan(f) ? std::string("n/a") : fmt::format("{:.2f}", f);
}

int run_command(const MethodRegistry& registry, const RunArguments& a) {
  auto methods = a.methods;
  if (methods.empty()) methods.push_back("");  // the configuration's method, else finetune
  // Every configuration is resolved and checked before the first method runs.
  std::vector<RunConfig> configs;
  for (const auto& method : methods) configs.push_back(resolve(registry, a, method));
  AccuracyPlot comparison;
  comparison.title = "accuracy over seen tasks after each task";
  std::vector<std::string> summary_rows;
  for (const auto& config : configs) {
    // Other heads and the fallback get their own directory so they never overwrite the method's results.
    const auto name = run_name(registry, config);
    const auto directory = (std::filesystem::path(a.out) / name).string();
    ExperimentOutput output{directory, {}};
    if (a.quiet) output.hooks.log = nullptr;
    fmt::print("== {} on {} ({}) ==\n", name, config.data.dataset, config.data.root);
    std::fflush(stdout);
    const auto results = run_experiment(registry, config, output);
    fmt::print("{}", format_summary(results));
    fmt::print("wrote {}/results.json, accuracy.svg{} ({:.1f} s, {} threads)\n\n", directory,
               config.save_checkpoint ? ", model.safetensors" : "", results.total_seconds, results.threads);
    comparison.curves.push_back({name, average_accuracy_per_task(results.accuracy)});
    summary_rows.push_back(fmt::format("{:<20} {:>9.2f} {:>11.2f} {:>11} {:>9.1f}", name,
                                       final_average_accuracy(results.accuracy),
                                       average_incremental_accuracy(average_accuracy_per_task(results.accuracy)),
                                       forgetting_text(results), results.total_seconds));
    if (comparison.matrix.empty()) {
      comparison.matrix = results.accuracy;
      comparison.title = fmt::format("accuracy over seen tasks after each task (heat map: {})", name);
    }
  }
  if (configs.size() > 1) {
    fmt::print("{:<20} {:>9} {:>11} {:>11} {:>9}\n", "method", "final acc", "avg inc acc", "forgetting", "time (s)");
    for (const auto& row : summary_rows) fmt::print("{}\n", row);
    const auto path = (std::filesystem::path(a.out) / "comparison.svg").string();
    write_accuracy_svg(path, comparison);
    fmt::print("wrote {}\n", path);
  }
  return 0;
}

int methods_command(const MethodRegistry& registry, const RunArguments& a) {
  if (a.json) {
    Json out = Json::object();
    Json methods = Json::array();
    for (const auto& e : registry.entries()) {
      Json runs = Json::array();
      for (const auto& r : e.reported_runs) runs.push_back({{"run", r.run}, {"label", r.label}, {"args", r.args}});
      methods.push_back({{"name", e.name},
                         {"label", e.label},
                         {"description", e.description},
                         {"default_head", e.default_head},
                         {"reported_runs", runs}});
    }
    out["methods"] = methods;
    out["heads"] = MethodRegistry::head_names();
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  for (const auto& e : registry.entries()) fmt::print("{:<14} {}\n", e.name, e.description);
  fmt::print("\nheads (--head): ");
  bool first = true;
  for_each_head_kind([&]<class Kind>() {
    fmt::print("{}{} ({})", first ? "" : ", ", Kind::name, Kind::description);
    first = false;
  });
  fmt::print("\n");
  return 0;
}

std::string usage_text(const char* program, const CliCommands& extra) {
  std::string extra_usage, extra_help;
  for (const auto& [name, command] : extra) {
    extra_usage += fmt::format("  {} {} {}\n", program, name, command.usage.substr(0, command.usage.find('\n')));
    const auto nl = command.usage.find('\n');
    if (nl != std::string::npos) extra_help += command.usage.substr(nl + 1);
  }
  return fmt::format(fmt::runtime(kUsage), program, extra_usage, extra_help);
}

}  // namespace

Json read_config_file(const std::string& path) {
  if (path.empty()) return Json::object();
  std::ifstream in(path);
  if (!in) throw FileError(path, "cannot open the configuration file");
  try {
    return Json::parse(in);
  } catch (const Json::parse_error& e) {
    throw FileError(path, fmt::format("not valid JSON: {}", e.what()));
  }
}

int run_cli(int argc, char** argv, const MethodRegistry& registry, const CliCommands& extra) {
  const char* program = argc > 0 ? argv[0] : "clprompt";
  if (const char* slash = std::strrchr(program, '/')) program = slash + 1;
  const auto usage = usage_text(program, extra);
  if (argc < 2) {
    fmt::print(stderr, "{}: missing command\n{}", program, usage);
    return 2;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  const bool wants_help = std::find(args.begin(), args.end(), "--help") != args.end() ||
                          std::find(args.begin(), args.end(), "-h") != args.end();
  if (command == "help" || command == "--help" || command == "-h" || wants_help) {
    fmt::print("{}", usage);
    return 0;
  }
  try {
    if (auto it = extra.find(command); it != extra.end()) return it->second.run(args);
    if (command != "run" && command != "config" && command != "methods")
      throw UsageError(fmt::format("unknown command '{}'", command));
    const auto a = parse_arguments(command, args);
    if (command == "run") return run_command(registry, a);
    if (command == "methods") return methods_command(registry, a);
    fmt::print("{}\n", write_options(resolve(registry, a, a.methods.empty() ? "" : a.methods.front())).dump(2));
    return 0;
  } catch (const UsageError& e) {
    fmt::print(stderr, "{}: {}\n{}", program, e.what(), usage);
    return 2;
  } catch (const Error& e) {
    fmt::print(stderr, "{}: error: {}\n", program, e.what());
    return 1;
  }
}

}  // namespace clprompt
