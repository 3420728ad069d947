// Compiled part of include/clprompt/run/cli.hpp: the clprompt command line over a MethodRegistry.
#include "clprompt/run/cli.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <c10/util/Exception.h>
#include <fmt/format.h>

#include "clprompt/core/interrupt.hpp"
#include "clprompt/core/json_parse.hpp"
#include "clprompt/core/device.hpp"
#include "clprompt/distributed/launcher.hpp"
#include "clprompt/distributed/process_group.hpp"
#include "clprompt/io/svg_plot.hpp"
#include "clprompt/learn/metrics.hpp"
#include "clprompt/run/benchmarks.hpp"
#include "clprompt/run/experiment.hpp"

namespace clprompt {
namespace {

constexpr const char* kUsage = R"(usage:
  {0} run [--method NAME[,NAME...]] [--benchmark NAME --data DIR --pretrained FILE] [--config FILE.json]
          [--set FIELD=VALUE]... [--head KIND | --align] [--clip DIR] [--out DIR] [--quiet]
          [--resume | --overwrite] [--checkpoint-every STEPS] [--nproc N] [--check-replicas]
  {0} config [--method NAME] [--benchmark NAME] [--config FILE.json] [--set FIELD=VALUE]... [--head KIND | --align]
  {0} methods [--json]
{1}
run      trains and evaluates each method on the scenario of the configuration (default: the embedded
         Split Fashion-MNIST, 5 tasks x 2 classes), prints the accuracy matrix and writes
         DIR/<run>/results.json, accuracy.svg, model.safetensors and DIR/comparison.svg
         (DIR defaults to results/; <run> is the method, plus "+align" etc. for another head).
config   prints the resolved configuration (defaults of the method + FILE + --set), the schema of --config.
methods  lists the methods, head kinds and benchmarks; --json for scripts (names, labels, the results
         table's runs, the benchmarks each method has a published recipe for).
--benchmark NAME runs the method's published protocol (its reference's data split, class order and
trials, transforms and training recipe; `{0} config --benchmark NAME --method M` prints every value):
split-cifar100, split-imagenet-r (-5, -20), split-cub200, split-cars196. --data DIR (= --set data.root=DIR)
gives the data set, --pretrained FILE (= --set pretrained=FILE) the timm ViT safetensors the reference
loads; its geometry is read from the file. A protocol with several trials runs them all
(DIR/<run>/trial<k>/) and reports mean and standard deviation.
{2}
--head KIND puts another head on the method (`{0} methods` lists them): slca adds SLCA's classifier
alignment (options under head_options.alignment and .logit_norm); --align is --head slca.
--clip DIR gives star-prompt its CLIP (= --set method_options.clip=DIR): a directory with the weights
(model.safetensors from Hugging Face's openai/clip-vit-base-patch16, or an open_clip/OpenAI-named
*.safetensors) and the tokenizer (vocab.json + merges.txt, or bpe_simple_vocab_16e6.txt.gz). Without it
star-prompt runs with class-mean prototypes of the backbone and reports as star-prompt-fallback.
A run directory that holds a run is never overwritten silently: --resume continues a stopped run from
its checkpoint DIR/<run>/resume.safetensors (written when each task's training starts, at every epoch end,
every --checkpoint-every training steps and on SIGINT/SIGTERM, which then exit with 130/143) to the results
an uninterrupted run gives (same configuration; threads and device may change, the numbers then may too),
and reports a complete run; --overwrite starts it again.
--nproc N trains data-parallel in N local processes (c10d: Gloo on CPUs, NCCL on GPUs), started and
watched by this one: each trains on its share of every batch, gradients are summed, and the results are
those of one process up to the order of floating-point sums; one failing stops all. A run started by
torchrun or by hand (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT set) is one rank of such a
run, also across machines. --check-replicas compares every rank's trainable parameters after each step.
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
  ExistingRun existing = ExistingRun::refuse;
  int64_t checkpoint_every = 0;
  int nproc = 0;  ///< > 0: launch that many local data-parallel workers
  bool check_replicas = false;
};

/// `text` as a whole decimal integer in [min, max]; nullopt otherwise (empty, trailing characters, out of range).
std::optional<long long> integer_in(const std::string& text, long long min, long long max) {
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE || n < min || n > max) return std::nullopt;
  return n;
}

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
    } else if (arg == "--benchmark") {
      only(run || config);
      a.overrides.push_back("benchmark=" + Json(value()).dump());
    } else if (arg == "--data") {
      only(run || config);
      a.overrides.push_back("data.root=" + Json(value()).dump());
    } else if (arg == "--pretrained") {
      only(run || config);
      a.overrides.push_back("pretrained=" + Json(value()).dump());
    } else if (arg == "--out") {
      only(run);
      a.out = value();
    } else if (arg == "--resume" || arg == "--overwrite") {
      only(run);
      const auto wanted = arg == "--resume" ? ExistingRun::resume : ExistingRun::overwrite;
      if (a.existing != ExistingRun::refuse && a.existing != wanted) throw UsageError("--resume and --overwrite exclude each other");
      a.existing = wanted;
    } else if (arg == "--checkpoint-every") {
      only(run);
      const auto text = value();
      const auto n = integer_in(text, 0, std::numeric_limits<long long>::max());
      if (!n) throw UsageError(fmt::format("--checkpoint-every takes a number of training steps >= 0, got '{}'", brief(text)));
      a.checkpoint_every = *n;
    } else if (arg == "--nproc") {
      only(run);
      const auto text = value();
      const auto n = integer_in(text, 1, 1024);
      if (!n) throw UsageError(fmt::format("--nproc takes a number of processes from 1 to 1024, got '{}'", brief(text)));
      a.nproc = static_cast<int>(*n);
    } else if (arg == "--check-replicas") {
      only(run);
      a.check_replicas = true;
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

struct Summary {
  std::string name;
  std::vector<double> final, incremental, forgetting, seconds;
};

double mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? std::nan("") : sum / static_cast<double>(v.size());
}
double stdev(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean(v);
  double sum = 0;
  for (double x : v) sum += (x - m) * (x - m);
  return std::sqrt(sum / static_cast<double>(v.size() - 1));
}
std::string cell(const std::vector<double>& v) {
  if (v.empty() || std::isnan(mean(v))) return "n/a";
  return v.size() > 1 ? fmt::format("{:.2f}±{:.2f}", mean(v), stdev(v)) : fmt::format("{:.2f}", mean(v));
}

int run_command(const MethodRegistry& registry, const RunArguments& a) {
  auto methods = a.methods;
  if (methods.empty()) methods.push_back("");  // the configuration's method, else finetune
  // Every configuration is resolved and checked before the first method runs.
  std::vector<RunConfig> configs;
  for (const auto& method : methods) configs.push_back(resolve(registry, a, method));
  auto directory_of = [&](const RunConfig& config, std::size_t trial, std::size_t trials) {
    auto directory = std::filesystem::path(a.out) / run_name(registry, config);
    if (trials > 1) directory /= fmt::format("trial{}", trial);
    return directory;
  };
  // A run directory that holds a run is refused before any method starts (not after the first ran).
  for (const auto& config : configs) {
    const auto trials = trial_configs(config);
    for (std::size_t k = 0; k < trials.size(); ++k)
      check_run_directory(directory_of(config, k, trials.size()).string(), a.existing);
  }
  // One rank of a data-parallel run (torchrun's environment, or --nproc's workers): rank 0 prints
  // and writes; the others compute the same and stay quiet.
  DataParallel data_parallel;
  int local_rank = 0;
  if (const auto distributed = DistributedOptions::from_environment()) {
    local_rank = distributed->local_rank;
    auto device = resolve_device(configs.front().device);
    if (device.is_cuda() && !device.has_index()) device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
    data_parallel.collective = connect(*distributed, device);
    data_parallel.check_replicas = a.check_replicas;
  }
  const bool leader = data_parallel.collective == nullptr || data_parallel.collective->rank() == 0;
  // SIGINT / SIGTERM: a checkpoint at the next step, then exit 130 / 143 (run_cli).
  InterruptHandler interrupts;
  AccuracyPlot comparison;
  comparison.title = "accuracy over seen tasks after each task";
  std::vector<Summary> summaries;
  for (const auto& config : configs) {
    // Other heads and the fallback get their own directory so they never overwrite the method's results.
    const auto name = run_name(registry, config);
    const auto trials = trial_configs(config);
    Summary summary{name, {}, {}, {}, {}};
    for (std::size_t k = 0; k < trials.size(); ++k) {
      const auto& trial = trials[k];
      const auto directory = directory_of(config, k, trials.size());
      ExperimentOutput output{directory.string(), {}, a.existing, a.checkpoint_every, data_parallel, local_rank};
      if (a.quiet || !leader) output.hooks.log = nullptr;
      if (!leader) output.hooks.progress_bar = false;
      if (leader) {
        fmt::print("== {} on {}{}{}{} ==\n", name, config.benchmark.empty() ? config.data.dataset : config.benchmark,
                   config.data.root.empty() ? "" : fmt::format(" ({})", config.data.root),
                   trials.size() > 1 ? fmt::format(", trial {} of {} (seed {})", k + 1, trials.size(), trial.seed) : "",
                   data_parallel.collective ? fmt::format(", {} processes", data_parallel.collective->world_size()) : "");
        std::fflush(stdout);
      }
      const auto results = run_experiment(registry, trial, output);
      if (!leader) continue;
      fmt::print("{}", format_summary(results));
      fmt::print("wrote {}/results.json, accuracy.svg{} ({:.1f} s, {} threads{})\n\n", directory.string(),
                 trial.save_checkpoint ? ", model.safetensors" : "", results.total_seconds, results.threads,
                 results.world_size > 1 ? fmt::format(" x {} processes", results.world_size) : "");
      const auto per_task = average_accuracy_per_task(results.accuracy);
      summary.final.push_back(final_average_accuracy(results.accuracy));
      summary.incremental.push_back(average_incremental_accuracy(per_task));
      if (const double f = average_forgetting(results.accuracy); !std::isnan(f)) summary.forgetting.push_back(f);
      summary.seconds.push_back(results.total_seconds);
      if (k == 0) {
        comparison.curves.push_back({name, per_task});
        if (comparison.matrix.empty()) {
          comparison.matrix = results.accuracy;
          comparison.title = fmt::format("accuracy over seen tasks after each task (heat map: {})", name);
        }
      }
    }
    if (trials.size() > 1 && leader) {
      fmt::print("{} over {} trials: final average accuracy {} | average incremental accuracy {} | forgetting {}{}\n\n",
                 name, trials.size(), cell(summary.final), cell(summary.incremental), cell(summary.forgetting),
                 config.reference.value("reported", std::string()).empty()
                     ? ""
                     : " (reference: " + config.reference.value("reported", std::string()) + ")");
    }
    summaries.push_back(std::move(summary));
  }
  if (configs.size() > 1 && leader) {
    fmt::print("{:<20} {:>12} {:>12} {:>12} {:>9}\n", "method", "final acc", "avg inc acc", "forgetting", "time (s)");
    for (const auto& s : summaries)
      fmt::print("{:<20} {:>12} {:>12} {:>12} {:>9.1f}\n", s.name, cell(s.final), cell(s.incremental), cell(s.forgetting),
                 mean(s.seconds));
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
      Json presets = Json::array();
      for (const auto& b : benchmarks())
        if (e.preset(b.name, ResolvedPreset{b.data, b.scenario})) presets.push_back(b.name);
      methods.push_back({{"name", e.name},
                         {"label", e.label},
                         {"description", e.description},
                         {"default_head", e.default_head},
                         {"benchmarks", presets},
                         {"reported_runs", runs}});
    }
    out["methods"] = methods;
    out["heads"] = MethodRegistry::head_names();
    Json names = Json::array();
    for (const auto& b : benchmarks()) names.push_back(b.name);
    out["benchmarks"] = names;
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
  fmt::print("\nbenchmarks (--benchmark; `config --benchmark NAME --method M` prints the recipe):\n");
  for (const auto& b : benchmarks()) {
    std::vector<std::string> with;
    for (const auto& e : registry.entries())
      if (e.preset(b.name, ResolvedPreset{b.data, b.scenario})) with.push_back(e.name);
    fmt::print("  {:<20} {}; recipes: {}\n", b.name, b.description, with.empty() ? "none" : fmt::format("{}", fmt::join(with, ", ")));
  }
  return 0;
}

/// `run --nproc N`: this program again as N workers (the same arguments but --nproc), watched.
int launch(const std::string& program, const std::vector<std::string>& args, int nproc) {
  std::vector<std::string> worker_args{"run"};
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--nproc") {
      ++i;
      continue;
    }
    worker_args.push_back(args[i]);
  }
  const auto result = launch_local_workers(current_executable(), worker_args, {.nproc = nproc});
  if (result.exit_code != 0) fmt::print(stderr, "{}: data parallel: {}\n", program, result.message);
  return result.exit_code;
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
  // A directory, a FIFO (which would block) or a device is refused before it is opened.
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory)
    throw FileError(path, "cannot open the configuration file: " + ec.message());
  if (!std::filesystem::exists(status)) throw FileError(path, "cannot open the configuration file: no such file");
  if (!std::filesystem::is_regular_file(status))
    throw FileError(path, "the configuration must be a regular JSON file (this is a directory, FIFO or device)");
  const JsonLimits limits;
  const auto size = std::filesystem::file_size(path, ec);
  if (!ec && size > limits.max_bytes)
    throw FileError(path, fmt::format("{} bytes: larger than any configuration ({} bytes at most)", size, limits.max_bytes));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError(path, "cannot open the configuration file");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  try {
    return parse_json<Json>(text, limits);
  } catch (const JsonError& e) {
    throw FileError(path, e.what());
  }
}

int run_cli(int argc, char** argv, const MethodRegistry& registry, const CliCommands& extra) {
  const char* program_path = argc > 0 ? argv[0] : "clprompt";
  if (const char* slash = std::strrchr(program_path, '/')) program_path = slash + 1;
  const auto usage = usage_text(program_path, extra);
  // A data-parallel worker names its rank in every message.
  const char* rank = std::getenv("RANK");
  const std::string program_name = std::getenv("WORLD_SIZE") != nullptr && rank != nullptr
                                        ? fmt::format("{} [rank {}]", program_path, rank)
                                        : std::string(program_path);
  const char* program = program_name.c_str();
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
    if (command == "run" && a.nproc > 0 && std::getenv("WORLD_SIZE") == nullptr) return launch(program, args, a.nproc);
    if (command == "run") return run_command(registry, a);
    if (command == "methods") return methods_command(registry, a);
    fmt::print("{}\n", write_options(resolve(registry, a, a.methods.empty() ? "" : a.methods.front())).dump(2));
    return 0;
  } catch (const UsageError& e) {
    fmt::print(stderr, "{}: {}\n{}", program, e.what(), usage);
    return 2;
  } catch (const Interrupted& e) {
    fmt::print(stderr, "{}: {}; `{} run --resume` with the same arguments continues it\n", program, e.what(), program);
    return e.exit_code();
  } catch (const Error& e) {
    fmt::print(stderr, "{}: error: {}\n", program, brief(e.what(), 2000));
    return 1;
  } catch (const c10::Error& e) {
    // LibTorch's own checks (an allocation that cannot be served, a kernel's argument check): its
    // message without the C++ stack trace.
    fmt::print(stderr, "{}: error: LibTorch: {}\n", program, brief(e.what_without_backtrace(), 2000));
    return 1;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "{}: error: out of memory (a configured size needs more memory than this machine has)\n",
               program);
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: error: {}\n", program, brief(e.what(), 2000));
    return 1;
  } catch (...) {
    fmt::print(stderr, "{}: error: an unknown exception\n", program);
    return 1;
  }
}

}  // namespace clprompt
