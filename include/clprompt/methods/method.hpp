#pragma once
// The Method contract: one struct per method that the MethodRegistry (and through it the CLI, the
// runner and the results scripts) knows the method by. See docs/policies.md#method.
//
//   struct MyMethod {
//     static constexpr std::string_view name = "my-method";          // CLI name
//     static constexpr std::string_view label = "My method";         // in tables and plots
//     static constexpr std::string_view description = "one line for `clprompt methods`";
//     static constexpr std::string_view default_head = "linear";     // a HeadKinds name
//     struct Options {                                               // method_options, typed
//       MySelectorOptions selector;
//       static constexpr auto fields() { return std::tuple{clprompt::field("selector", &Options::selector)}; }
//     };
//     static clprompt::TrainOptions recipe();                        // its training recipe
//     static constexpr bool lr_scales_with_batch = false;            // lr ∝ batch when a preset changes it
//     template <class Head>                                          // the model, any head kind
//     static auto make(const Options& o, std::shared_ptr<Head> head, const clprompt::MethodContext& ctx);
//     // optional: defaults of a head kind's options for this method
//     static void configure_head(clprompt::LinearHeadOptions& head);
//     // optional: the run name's base ("star-prompt-fallback" without CLIP); default: name
//     static std::string run_name(const Options& o);
//     // optional: the runs the results table reports (default: one run, the method as configured)
//     static std::vector<clprompt::ReportedRun> reported_runs();
//     // optional: defaults that follow the setting (CODA-Prompt: components per task from the
//     // number of tasks), and checks that need it, before any work starts
//     static void adapt(Options& o, const clprompt::MethodSetting& setting);
//     static void check(const Options& o, const std::string& path, const clprompt::MethodSetting& setting);
//     // optional: the sizes its heads are built for, when its backbone's features are not the
//     // ViT's (APER: pre-trained and adapted features concatenated, 2·D)
//     static clprompt::BackboneDims head_dims(clprompt::BackboneDims vit);
//     // optional: the reference's input pipeline at 224 px (scaled for the embedded default);
//     // default: RandomResizedCrop + flip, Resize(256) + CenterCrop(224), ImageNet normalisation
//     static clprompt::TransformOptions transform();
//     // optional: the published protocol on a benchmark (`clprompt run --benchmark NAME`): edit
//     // the preset (pre-filled with recipe(), transform() and the benchmark's data); false = no
//     // published recipe for that benchmark
//     static bool preset(std::string_view benchmark, clprompt::Preset<Options>& preset);
//   };
// A method whose model type depends on its options (STAR-Prompt: CLIP or the fallback source)
// provides, instead of make(), `with_model(options, head, ctx, continuation)` that calls
// continuation(model) with the model it builds.
#include <concepts>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "clprompt/backbone/concepts.hpp"
#include "clprompt/backbone/vit.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/data/data_options.hpp"
#include "clprompt/data/scenario.hpp"
#include "clprompt/data/transforms.hpp"
#include "clprompt/learn/results.hpp"
#include "clprompt/methods/head_kinds.hpp"
#include "clprompt/optim/train_options.hpp"

namespace clprompt {

/// What a method's factory gets besides its options.
struct MethodContext {
  std::shared_ptr<VisionTransformer> backbone;  ///< built from the configuration, weights loaded
  BackboneDims dims;
  int64_t num_tasks = 0;
  std::vector<std::string> class_names;  ///< in incremental-label order (Scenario::class_names())
  TransformOptions transform;            ///< the input pipeline (its normalisation, for second encoders)
  TrainOptions train;                    ///< the resolved training recipe
  /// Records a note in the run's results (and prints it): e.g. which prototype source is in use.
  std::function<void(const std::string&)> note = [](const std::string&) {};
};

/// What is known about a run before any work starts: its backbone's sizes, number of tasks and
/// training recipe (a Method's adapt() and check() hooks get it).
struct MethodSetting {
  BackboneDims dims;
  int64_t num_tasks = 0;
  TrainOptions train;
};

/// One run of a protocol's trials: the seed of initialisation and data order, and the class order.
struct Trial {
  int64_t seed = 1993;
  ClassOrderRule order = ClassOrderRule::numpy;
  int64_t order_seed = -1;  ///< -1: the trial's seed

  static constexpr auto fields() {
    return std::tuple{field("seed", &Trial::seed), field("order", &Trial::order), field("order_seed", &Trial::order_seed)};
  }
  bool operator==(const Trial&) const = default;
};

/// A method's published protocol on one benchmark: everything `clprompt run --benchmark B
/// --method M` sets. The registry pre-fills it (the benchmark's data and scenario, the method's
/// recipe(), transform() and default options); the method's preset() edits what its reference
/// does differently there and cites the files.
template <class Options>
struct Preset {
  DataOptions data;
  ScenarioOptions scenario;
  TransformOptions transform;
  TrainOptions train;
  Options options;
  Json head_options = Json::object();  ///< merged over the default head's options
  std::vector<Trial> trials;           ///< the runs the reference averages
  std::string weights;                 ///< the pre-trained ViT the reference loads (current timm name)
  std::string reported;                ///< the reference's published result, e.g. "83.83 (paper)"
  std::vector<std::string> sources;    ///< `repo:path:line` of the values
};

/// One run of a method that the results table reports (`clprompt methods --json`).
struct ReportedRun {
  std::string run;                 ///< directory and row name, e.g. "coda-prompt+align"
  std::string label;               ///< row label, e.g. "CODA-Prompt + CA"
  std::vector<std::string> args;   ///< `clprompt run` arguments after --method NAME, e.g. {"--head", "slca"}
};

namespace detail {
template <class M>
concept MethodHasNames = requires {
  { M::name } -> std::convertible_to<std::string_view>;
  { M::label } -> std::convertible_to<std::string_view>;
  { M::description } -> std::convertible_to<std::string_view>;
  { M::default_head } -> std::convertible_to<std::string_view>;
};
template <class M>
concept MethodHasOptions = requires { typename M::Options; } && ReflectedOptions<typename M::Options>;
template <class M>
concept MethodHasRecipe = requires {
  { M::recipe() } -> std::same_as<TrainOptions>;
  { M::lr_scales_with_batch } -> std::convertible_to<bool>;
};
template <class M>
concept MethodMakes = requires(const typename M::Options& o, std::shared_ptr<LinearHead> head, const MethodContext& ctx) {
  M::make(o, head, ctx);
};
template <class M>
concept MethodBuildsWithContinuation =
    requires(const typename M::Options& o, std::shared_ptr<LinearHead> head, const MethodContext& ctx) {
      M::with_model(o, head, ctx, [](auto) { return Results{}; });
    };
template <class M>
concept MethodHasRunName = requires(const typename M::Options& o) {
  { M::run_name(o) } -> std::convertible_to<std::string>;
};
template <class M>
concept MethodAdapts = requires(typename M::Options& o, const MethodSetting& setting) { M::adapt(o, setting); };
template <class M>
concept MethodChecks = requires(const typename M::Options& o, const std::string& path, const MethodSetting& setting) {
  M::check(o, path, setting);
};
template <class M>
concept MethodHasTransform = requires {
  { M::transform() } -> std::same_as<TransformOptions>;
};
template <class M>
concept MethodHasPresets = requires(Preset<typename M::Options>& p) {
  { M::preset(std::string_view{}, p) } -> std::same_as<bool>;
};
template <class M>
concept MethodHasHeadDims = requires(const BackboneDims& dims) {
  { M::head_dims(dims) } -> std::same_as<BackboneDims>;
};
template <class M>
concept MethodHasReportedRuns = requires {
  { M::reported_runs() } -> std::convertible_to<std::vector<ReportedRun>>;
};
}  // namespace detail

template <class M>
concept Method = detail::MethodHasNames<M> && detail::MethodHasOptions<M> && detail::MethodHasRecipe<M> &&
                 (detail::MethodMakes<M> || detail::MethodBuildsWithContinuation<M>);

/// Compile-time check with one message per missing member; true when M is a Method.
template <class M>
constexpr bool check_method() {
  static_assert(detail::MethodHasNames<M>,
                "Method requires `static constexpr std::string_view name, label, description, default_head` "
                "(default_head: a head kind, e.g. \"linear\"). See docs/policies.md#method");
  static_assert(detail::MethodHasOptions<M>,
                "Method requires a nested `Options` struct with `static constexpr auto fields()` (its "
                "method_options, e.g. the selector's options). See docs/policies.md#method");
  static_assert(detail::MethodHasRecipe<M>,
                "Method requires `static TrainOptions recipe()` and `static constexpr bool lr_scales_with_batch`. "
                "See docs/policies.md#method");
  static_assert(detail::MethodMakes<M> || detail::MethodBuildsWithContinuation<M>,
                "Method requires `template <class Head> static auto make(const Options&, std::shared_ptr<Head>, "
                "const MethodContext&)` returning std::shared_ptr<ContinualModel<...>> (or with_model(options, head, "
                "ctx, continuation) when the model type depends on the options). See docs/policies.md#method");
  return Method<M>;
}

}  // namespace clprompt
