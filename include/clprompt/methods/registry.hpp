#pragma once
// MethodRegistry: the methods a program knows by name. The CLI (`clprompt run/config/methods`),
// the runner and the results scripts (through `clprompt methods --json`) read it and nothing
// else, so a method is one registration:
//
//   clprompt::MethodRegistry registry = clprompt::builtin_methods();
//   registry.add<MyMethod>();                          // a Method (methods/method.hpp)
//   return clprompt::run_cli(argc, argv, registry);    // run/cli.hpp: the whole CLI for it
//
// add<M>() instantiates M with every head kind (methods/head_kinds.hpp) and erases the types
// behind a MethodEntry: parse and check its options, name its runs, build its model and train it.
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "clprompt/core/error.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/data/scenario.hpp"
#include "clprompt/io/safetensors.hpp"
#include "clprompt/learn/learner.hpp"
#include "clprompt/learn/results.hpp"
#include "clprompt/methods/head_kinds.hpp"
#include "clprompt/methods/method.hpp"

namespace clprompt {

/// Everything one run of a method needs, resolved (MethodEntry::run).
struct MethodRun {
  Json options = Json::object();       ///< method_options (typed by the method's Options)
  std::string head;                    ///< a head kind name
  Json head_options = Json::object();  ///< typed by the head kind's Options
  MethodContext context;
  const Scenario* scenario = nullptr;
  TransformOptions transform;
  uint64_t seed = 0;
  c10::Device device = c10::kCPU;
  LearnerHooks hooks;
  std::string checkpoint_path;  ///< where the trained model is saved ("" = not saved)
  Metadata checkpoint_metadata;
  const ResumeState* resume = nullptr;  ///< continue this stopped run instead of starting (hooks.checkpoint: where)
  DataParallel data_parallel;           ///< one rank of a data-parallel run (rank 0 saves the model)
};

/// A preset with the method's types erased (MethodEntry::preset).
struct ResolvedPreset {
  DataOptions data;
  ScenarioOptions scenario;
  TransformOptions transform;
  TrainOptions train;
  Json options = Json::object();
  Json head_options = Json::object();  ///< the default head's options with the preset's changes
  std::vector<Trial> trials;
  std::string weights, reported;
  std::vector<std::string> sources;
};

/// The default input pipeline of a method without transform(): torchvision's RandomResizedCrop
/// and flip for training, Resize(256) + CenterCrop(224) for evaluation, ImageNet statistics.
inline TransformOptions default_reference_transform() { return TransformOptions::scaled_reference(224); }

/// A registered method with its types erased.
struct MethodEntry {
  std::string name, label, description, default_head;
  TrainOptions recipe;
  TransformOptions transform;  ///< the reference's input pipeline at 224 px
  bool lr_scales_with_batch = false;
  std::vector<ReportedRun> reported_runs;
  /// method_options with every default for a setting (typed Options written out, adapt() applied).
  std::function<Json(const MethodSetting&)> default_options;
  /// The defaults of a head kind's options for this method; `embedded`: on the embedded default
  /// (the kind's embedded() hook applied, e.g. RanPAC's projection sized for its 128-d ViT).
  std::function<Json(const std::string& head, bool embedded)> default_head_options;
  /// Parses and checks method_options and head_options (ConfigError naming
  /// `options_path`.field / `head_path`.field), including the checks that need the setting
  /// (backbone sizes, number of tasks): everything that can be checked before any work starts.
  std::function<void(const Json& options, const std::string& options_path, const std::string& head,
                     const Json& head_options, const std::string& head_path, const MethodSetting& setting)>
      check;
  /// The name results are reported under: the method's (or its run_name(options)), plus the head
  /// kind's suffix when the head is not the method's default ("coda-prompt+align").
  std::function<std::string(const Json& options, const std::string& head)> run_name;
  /// The published protocol on `benchmark`, starting from `base` (the benchmark's data and
  /// scenario); nullopt when the method has no recipe for it.
  std::function<std::optional<ResolvedPreset>(const std::string& benchmark, const ResolvedPreset& base)> preset;
  /// Builds the model and trains and evaluates it task by task.
  std::function<Results(MethodRun& run)> run;
};

namespace detail {

template <class M, class Kind>
typename Kind::Options head_defaults() {
  typename Kind::Options options{};
  if constexpr (requires { M::configure_head(options); }) M::configure_head(options);
  return options;
}

/// Moves the model where the run says, trains and evaluates it task by task, saves it.
template <class Model>
Results train_and_evaluate(Model& model, MethodRun& run) {
  model.to(run.device);
  Learner<Model> learner(model, *run.scenario, run.context.train, run.transform, run.seed);
  if (run.data_parallel.collective) learner.distribute(run.data_parallel);
  auto results = run.resume ? learner.resume(*run.resume, run.hooks) : learner.run(run.hooks);
  if (!run.checkpoint_path.empty() && learner.rank() == 0) model.save(run.checkpoint_path, run.checkpoint_metadata);
  return results;
}

}  // namespace detail

class MethodRegistry {
 public:
  /// Registers M (replacing a method of the same name).
  template <class M>
  void add();

  /// The entry named `name`; ConfigError(field) listing the known names otherwise.
  const MethodEntry& at(const std::string& name, const std::string& field = "method") const {
    auto it = std::find_if(entries_.begin(), entries_.end(), [&](const MethodEntry& e) { return e.name == name; });
    if (it == entries_.end())
      throw ConfigError(field, fmt::format("unknown method '{}'; available: {}", name, fmt::join(names(), ", ")));
    return *it;
  }
  bool contains(const std::string& name) const {
    return std::any_of(entries_.begin(), entries_.end(), [&](const MethodEntry& e) { return e.name == name; });
  }
  /// In registration order.
  const std::vector<MethodEntry>& entries() const { return entries_; }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : entries_) out.push_back(e.name);
    return out;
  }

  /// Every head kind's name (HeadKinds), for `--head`.
  static std::vector<std::string> head_names() {
    std::vector<std::string> out;
    for_each_head_kind([&]<class Kind>() { out.emplace_back(Kind::name); });
    return out;
  }
  /// ConfigError(field) unless `head` names a head kind.
  static void check_head(const std::string& head, const std::string& field = "head") {
    const auto known = head_names();
    if (std::find(known.begin(), known.end(), head) == known.end())
      throw ConfigError(field, fmt::format("unknown head '{}'; available: {}", head, fmt::join(known, ", ")));
  }

 private:
  void put(MethodEntry entry) {
    for (auto& e : entries_)
      if (e.name == entry.name) {
        e = std::move(entry);
        return;
      }
    entries_.push_back(std::move(entry));
  }
  std::vector<MethodEntry> entries_;
};

template <class M>
void MethodRegistry::add() {
  static_assert(check_method<M>());
  using Options = typename M::Options;
  MethodEntry e;
  e.name = std::string(M::name);
  e.label = std::string(M::label);
  e.description = std::string(M::description);
  e.default_head = std::string(M::default_head);
  e.recipe = M::recipe();
  if constexpr (detail::MethodHasTransform<M>) e.transform = M::transform();
  else e.transform = default_reference_transform();
  e.lr_scales_with_batch = M::lr_scales_with_batch;
  if constexpr (detail::MethodHasReportedRuns<M>) e.reported_runs = M::reported_runs();
  else e.reported_runs = {{e.name, e.label, {}}};
  e.default_options = [](const MethodSetting& setting) {
    Options options{};
    if constexpr (detail::MethodAdapts<M>) M::adapt(options, setting);
    return write_options(options);
  };
  e.default_head_options = [](const std::string& head, bool embedded) {
    check_head(head);
    Json out = Json::object();
    for_each_head_kind([&]<class Kind>() {
      if (Kind::name != head) return;
      auto options = detail::head_defaults<M, Kind>();
      if constexpr (requires { Kind::embedded(options); })
        if (embedded) Kind::embedded(options);
      out = write_options(options);
    });
    return out;
  };
  e.check = [](const Json& options, const std::string& options_path, const std::string& head,
               const Json& head_options, const std::string& head_path, const MethodSetting& setting) {
    check_head(head);
    const auto parsed = options_from_json<Options>(options, options_path);
    validate_in_context(parsed, options_path, setting.dims);
    if constexpr (detail::MethodChecks<M>) M::check(parsed, options_path, setting);
    for_each_head_kind([&]<class Kind>() {
      if (Kind::name != head) return;
      auto head_parsed = detail::head_defaults<M, Kind>();
      read_options(head_options, head_parsed, head_path);
      validate_in_context(head_parsed, head_path, setting.dims);
    });
  };
  e.run_name = [](const Json& options, const std::string& head) {
    std::string base(M::name);
    if constexpr (detail::MethodHasRunName<M>) base = M::run_name(options_from_json<Options>(options, "method_options"));
    std::string suffix;
    if (head != M::default_head)
      for_each_head_kind([&]<class Kind>() {
        if (Kind::name == head) suffix = std::string(Kind::run_suffix);
      });
    return base + suffix;
  };
  e.preset = [transform = e.transform](const std::string& benchmark,
                                       const ResolvedPreset& base) -> std::optional<ResolvedPreset> {
    if constexpr (!detail::MethodHasPresets<M>) {
      return std::nullopt;
    } else {
      Preset<Options> p;
      p.data = base.data;
      p.scenario = base.scenario;
      p.transform = transform;
      p.train = M::recipe();
      p.trials = base.trials;
      if (!M::preset(benchmark, p)) return std::nullopt;
      ResolvedPreset out;
      out.data = p.data;
      out.scenario = p.scenario;
      out.transform = p.transform;
      out.train = p.train;
      out.options = write_options(p.options);
      out.head_options = p.head_options;
      out.trials = p.trials;
      out.weights = p.weights;
      out.reported = p.reported;
      out.sources = p.sources;
      return out;
    }
  };
  e.run = [](MethodRun& run) -> Results {
    const auto options = options_from_json<Options>(run.options, "method_options");
    Results results;
    bool found = false;
    for_each_head_kind([&]<class Kind>() {
      if (Kind::name != run.head) return;
      found = true;
      auto head_options = detail::head_defaults<M, Kind>();
      read_options(run.head_options, head_options, "head_options");
      auto dims = run.context.dims;
      if constexpr (detail::MethodHasHeadDims<M>) dims = M::head_dims(dims);
      auto head = Kind::make(head_options, dims);
      if constexpr (detail::MethodMakes<M>) {
        auto model = M::make(options, std::move(head), run.context);
        results = detail::train_and_evaluate(*model, run);
      } else {
        results = M::with_model(options, std::move(head), run.context,
                                [&](auto model) { return detail::train_and_evaluate(*model, run); });
      }
    });
    if (!found) check_head(run.head);
    return results;
  };
  put(std::move(e));
}

/// The published methods and baselines (finetune, linear-probe, l2p, dualprompt, coda-prompt,
/// slca, star-prompt), compiled once in the library.
MethodRegistry builtin_methods();

}  // namespace clprompt
