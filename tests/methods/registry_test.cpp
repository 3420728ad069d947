// The method registry: the published methods are known by name with their runs and heads, a
// user's Method struct plugs into the same runner, every head composes with every method, and
// configuration errors name the real field before any data is read.
#include <fstream>

#include "clprompt/methods/linear_probe.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/run/experiment.hpp"
#include "test_util.hpp"

#include <catch2/catch.hpp>

using namespace clprompt;

namespace {

/// A user's method: a linear probe with an option of its own.
struct TinyProbeMethod {
  static constexpr std::string_view name = "tiny-probe";
  static constexpr std::string_view label = "Tiny probe";
  static constexpr std::string_view description = "a user's method in a test";
  static constexpr std::string_view default_head = "linear";
  struct Options {
    int64_t unused = 1;
    static constexpr auto fields() { return std::tuple{field("unused", &Options::unused)}; }
    void validate(const std::string& path) const { require_option(unused > 0, path, "unused", "must be positive"); }
  };
  static TrainOptions recipe() { return {.optim = {.lr = 0.05}, .batch_size = 16}; }
  static constexpr bool lr_scales_with_batch = true;
  template <class Head>
  static auto make(const Options&, std::shared_ptr<Head> head, const MethodContext& ctx) {
    return make_linear_probe(ctx.backbone, std::move(head));
  }
};
static_assert(check_method<TinyProbeMethod>());

Json tiny_overrides(const test::TempDir& dir) {
  return Json{{"data", {{"root", dir.str()}}},
              {"backbone", write_options(test::tiny_vit(1))},
              {"pretrained", ""},
              {"scenario", {{"train_per_class", 0}, {"num_tasks", 2}}},
              {"train", {{"batch_size", 8}}},
              {"save_checkpoint", false},
              {"transform", {{"horizontal_flip", false}}}};
}

}  // namespace

TEST_CASE("the published methods are registered with their runs and default heads", "[methods][registry]") {
  const auto registry = builtin_methods();
  CHECK(registry.names() == std::vector<std::string>{"finetune", "linear-probe", "l2p", "dualprompt", "coda-prompt",
                                                     "slca", "star-prompt", "simplecil", "aper", "ranpac"});
  CHECK(MethodRegistry::head_names() == std::vector<std::string>{"linear", "slca", "ranpac", "prototype"});
  CHECK(registry.at("ranpac").default_head == "ranpac");
  CHECK(registry.at("simplecil").default_head == "prototype");
  CHECK(registry.at("slca").default_head == "slca");
  CHECK(registry.at("l2p").default_head == "linear");
  std::vector<std::string> runs;
  for (const auto& e : registry.entries())
    for (const auto& r : e.reported_runs) runs.push_back(r.run);
  CHECK(runs == std::vector<std::string>{"joint", "finetune", "linear-probe", "l2p", "l2p-single-pass", "dualprompt",
                                         "coda-prompt", "coda-prompt+align", "coda-prompt+ranpac", "slca",
                                         "star-prompt-fallback", "simplecil", "aper", "ranpac"});
  CHECK_THROWS_WITH(registry.at("nope"), Catch::Contains("unknown method 'nope'") && Catch::Contains("coda-prompt"));
}

TEST_CASE("every method resolves on the embedded default, with either head, under the right run name",
          "[methods][registry][config]") {
  const auto registry = builtin_methods();
  for (const auto& name : registry.names())
    for (const auto& head : MethodRegistry::head_names()) {
      INFO(name << " with " << head);
      const auto config = resolve_config(registry, name, Json{{"head", head}});
      CHECK(config.method == name);
      CHECK(config.head == head);
      // One epoch per task on the embedded default, none where the recipe trains none.
      CHECK(config.train.epochs == std::min<int64_t>(registry.at(name).recipe.epochs, 1));
      CHECK(config.train.batch_size == 64);
    }
  CHECK(run_name(registry, resolve_config(registry, "coda-prompt", Json{{"head", "slca"}})) == "coda-prompt+align");
  CHECK(run_name(registry, resolve_config(registry, "slca")) == "slca");
  CHECK(run_name(registry, resolve_config(registry, "slca", Json{{"head", "linear"}})) == "slca+linear");
  CHECK(run_name(registry, resolve_config(registry, "star-prompt")) == "star-prompt-fallback");
  CHECK(run_name(registry, resolve_config(registry, "coda-prompt", Json{{"head", "ranpac"}})) == "coda-prompt+ranpac");
  CHECK(run_name(registry, resolve_config(registry, "l2p", parse_override("method_options.query.layer=3"))) ==
        "l2p-single-pass");
  // RanPAC's projection: the published M on a benchmark, 2048 for the embedded default's 128-d ViT.
  CHECK(resolve_config(registry, "ranpac").head_options.at("projection_dim") == 2048);
  CHECK(resolve_config(registry, "ranpac", Json{{"benchmark", "split-cifar100"}}).head_options.at("projection_dim") ==
        10000);
  CHECK(resolve_config(registry, "simplecil").train.epochs == 0);
  CHECK(resolve_config(registry, "aper").train.trained_tasks == 1);
  // The recipes on the embedded default: lr scaled with the batch where the reference scales it.
  CHECK(resolve_config(registry, "l2p").train.optim.lr == Approx(0.03 * 64 / 256));
  CHECK(resolve_config(registry, "coda-prompt").train.optim.lr == Approx(1e-3));
  // Defaults that follow the setting: CODA-Prompt's pool over the scenario's tasks.
  CHECK(resolve_config(registry, "coda-prompt").method_options.at("selector").at("num_tasks") == 5);
  CHECK(resolve_config(registry, "coda-prompt", parse_override("scenario.num_tasks=2"))
            .method_options.at("selector").at("num_tasks") == 2);
  // Head defaults of the method: FT without masking, STAR-Prompt's alignment.
  CHECK(resolve_config(registry, "finetune").head_options.at("mask_other_tasks") == false);
  CHECK(resolve_config(registry, "star-prompt").head_options.at("alignment").at("epochs_per_task") == 5);
}

TEST_CASE("configuration errors name the field under method_options and head_options before any work",
          "[methods][registry][config]") {
  const auto registry = builtin_methods();
  auto message = [&](const std::string& method, const Json& overrides) {
    return test::error_message<ConfigError>([&] { resolve_config(registry, method, overrides); });
  };
  CHECK_THAT(message("l2p", parse_override("method_options.selector.top_k=0")),
             Catch::Contains("'method_options.selector.top_k'"));
  CHECK_THAT(message("l2p", parse_override("method_options.selectr={}")), Catch::Contains("'method_options.selectr'"));
  // Checks that need the backbone's sizes: CODA-Prompt's layers 0-4 do not exist in a 2-layer ViT.
  CHECK_THAT(message("coda-prompt", parse_override("backbone.depth=2")),
             Catch::Contains("'method_options.selector.layers[2]'") && Catch::Contains("outside"));
  // ... and the number of tasks: DualPrompt needs an E-prompt per task.
  CHECK_THAT(message("dualprompt", parse_override("scenario.num_tasks=20")),
             Catch::Contains("'method_options.selector.e_pool_size'") && Catch::Contains("20"));
  CHECK_THAT(message("slca", parse_override("head_options.alignment.epochs=-1")),
             Catch::Contains("'head_options.alignment.epochs'"));
  CHECK_THAT(message("l2p", parse_override("head=cosine")),
             Catch::Contains("'head'") && Catch::Contains("linear, slca, ranpac, prototype"));
  CHECK_THAT(message("l2p", Json{{"head", "ranpac"}, {"head_options", {{"ridge", {{"fit_fraction", 1.5}}}}}}),
             Catch::Contains("'head_options.ridge.fit_fraction'"));
  CHECK_THAT(message("coda-prompt", parse_override("method_options.query.layer=3")),
             Catch::Contains("'method_options.selector.layers'"));
  CHECK_THAT(message("ranpac", parse_override("method_options.adapt_backbone=true")),
             Catch::Contains("'method_options.adapt_backbone'") && Catch::Contains("train.epochs"));
  CHECK_THAT(message("l2p", Json{{"head", "slca"}, {"head_options", {{"alignment", {{"lr", 0}}}}}}),
             Catch::Contains("'head_options.alignment.lr'"));
}

TEST_CASE("a user's method runs through the same runner with any head", "[methods][registry][experiment]") {
  test::TempDir dir;
  test::write_idx_files(dir.str(), "train", *test::texture_classes(10, 6, 1));
  test::write_idx_files(dir.str(), "t10k", *test::texture_classes(10, 3, 2));
  auto registry = builtin_methods();
  registry.add<TinyProbeMethod>();
  CHECK(registry.names().back() == "tiny-probe");
  auto config = resolve_config(registry, "tiny-probe", tiny_overrides(dir));
  CHECK(config.train.optim.lr == Approx(0.05 * 64 / 16));  // its recipe, scaled to the embedded batch
  CHECK(config.method_options == Json{{"unused", 1}});
  ExperimentOutput output{dir / "out", {}};
  output.hooks.log = nullptr;
  const auto linear = run_experiment(registry, config, output);
  CHECK(linear.complete());
  CHECK(linear.method == "tiny-probe");
  CHECK(std::filesystem::exists(dir.path() / "out" / "results.json"));

  auto aligned_overrides = tiny_overrides(dir);
  aligned_overrides["head"] = "slca";
  aligned_overrides["head_options"] = {{"alignment", {{"epochs", 1}, {"samples_per_class", 8}}}};
  output.existing = ExistingRun::overwrite;  // the same directory: replaced only when asked
  const auto aligned = run_experiment(registry, resolve_config(registry, "tiny-probe", aligned_overrides), output);
  CHECK(aligned.complete());
  CHECK(aligned.method == "tiny-probe+align");
  CHECK_THAT(test::error_message<ConfigError>(
                 [&] { resolve_config(registry, "tiny-probe", parse_override("method_options.unused=0")); }),
             Catch::Contains("'method_options.unused'"));
}
