// STAR-Prompt end to end: level 1 (CLIP text prototypes) on a tiny generated CLIP and
// vocabulary, and whole runs through run_experiment with CLIP and with the fallback source.
#include <csignal>
#include <filesystem>
#include <fstream>

#include "clip/tiny_clip.hpp"
#include "clprompt/clip/clip_loader.hpp"
#include "clprompt/core/interrupt.hpp"
#include "clprompt/core/seed.hpp"
#include "clprompt/run/experiment.hpp"
#include "clprompt/methods/star_prompt.hpp"
#include "clprompt/prototypes/clip_text_prototypes.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which Catch's must override.
#include <catch2/catch.hpp>

using namespace clprompt;

namespace {

ClipTokenizer tiny_tokenizer(const test::TempDir& dir) {
  test::write_tiny_hf_tokenizer(dir.str());
  return ClipTokenizer::from_hf_files(dir / "vocab.json", dir / "merges.txt");
}

// CLIP image features of two well-separated clusters per task, as a FeatureStream.
struct ClusteredFeatures {
  explicit ClusteredFeatures(int64_t classes, int64_t dim = 16) : centres(3.0 * at::randn({classes, dim}, make_generator(11, 0))) {}
  FeatureStream stream(const TaskContext& ctx, int64_t per_class = 12) const {
    return [this, ctx, per_class](const FeatureVisitor& visit) {
      const auto labels = at::arange(ctx.class_begin, ctx.class_end, at::kLong).repeat(per_class);
      const auto noise = 0.3 * at::randn({labels.size(0), centres.size(1)}, make_generator(12, ctx.task));
      visit(centres.index_select(0, labels) + noise, labels);
    };
  }
  at::Tensor centres;
};

Results run_quietly(const Json& overrides, const std::string& out) {
  ExperimentOutput output{out, {}};
  output.hooks.log = nullptr;
  return run_experiment(builtin_methods(), resolve_config(builtin_methods(), "star-prompt", overrides), output);
}

bool has_note(const Results& results, const std::string& text) {
  for (const auto& note : results.notes)
    if (note.find(text) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("level 1 learns per-class context tokens and keeps earlier prototypes fixed", "[star][clip]") {
  seed_everything(21);
  test::TempDir dir;
  ClipPrototypeOptions options;
  options.epochs = 5;  // published lr 0.002; the two clusters per task separate within an epoch
  options.batch_size = 8;
  options.replay_epochs = 2;
  options.replay_samples_per_class = 16;
  ClipTextPrototypes source(options, test::tiny_clip_model(3), tiny_tokenizer(dir), {"cat", "dog", "car", "bus"});
  const ClusteredFeatures data(4);

  source.begin_task(test::task_ctx(0));
  const auto ids = source.token_ids(0);
  CHECK(ids.sizes() == at::IntArrayRef({2, 16}));
  CHECK(ids[0][0].item<int64_t>() == test::kTinySot);
  CHECK(ids.eq(test::kTinyEot).sum().item<int64_t>() == 2);  // one end token per class text
  CHECK_FALSE(source.context(0).requires_grad());            // only trained inside prototypes()
  const auto initial_context = source.context(0).clone();

  const auto keys0 = source.prototypes(test::task_ctx(0), data.stream(test::task_ctx(0)));
  CHECK(keys0.sizes() == at::IntArrayRef({2, 16}));
  CHECK(keys0.norm(2, {1}).sub(1).abs().max().item<double>() < 1e-5);
  CHECK_FALSE(keys0.requires_grad());
  REQUIRE(source.last_loss().size() == 5);
  CHECK(source.last_loss().back() < source.last_loss().front());
  CHECK(source.last_replay_loss().size() == 2);
  CHECK_FALSE(at::equal(source.context(0), initial_context));
  CHECK_FALSE(source.context(0).requires_grad());
  const auto context0 = source.context(0).clone();

  SECTION("the next task trains only its own context; task 0's prototypes stay bit-identical") {
    source.begin_task(test::task_ctx(1));
    const auto keys1 = source.prototypes(test::task_ctx(1), data.stream(test::task_ctx(1)));
    CHECK(keys1.sizes() == at::IntArrayRef({2, 16}));
    CHECK(at::equal(source.context(0), context0));
    at::NoGradGuard no_grad;
    CHECK(at::equal(source.text_keys(source.context(0), source.token_ids(0)), keys0));
    // Replay statistics of both tasks are kept for later tasks (and in checkpoints).
    CHECK(source.statistics().count(2) == 12);
    for (int64_t c = 0; c < 4; ++c)
      CHECK(at::allclose(source.statistics().mean(c).to(at::kFloat), data.centres[c], 0.0, 0.3));
    CHECK(source.named_buffers().contains("statistics.mixture_mean_1"));
  }
  SECTION("the query is CLIP's image embedding of the de-normalised, resized image") {
    const auto images = at::randn({2, 3, 28, 28}, make_generator(13, 0));
    const auto q = source.query(images);
    CHECK(q.sizes() == at::IntArrayRef({2, 16}));
    CHECK_FALSE(q.requires_grad());
    CHECK_FALSE(at::allclose(q[0], q[1]));
  }
  SECTION("class names that do not fit CLIP's text context are named") {
    ClipTextPrototypes long_names(options, test::tiny_clip_model(3), tiny_tokenizer(dir),
                                  {"a very long class name that cannot fit", "b"});
    CHECK_THAT(test::error_message<ConfigError>([&] { long_names.begin_task(test::task_ctx(0)); }),
               Catch::Contains("a very long class name that cannot fit") && Catch::Contains("16 tokens"));
  }
}

TEST_CASE("star-prompt runs end to end through the CLIP path and with the fallback source", "[star][clip][experiment]") {
  test::TempDir dir;
  std::filesystem::create_directories(dir.path() / "data");
  std::filesystem::create_directories(dir.path() / "clip");
  test::write_idx_files(dir / "data", "train", *test::texture_classes(10, 6, 1));
  test::write_idx_files(dir / "data", "t10k", *test::texture_classes(10, 3, 2));
  // CLIP at 16 px (images are 8 px: the query path resizes), Hugging Face names.
  test::write_tiny_clip_dir(dir / "clip", ClipNaming::huggingface, /*image_size=*/16, /*patch_size=*/8);

  Json overrides{{"data", {{"root", dir / "data"}}},
                 {"backbone", write_options(test::tiny_vit(2))},
                 {"pretrained", ""},
                 {"scenario", {{"train_per_class", 0}, {"num_tasks", 2}}},
                 {"train", {{"batch_size", 8}}},
                 {"transform", {{"horizontal_flip", false}}},
                 {"head_options", {{"alignment", {{"epochs", 2}, {"epochs_per_task", 1}}}}}};

  SECTION("with CLIP") {
    overrides["method_options"]["clip"] = dir / "clip";
    const auto results = run_quietly(overrides, dir / "out");
    CHECK(results.complete());
    CHECK(results.method == "star-prompt");
    CHECK(has_note(results, "CLIP text prototypes"));
    // The checkpoint holds the learned contexts and keys, not CLIP; it loads into a model built
    // with the same CLIP.
    auto clip = load_clip_directory(dir / "clip");
    auto restored = make_star_prompt(std::make_shared<VisionTransformer>(test::tiny_vit(2)), clip.model, clip.tokenizer,
                                     std::vector<std::string>(10, "thing"));
    restored->load(dir / "out/model.safetensors");
    CHECK(restored->tasks_started() == 2);
    CHECK(restored->selector().source().context(1).abs().sum().item<double>() > 0);
    CHECK(restored->selector().keys(restored->context()).norm(2, {1}).sub(1).abs().max().item<double>() < 1e-5);
    std::vector<std::string> clip_names;  // CLIP is not part of the checkpoint
    for (const auto& [name, tensor] : state_dict(*restored))
      if (name.find("clip") != std::string::npos || name.find("visual") != std::string::npos) clip_names.push_back(name);
    CHECK(clip_names.empty());
  }
  SECTION("with CLIP, stopped by SIGINT after the first task and resumed: the uninterrupted results") {
    overrides["method_options"]["clip"] = dir / "clip";
    const auto reference = run_quietly(overrides, dir / "out-reference");
    const auto registry = builtin_methods();
    const auto config = resolve_config(registry, "star-prompt", overrides);
    ExperimentOutput output{dir / "out-stopped", {}};
    output.hooks.log = nullptr;
    {
      InterruptHandler interrupts;
      // Acted on during task 2's first level (a pass over its features): the checkpoint written at
      // the end of task 1's training stands, so task 1's alignment and evaluation run again.
      output.hooks.on_task_end = [](const Results&) { std::raise(SIGINT); };
      CHECK_THROWS_AS(run_experiment(registry, config, output), Interrupted);
    }
    CHECK(std::filesystem::exists(dir / "out-stopped/resume.safetensors"));
    output.hooks.on_task_end = nullptr;
    output.existing = ExistingRun::resume;
    const auto resumed = run_experiment(registry, config, output);
    CHECK(resumed.accuracy == reference.accuracy);
    REQUIRE(resumed.tasks.size() == reference.tasks.size());
    for (std::size_t t = 0; t < resumed.tasks.size(); ++t) CHECK(resumed.tasks[t].epoch_loss == reference.tasks[t].epoch_loss);
    CHECK_FALSE(std::filesystem::exists(dir / "out-stopped/resume.safetensors"));  // removed once complete
  }
  SECTION("without CLIP: the fallback source, reported under its own name") {
    const auto results = run_quietly(overrides, dir / "out-fallback");
    CHECK(results.complete());
    CHECK(results.method == "star-prompt-fallback");
    CHECK(has_note(results, "fallback"));
  }
  SECTION("configuration errors name the field, before any data is read") {
    overrides["method_options"]["clip"] = dir / "nowhere";
    const auto registry = builtin_methods();
    // A missing CLIP directory fails while the configuration is resolved.
    CHECK_THAT(test::error_message<Error>([&] { resolve_config(registry, "star-prompt", overrides); }),
               Catch::Contains(dir / "nowhere"));
    // CLIP is STAR-Prompt's option: other methods have no such field.
    CHECK_THAT(test::error_message<ConfigError>([&] { resolve_config(registry, "finetune", overrides); }),
               Catch::Contains("method_options.clip") && Catch::Contains("unknown field"));
  }
}
