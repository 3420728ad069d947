// Every published protocol (`clprompt run --benchmark B --method M`) resolves to its reference's
// recipe: the values below are read off the reference repositories (docs/methods.md's preset
// table gives each with its file and line), independently of the presets' code.
#include <fstream>
#include <ostream>

#include "clprompt/io/safetensors.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/run/benchmarks.hpp"
#include "clprompt/run/experiment.hpp"
#include "test_util.hpp"

#include <catch2/catch.hpp>

using namespace clprompt;

namespace clprompt {
// For Catch's messages when a preset's trials differ.
std::ostream& operator<<(std::ostream& os, const Trial& t) {
  return os << "{seed " << t.seed << ", order " << to_string(t.order) << ", order_seed " << t.order_seed << "}";
}
}  // namespace clprompt

namespace {

RunConfig preset(const std::string& method, const std::string& benchmark, Json overrides = Json::object()) {
  overrides["benchmark"] = benchmark;
  return resolve_config(builtin_methods(), method, overrides);
}

const Json& selector(const RunConfig& c) { return c.method_options.at("selector"); }

}  // namespace

TEST_CASE("L2P on Split CIFAR-100 is l2p-pytorch's run", "[run][preset]") {
  const auto c = preset("l2p", "split-cifar100");
  CHECK(c.data.dataset == "cifar100");
  CHECK(c.scenario.num_tasks == 10);
  CHECK(c.trials == std::vector<Trial>{{.seed = 42, .order = ClassOrderRule::natural, .order_seed = 42}});
  CHECK(c.train.optim.optimizer == OptimizerKind::adam);
  CHECK(c.train.optim.lr == Approx(0.001875));  // 0.03 x 16 / 256
  CHECK(c.train.batch_size == 16);
  CHECK(c.train.eval_batch_size == 16);
  CHECK(c.train.epochs == 5);
  CHECK(c.train.schedule.schedule == ScheduleKind::constant);
  CHECK(c.train.optim.clip_grad_norm == 1.0);
  CHECK(c.transform.train_crop == TrainCrop::random_resized);
  CHECK(c.transform.random_resized_crop.scale_min == 0.05);
  CHECK(c.transform.test_resize == 256);
  CHECK(c.transform.test_interpolation == Interpolation::bicubic);
  CHECK(c.transform.mean.empty());
  CHECK(selector(c).at("pool_size") == 10);
  CHECK(selector(c).at("top_k") == 5);
  CHECK(selector(c).at("batchwise_eval") == true);
  CHECK(c.reference.at("weights") == "vit_base_patch16_224.orig_in21k");
  CHECK(c.backbone.embed_dim == 768);
  CHECK(c.backbone.image_size == 224);
}

TEST_CASE("DualPrompt on Split CIFAR-100 and ImageNet-R are dualprompt-pytorch's runs", "[run][preset]") {
  const auto cifar = preset("dualprompt", "split-cifar100");
  CHECK(cifar.train.optim.lr == Approx(0.0028125));  // 0.03 x 24 / 256
  CHECK(cifar.train.batch_size == 24);
  CHECK(cifar.train.eval_batch_size == 24);
  CHECK(cifar.train.epochs == 5);
  CHECK(cifar.train.optim.clip_grad_norm == 1.0);
  CHECK(selector(cifar).at("batchwise_eval") == true);
  CHECK(selector(cifar).at("e_length") == 5);
  CHECK(selector(cifar).at("shared_prompt_pool") == true);  // configs/cifar100_dualprompt.py:98
  CHECK(selector(cifar).at("shared_prompt_key") == false);  // :99
  CHECK(selector(cifar).at("e_keys") == "shared");
  CHECK(cifar.trials.front().order == ClassOrderRule::natural);

  const auto imr = preset("dualprompt", "split-imagenet-r");
  CHECK(imr.data.dataset == "imagenet-r");
  CHECK(imr.data.imagenet_r.split == ImageNetRSplit::random_split);
  CHECK(imr.data.imagenet_r.seed == 42);
  CHECK(imr.train.epochs == 50);
  CHECK(imr.train.optim.lr == Approx(0.005 * 24 / 256));
  CHECK(selector(imr).at("e_length") == 20);
  CHECK(selector(imr).at("batchwise_eval") == false);
  CHECK(imr.scenario.num_tasks == 10);
  CHECK(selector(imr).at("shared_prompt_pool") == true);  // configs/imr_dualprompt.py:98
}

TEST_CASE("the CODA-Prompt repository's runs: CODA-P, and its L2P++ and DualPrompt on ImageNet-R", "[run][preset]") {
  for (const auto& [benchmark, tasks, epochs] : std::vector<std::tuple<std::string, int64_t, int64_t>>{
           {"split-cifar100", 10, 20}, {"split-imagenet-r-5", 5, 50}, {"split-imagenet-r", 10, 50},
           {"split-imagenet-r-20", 20, 50}}) {
    INFO(benchmark);
    const auto c = preset("coda-prompt", benchmark);
    CHECK(c.scenario.num_tasks == tasks);
    CHECK(c.train.epochs == epochs);
    CHECK(c.train.optim.lr == Approx(1e-3));
    CHECK(c.train.batch_size == 128);
    CHECK(c.train.schedule.schedule == ScheduleKind::coda_cosine);
    CHECK(c.train.drop_last);
    CHECK(c.train.optim.clip_grad_norm == 0.0);
    CHECK(c.transform.mean.empty());
    CHECK(c.transform.random_resized_crop.scale_min == 0.08);
    CHECK(c.transform.test_resize == (benchmark == "split-cifar100" ? 224 : 256));
    CHECK(c.trials == std::vector<Trial>{{.seed = 0, .order = ClassOrderRule::natural, .order_seed = 0}});
    CHECK(selector(c).at("pool_size") == 100);
    CHECK(selector(c).at("num_tasks") == tasks);
    CHECK(selector(c).at("gram_schmidt") == "reference");  // the repository's own Gram-Schmidt
    CHECK(c.reference.at("weights") == "vit_base_patch16_224.augreg_in21k_ft_in1k");
    if (benchmark != "split-cifar100") CHECK(c.data.imagenet_r.split == ImageNetRSplit::split_lists);
  }
  const auto l2p = preset("l2p", "split-imagenet-r-20");  // L2P++: prompt_param 30 20 -1
  CHECK(selector(l2p).at("pool_size") == 30);
  CHECK(selector(l2p).at("length") == 20);
  CHECK(selector(l2p).at("injection") == "prefix_tuning");
  CHECK(l2p.train.schedule.schedule == ScheduleKind::coda_cosine);
  CHECK(selector(l2p).at("pull_loss") == "all_pairs");  // models/zoo.py:265-267
  CHECK(selector(l2p).at("pull_loss_chunk") == 32);     // 128 over 4 DataParallel replicas
  CHECK(selector(l2p).at("pull_coefficient") == 1.0);   // learners/prompt.py:37
  const auto dual = preset("dualprompt", "split-imagenet-r-5");  // prompt_param 5 20 6
  CHECK(selector(dual).at("e_pool_size") == 5);
  CHECK(selector(dual).at("e_length") == 20);
  CHECK(selector(dual).at("g_length") == 6);
  CHECK(selector(dual).at("e_keys") == "per_layer");         // e_k_<l>: models/zoo.py:220-225
  CHECK(selector(dual).at("pull_reduction") == "sum");       // zoo.py:262, vit.py:186-192
  CHECK(selector(dual).at("shared_prompt_pool") == false);   // the repository has no copy
}

TEST_CASE("SLCA's four configurations", "[run][preset]") {
  const auto cifar = preset("slca", "split-cifar100");
  CHECK(cifar.trials.size() == 3);
  for (std::size_t k = 0; k < 3; ++k) {
    CHECK(cifar.trials[k].seed == 1);  // torch re-seeded to 1 every run
    CHECK(cifar.trials[k].order == ClassOrderRule::numpy);
  }
  CHECK(cifar.trials[0].order_seed == 1993);
  CHECK(cifar.trials[1].order_seed == 1996);
  CHECK(cifar.trials[2].order_seed == 1997);
  CHECK(cifar.train.epochs == 20);
  CHECK(cifar.train.schedule.milestones == std::vector<int64_t>{18});
  CHECK(cifar.train.optim.lr == Approx(0.01));
  CHECK(cifar.train.slow_lr_scale == Approx(0.01));
  CHECK(cifar.transform.brightness == Approx(63.0 / 255.0));
  CHECK(cifar.transform.mean == std::vector<double>{0.5071, 0.4867, 0.4408});
  CHECK(cifar.method_options.at("reset_final_norm") == true);
  CHECK(cifar.head_options.at("freeze_past_tasks") == true);
  CHECK(cifar.head_options.at("logit_norm").at("temperature") == 0.1);
  CHECK(cifar.reference.at("weights") == "vit_base_patch16_224.augreg_in21k");
  const auto cars = preset("slca", "split-cars196");
  CHECK(cars.train.epochs == 50);
  CHECK(cars.train.schedule.milestones == std::vector<int64_t>{40});
  CHECK(cars.transform.train_resize == 300);
  CHECK(cars.transform.train_crop == TrainCrop::random);
  CHECK(cars.transform.brightness == 0.0);
  CHECK(cars.head_options.at("logit_norm").at("temperature") == 0.05);
  CHECK(cars.scenario.classes_per_task == 20);
  CHECK(cars.data.test_folder == "val");
  const auto imr = preset("slca", "split-imagenet-r");
  CHECK(imr.data.imagenet_r.split == ImageNetRSplit::split_folders);
  CHECK(imr.data.imagenet_r.test_folder == "val");
  CHECK(preset("slca", "split-cub200").head_options.at("logit_norm").at("temperature") == 0.1);
}

TEST_CASE("STAR-Prompt's settings per benchmark", "[run][preset]") {
  const auto cifar = preset("star-prompt", "split-cifar100");
  CHECK(cifar.trials.size() == 3);
  CHECK(cifar.trials[0].order == ClassOrderRule::numpy_inverse);
  CHECK(cifar.train.epochs == 20);
  CHECK(selector(cifar).at("ortho_weight") == 2.0);
  CHECK(cifar.method_options.at("source").at("ortho_weight") == 10.0);
  CHECK(cifar.method_options.at("source").at("epochs") == 20);
  const auto imr = preset("star-prompt", "split-imagenet-r");
  CHECK(imr.train.batch_size == 16);
  CHECK(imr.train.epochs == 5);
  CHECK(imr.transform.test_resize_square);
  CHECK(imr.transform.mean.empty());
  const auto cub = preset("star-prompt", "split-cub200");
  CHECK(cub.method_options.at("source").at("replay_epochs") == 50);
  CHECK(cub.head_options.at("alignment").at("lr") == 0.01);
  CHECK(selector(cub).at("ortho_weight") == 30.0);
}

TEST_CASE("a benchmark without a recipe for the method, or the wrong weights, is refused by name", "[run][preset]") {
  const auto registry = builtin_methods();
  CHECK_THROWS_WITH(preset("finetune", "split-cifar100"),
                    Catch::Contains("finetune has no published recipe for split-cifar100") && Catch::Contains("l2p"));
  CHECK_THROWS_WITH(preset("l2p", "split-cub200"), Catch::Contains("'benchmark'"));
  CHECK_THROWS_WITH(preset("l2p", "split-mnist"), Catch::Contains("unknown benchmark 'split-mnist'"));
  // Weights whose geometry does not fit: a ViT-Ti-sized header (the data need not be there to be
  // refused: the geometry is read from the header alone).
  test::TempDir dir;
  const auto path = dir / "vit_tiny.safetensors";
  {
    Json header{{"cls_token", {{"dtype", "F32"}, {"shape", {1, 1, 192}}, {"data_offsets", {0, 768}}}},
                {"pos_embed", {{"dtype", "F32"}, {"shape", {1, 197, 192}}, {"data_offsets", {768, 768 + 197 * 768}}}},
                {"patch_embed.proj.weight", {{"dtype", "F32"}, {"shape", {192, 3, 16, 16}}, {"data_offsets", {152064, 741888}}}},
                {"blocks.0.attn.qkv.weight", {{"dtype", "F32"}, {"shape", {576, 192}}, {"data_offsets", {741888, 1184256}}}}};
    const auto text = header.dump();
    std::ofstream out(path, std::ios::binary);
    const uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
    out << text << std::string(1184256, '\0');
  }
  CHECK_THROWS_WITH(preset("l2p", "split-cifar100", Json{{"pretrained", path}}),
                    Catch::Contains("'pretrained'") && Catch::Contains("D 192") && Catch::Contains("D 768") &&
                        Catch::Contains("vit_base_patch16_224.orig_in21k"));
  // Running a protocol needs the data and the weights, named before anything is read.
  CHECK_THROWS_WITH(run_experiment(registry, preset("l2p", "split-cifar100")),
                    Catch::Contains("'pretrained'") && Catch::Contains("--pretrained"));
}

TEST_CASE("every method with presets lists its benchmarks; every preset resolves", "[run][preset]") {
  const auto registry = builtin_methods();
  int presets = 0;
  for (const auto& e : registry.entries())
    for (const auto& b : benchmarks())
      if (e.preset(b.name, ResolvedPreset{b.data, b.scenario})) {
        INFO(e.name << " on " << b.name);
        const auto c = resolve_config(registry, e.name, Json{{"benchmark", b.name}});
        CHECK(c.benchmark == b.name);
        CHECK_FALSE(c.trials.empty());
        CHECK_FALSE(c.reference.at("sources").empty());
        CHECK_FALSE(c.reference.at("weights").get<std::string>().empty());
        ++presets;
      }
  // l2p, dualprompt, coda-prompt: CIFAR-100 + ImageNet-R 5/10/20; slca, star-prompt: CIFAR-100,
  // ImageNet-R, CUB, Cars; simplecil, aper: CIFAR-100, ImageNet-R, CUB; ranpac: all four
  CHECK(presets == 30);
}

TEST_CASE("RanPAC, SimpleCIL and APER on Split CIFAR-100 and ImageNet-R are their repositories' runs", "[run][preset]") {
  const auto ranpac = preset("ranpac", "split-cifar100");
  CHECK(ranpac.scenario.num_tasks == 10);  // init_cls = increment = 10
  CHECK(ranpac.trials == std::vector<Trial>{{.seed = 1993, .order = ClassOrderRule::numpy, .order_seed = 1993}});
  CHECK(ranpac.train.epochs == 0);  // the "No Phase 1" row: nothing trains
  CHECK(ranpac.head == "ranpac");
  CHECK(ranpac.head_options.at("projection_dim") == 10000);  // args/cifar224_publish.csv: M
  CHECK(ranpac.head_options.at("ridge").at("lambdas").size() == 17);
  CHECK(ranpac.reference.at("weights") == "vit_base_patch16_224.augreg_in21k");
  CHECK(ranpac.transform.mean.empty());             // utils/data.py build_transform: ToTensor only
  CHECK(ranpac.transform.test_resize == 224);       // isCifar: Resize(224) + CenterCrop(224)
  CHECK(ranpac.transform.random_resized_crop.scale_min == 0.05);
  CHECK(preset("ranpac", "split-imagenet-r").scenario.num_tasks == 10);  // 200 classes, 20 per task
  CHECK(preset("ranpac", "split-imagenet-r").transform.test_resize == 256);
  const auto cars = preset("ranpac", "split-cars196");  // init_cls 16, increment 20
  CHECK(cars.scenario.initial_classes == 16);
  CHECK(cars.scenario.classes_per_task == 20);
  CHECK(cars.data.test_folder == "test");
  CHECK(preset("simplecil", "split-cub200").scenario.num_tasks == 20);  // cub_10_10
  const auto simplecil = preset("simplecil", "split-imagenet-r");
  CHECK(simplecil.scenario.num_tasks == 40);  // init_cls = increment = 5
  CHECK(simplecil.train.epochs == 0);
  CHECK(simplecil.head == "prototype");
  const auto aper = preset("aper", "split-cifar100");
  CHECK(aper.scenario.num_tasks == 20);
  CHECK(aper.train.epochs == 5);  // tuned_epoch
  CHECK(aper.train.trained_tasks == 1);
  CHECK(aper.train.optim.optimizer == OptimizerKind::sgd);
  CHECK(aper.train.optim.lr == Approx(0.01));
  CHECK(aper.train.batch_size == 128);
  CHECK(aper.train.schedule.schedule == ScheduleKind::cosine);
}
