// Class order, class-incremental scenario, transforms and the prefetching loader, on small
// in-memory datasets.
#include <algorithm>
#include <numeric>
#include <set>

#include "clprompt/core/seed.hpp"
#include "clprompt/data/class_order.hpp"
#include "clprompt/data/loader.hpp"
#include "clprompt/data/scenario.hpp"
#include "clprompt/data/transforms.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which must not replace Catch's.
#include <catch2/catch.hpp>

namespace {

using Indices = std::vector<int64_t>;

// `per_class` images of each of `classes` classes, 1x2x2, every pixel of image i equal to i % 256.
std::shared_ptr<clprompt::TensorDataset> numbered_dataset(int64_t classes, int64_t per_class) {
  const int64_t n = classes * per_class;
  at::Tensor images = (at::arange(n, at::kLong) % 256).to(at::kByte).view({n, 1, 1, 1}).expand({n, 1, 2, 2}).contiguous();
  at::Tensor labels = at::arange(n, at::kLong) % classes;
  return std::make_shared<clprompt::TensorDataset>(images, labels);
}

// A dataset whose image 13 cannot be decoded.
class FailingDataset final : public clprompt::Dataset {
 public:
  int64_t size() const override { return 20; }
  int64_t num_classes() const override { return 2; }
  int64_t label(int64_t index) const override { return index % 2; }
  at::Tensor images(const Indices& indices) const override {
    for (int64_t i : indices)
      if (i == 13) throw clprompt::FileError("image13.jpg", "cannot decode image");
    return at::zeros({static_cast<int64_t>(indices.size()), 3, 2, 2}, at::kByte);
  }
  std::string description() const override { return "failing"; }
};

}  // namespace

TEST_CASE("numpy_permutation equals numpy.random.RandomState(seed).permutation(n)", "[data][class_order]") {
  // numpy 1.24: list(numpy.random.RandomState(seed).permutation(n))
  CHECK(clprompt::numpy_permutation(100, 1993) ==
        Indices{68, 56, 78, 8,  23, 84, 90, 65, 74, 76, 40, 89, 3,  92, 55, 9,  26, 80, 43, 38,
                58, 70, 77, 1,  85, 19, 17, 50, 28, 53, 13, 81, 45, 82, 6,  59, 83, 16, 15, 44,
                91, 41, 72, 60, 79, 52, 20, 10, 31, 54, 37, 95, 14, 71, 96, 98, 97, 2,  64, 66,
                42, 22, 35, 86, 24, 34, 87, 21, 99, 0,  88, 27, 18, 94, 11, 12, 47, 25, 30, 46,
                62, 69, 36, 61, 7,  63, 75, 5,  32, 4,  51, 48, 73, 93, 39, 67, 29, 49, 57, 33});
  CHECK(clprompt::numpy_permutation(10, 0) == Indices{2, 8, 4, 9, 1, 6, 7, 3, 0, 5});
  CHECK(clprompt::numpy_permutation(7, 42) == Indices{0, 1, 5, 2, 4, 3, 6});
  CHECK(clprompt::numpy_permutation(20, 4294967295u) ==
        Indices{11, 17, 19, 15, 1, 5, 8, 16, 13, 18, 14, 9, 10, 6, 0, 4, 7, 12, 2, 3});
  const Indices p200 = clprompt::numpy_permutation(200, 1993);
  CHECK(Indices(p200.begin(), p200.begin() + 10) == Indices{168, 136, 51, 9, 183, 101, 171, 99, 42, 159});
  CHECK(clprompt::numpy_permutation(1, 1) == Indices{0});
  CHECK(clprompt::numpy_permutation(0, 1).empty());
}

TEST_CASE("a scenario splits classes into disjoint tasks with incremental labels", "[data][scenario]") {
  const auto train = numbered_dataset(10, 6);
  const auto test = numbered_dataset(10, 3);
  const clprompt::Scenario s(train, test, {.num_tasks = 5}, 1993);
  REQUIRE(s.num_tasks() == 5);
  CHECK(s.num_classes() == 10);
  CHECK(s.class_order() == clprompt::numpy_permutation(10, 1993));
  for (int64_t c = 0; c < 10; ++c) CHECK(s.class_order()[static_cast<size_t>(s.label_map()[static_cast<size_t>(c)])] == c);
  CHECK(s.class_names().front() == std::to_string(s.class_order().front()));

  std::set<int64_t> classes, train_seen, test_seen;
  for (int64_t t = 0; t < s.num_tasks(); ++t) {
    const clprompt::Task& task = s.task(t);
    CHECK(task.index == t);
    CHECK(task.class_begin == 2 * t);
    CHECK(task.num_classes() == 2);
    CHECK(task.train_indices.size() == 12);
    CHECK(task.test_indices.size() == 6);
    CHECK(std::is_sorted(task.train_indices.begin(), task.train_indices.end()));
    for (int64_t i : task.train_indices) {
      const int64_t label = s.label_map()[static_cast<size_t>(train->label(i))];
      CHECK((label >= task.class_begin && label < task.class_end));
      CHECK(train_seen.insert(i).second);
      classes.insert(train->label(i));
    }
    for (int64_t i : task.test_indices) {
      const int64_t label = s.label_map()[static_cast<size_t>(test->label(i))];
      CHECK((label >= task.class_begin && label < task.class_end));
      CHECK(test_seen.insert(i).second);
    }
  }
  CHECK(classes.size() == 10);
  CHECK(train_seen.size() == 60);
  CHECK(test_seen.size() == 30);
  CHECK(s.seen_test_indices(1).size() == 12);
  CHECK(s.seen_test_indices(4).size() == 30);

  // An initial task, no shuffling, explicit orders.
  const clprompt::Scenario uneven(train, test, {.num_tasks = 4, .initial_classes = 4, .order = clprompt::ClassOrderRule::natural}, 0);
  CHECK(uneven.task(0).class_end == 4);
  CHECK(uneven.task(3).class_begin == 8);
  CHECK(uneven.task(3).class_end == 10);
  CHECK(uneven.class_order() == Indices{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  const Indices explicit_order{9, 8, 7, 6, 5, 4, 3, 2, 1, 0};
  const clprompt::Scenario ordered(train, test, {.num_tasks = 2, .class_order = explicit_order}, 5);
  CHECK(ordered.class_order() == explicit_order);
  CHECK(ordered.label_map()[9] == 0);
  CHECK(ordered.class_names().front() == "9");
}

TEST_CASE("class orders follow each reference's rule", "[data][scenario][class_order]") {
  const auto train = numbered_dataset(10, 2), test = numbered_dataset(10, 1);
  auto order = [&](clprompt::ClassOrderRule rule, int64_t order_seed, uint64_t seed = 1993) {
    clprompt::ScenarioOptions o;
    o.num_tasks = 5;
    o.order = rule;
    o.order_seed = order_seed;
    return clprompt::Scenario(train, test, o, seed).class_order();
  };
  using Rule = clprompt::ClassOrderRule;
  CHECK(order(Rule::natural, -1) == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  // CODA-Prompt's trials 1 and 2: Python 3.11 prints these for
  // random.seed(s); l = list(range(10)); random.shuffle(l).
  CHECK(order(Rule::python_shuffle, 1) == std::vector<int64_t>{6, 8, 9, 7, 5, 3, 0, 4, 1, 2});
  CHECK(order(Rule::python_shuffle, 2) == std::vector<int64_t>{5, 9, 3, 4, 6, 7, 2, 8, 1, 0});
  // SLCA: label i is class perm[i]; mammoth reads the same permutation the other way.
  const auto perm = clprompt::numpy_permutation(10, 1993);
  CHECK(order(Rule::numpy, -1) == perm);
  CHECK(order(Rule::numpy, 1993, 7) == perm);  // an order seed of its own, independent of the run's
  const auto inverse = order(Rule::numpy_inverse, 1993);
  for (int64_t c = 0; c < 10; ++c) CHECK(inverse[static_cast<size_t>(perm[static_cast<size_t>(c)])] == c);
}

TEST_CASE("classes_per_task puts the remainder in the last task, as SLCA splits Cars-196", "[data][scenario]") {
  const auto train = numbered_dataset(26, 2), test = numbered_dataset(26, 1);
  clprompt::ScenarioOptions o;
  o.num_tasks = 3;
  o.classes_per_task = 10;
  const clprompt::Scenario s(train, test, o, 1);
  CHECK(s.task(0).num_classes() == 10);
  CHECK(s.task(1).num_classes() == 10);
  CHECK(s.task(2).num_classes() == 6);
  o.num_tasks = 4;  // 10 + 10 + 10 would leave -4 for the last
  CHECK_THROWS_WITH(clprompt::Scenario(train, test, o, 1), Catch::Contains("classes_per_task"));
}

TEST_CASE("one seed fixes the class order and the per-class subsample", "[data][scenario]") {
  const auto train = numbered_dataset(10, 20);
  const auto test = numbered_dataset(10, 10);
  const clprompt::ScenarioOptions options{.num_tasks = 2, .train_per_class = 5, .test_per_class = 3};
  const clprompt::Scenario a(train, test, options, 7), b(train, test, options, 7), c(train, test, options, 8);
  std::vector<int64_t> per_class(10, 0);
  for (int64_t t = 0; t < 2; ++t) {
    CHECK(a.task(t).train_indices == b.task(t).train_indices);
    CHECK(a.task(t).test_indices == b.task(t).test_indices);
    CHECK(a.task(t).train_indices.size() == 25);
    CHECK(a.task(t).test_indices.size() == 15);
    for (int64_t i : a.task(t).train_indices) ++per_class[static_cast<size_t>(train->label(i))];
  }
  CHECK(per_class == std::vector<int64_t>(10, 5));
  CHECK(a.class_order() == b.class_order());
  CHECK(a.class_order() != c.class_order());
  CHECK(a.seen_test_indices(1) != c.seen_test_indices(1));
  // More requested than present keeps them all.
  const clprompt::Scenario all(train, test, {.num_tasks = 1, .train_per_class = 50}, 7);
  CHECK(all.task(0).train_indices.size() == 200);
}

TEST_CASE("a validation split is carved from the training set, disjoint from training", "[data][scenario]") {
  const auto train = numbered_dataset(10, 20);
  const auto test = numbered_dataset(10, 10);
  const clprompt::ScenarioOptions options{.num_tasks = 2, .train_per_class = 12, .validation_per_class = 4};
  const clprompt::Scenario s(train, test, options, 7);
  CHECK(&s.test_set() == train.get());  // evaluation reads the held-out training images
  std::vector<int64_t> held_per_class(10, 0), train_per_class(10, 0);
  for (int64_t t = 0; t < 2; ++t) {
    const auto& task = s.task(t);
    for (int64_t i : task.test_indices) ++held_per_class[static_cast<size_t>(train->label(i))];
    for (int64_t i : task.train_indices) ++train_per_class[static_cast<size_t>(train->label(i))];
    for (int64_t i : task.train_indices)
      CHECK(std::find(task.test_indices.begin(), task.test_indices.end(), i) == task.test_indices.end());
  }
  CHECK(held_per_class == std::vector<int64_t>(10, 4));
  CHECK(train_per_class == std::vector<int64_t>(10, 12));
  const clprompt::Scenario again(train, test, options, 7);
  CHECK(again.seen_test_indices(1) == s.seen_test_indices(1));
  CHECK_THAT(clprompt::test::error_message<clprompt::ConfigError>([&] {
               (void)clprompt::Scenario(train, test, {.num_tasks = 2, .validation_per_class = 20}, 7, "scenario");
             }),
             Catch::Contains("'scenario.validation_per_class'") && Catch::Contains("leaves none"));
}

TEST_CASE("scenario options that do not fit throw ConfigError naming the field", "[data][scenario]") {
  const auto train = numbered_dataset(10, 2);
  const auto test = numbered_dataset(10, 1);
  auto make = [&](clprompt::ScenarioOptions o, uint64_t seed = 1) {
    return clprompt::test::error_message<clprompt::ConfigError>([&] { (void)clprompt::Scenario(train, test, o, seed, "data.scenario"); });
  };
  CHECK_THAT(make({.num_tasks = 3}), Catch::Contains("'data.scenario.num_tasks'") && Catch::Contains("10 classes"));
  CHECK_THAT(make({.num_tasks = 0}), Catch::Contains("'data.scenario.num_tasks'"));
  CHECK_THAT(make({.num_tasks = 4, .initial_classes = 5}), Catch::Contains("'data.scenario.initial_classes'"));
  CHECK_THAT(make({.num_tasks = 2, .class_order = {0, 1, 2}}), Catch::Contains("'data.scenario.class_order'"));
  CHECK_THAT(make({.num_tasks = 2, .class_order = {0, 1, 2, 3, 4, 5, 6, 7, 8, 8}}),
             Catch::Contains("'data.scenario.class_order[9]'") && Catch::Contains("repeated"));
  CHECK_THAT(make({.num_tasks = 2}, uint64_t{1} << 32), Catch::Contains("'seed'"));
  CHECK_THAT(make({.train_per_class = -1}), Catch::Contains("'data.scenario.train_per_class'"));
  CHECK_THAT(clprompt::test::error_message<clprompt::ConfigError>([] {
               (void)clprompt::options_from_json<clprompt::ScenarioOptions>(
                   clprompt::Json::parse(R"({"num_tasks": 10, "test_per_class": -2})"), "scenario");
             }),
             Catch::Contains("'scenario.test_per_class'"));
  CHECK_THROWS_AS(clprompt::Scenario(train, numbered_dataset(5, 1), {}, 1), clprompt::ShapeError);
}

namespace {
at::Tensor plain_images_of_two_sizes() {
  at::Generator gen = clprompt::make_generator(1, 0);
  const std::vector<at::Tensor> images{at::zeros({3, 4, 4}, at::kByte), at::zeros({3, 5, 5}, at::kByte)};
  return clprompt::Transform({.mean = {}, .std = {}})(images, false, gen);  // no size: they cannot be stacked
}
}  // namespace

TEST_CASE("transforms produce normalised 3-channel float batches", "[data][transforms]") {
  at::Generator gen = clprompt::make_generator(1, 0);
  const at::Tensor white = at::full({2, 3, 8, 8}, 255, at::kByte);

  // A square resize to `size`.
  const clprompt::Transform t({.size = 12});
  CHECK(t.output_size(8) == 12);
  const at::Tensor out = t(white, false, gen);
  CHECK(out.scalar_type() == at::kFloat);
  CHECK(out.sizes() == at::IntArrayRef{2, 3, 12, 12});
  // ImageNet normalisation of white: (1 - mean) / std per channel.
  for (int64_t c = 0; c < 3; ++c) {
    const double expected = (1.0 - t.options().mean[static_cast<size_t>(c)]) / t.options().std[static_cast<size_t>(c)];
    CHECK(out[0][c].sub(expected).abs().max().item<double>() < 1e-5);
  }

  // Grayscale expands to three identical channels; without normalisation values are x / 255.
  const at::Tensor gray = at::arange(2 * 16, at::kLong).to(at::kByte).view({2, 1, 4, 4});
  const clprompt::Transform plain({.mean = {}, .std = {}});
  const at::Tensor g = plain(gray, true, gen);
  CHECK(g.sizes() == at::IntArrayRef{2, 3, 4, 4});
  CHECK(at::equal(g.select(1, 0), g.select(1, 2)));
  CHECK(at::allclose(g.select(1, 1), gray.squeeze(1).to(at::kFloat) / 255));
  CHECK(plain.output_size(4) == 4);

  // Evaluation: Resize(shorter side) then CenterCrop, no randomness, images of any size.
  const at::Tensor wide = (at::arange(3 * 10 * 16, at::kLong) % 251).to(at::kByte).view({3, 10, 16});
  const clprompt::Transform test({.size = 6, .test_resize = 8, .test_interpolation = clprompt::Interpolation::bicubic,
                                  .mean = {}, .std = {}});
  const at::Tensor e = test(std::vector<at::Tensor>{wide}, false, gen);
  const at::Tensor expected =
      clprompt::center_crop(clprompt::resize_shorter_side(wide, 8, clprompt::Interpolation::bicubic), 6, 6);
  CHECK(at::equal(e[0], expected.to(at::kFloat) / 255));
  at::Generator other = clprompt::make_generator(2, 0);
  CHECK(at::equal(e, test(std::vector<at::Tensor>{wide}, false, other)));
}

TEST_CASE("the training pipeline draws crop, flip and jitter per image as torchvision does", "[data][transforms]") {
  // L2P's pipeline on two images of different sizes: RandomResizedCrop(6, scale (0.05, 1)) then
  // RandomHorizontalFlip, against the image operations called in torchvision's order on a
  // generator in the same state.
  const at::Tensor a = (at::arange(3 * 9 * 12, at::kLong) % 253).to(at::kByte).view({3, 9, 12});
  const at::Tensor b = (at::arange(3 * 14 * 10, at::kLong) * 7 % 255).to(at::kByte).view({3, 14, 10});
  clprompt::TransformOptions l2p{.size = 6, .train_crop = clprompt::TrainCrop::random_resized,
                                 .random_resized_crop = clprompt::RandomResizedCropOptions::l2p(),
                                 .horizontal_flip = true, .mean = {}, .std = {}};
  const clprompt::Transform transform(l2p);
  at::Generator g1 = clprompt::make_generator(5, 0), g2 = clprompt::make_generator(5, 0);
  const at::Tensor out = transform(std::vector<at::Tensor>{a, b}, true, g1);
  clprompt::TorchGeneratorSource source(g2);
  for (int64_t i = 0; i < 2; ++i) {
    auto x = clprompt::random_resized_crop(i == 0 ? a : b, 6, l2p.random_resized_crop, clprompt::Interpolation::bilinear,
                                           source);
    if (source.uniform(0.0f, 1.0f) < 0.5f) x = x.flip({2});
    CHECK(at::equal(out[i], x.to(at::kFloat) / 255));
  }

  // SLCA's CIFAR pipeline adds ColorJitter(brightness = 63/255) after the flip.
  clprompt::TransformOptions slca = l2p;
  slca.random_resized_crop = {};
  slca.train_interpolation = clprompt::Interpolation::bicubic;
  slca.brightness = 63.0 / 255.0;
  at::Generator g3 = clprompt::make_generator(6, 0), g4 = clprompt::make_generator(6, 0);
  const at::Tensor jittered = clprompt::Transform(slca)(std::vector<at::Tensor>{a}, true, g3);
  clprompt::TorchGeneratorSource s4(g4);
  auto y = clprompt::random_resized_crop(a, 6, slca.random_resized_crop, clprompt::Interpolation::bicubic, s4);
  if (s4.uniform(0.0f, 1.0f) < 0.5f) y = y.flip({2});
  y = clprompt::adjust_brightness(y, clprompt::color_jitter_brightness(63.0 / 255.0, s4));
  CHECK(at::equal(jittered[0], y.to(at::kFloat) / 255));
}

TEST_CASE("random crops and flips are per sample and seeded", "[data][transforms]") {
  const int64_t batch = 64;
  const at::Tensor ramp = (at::arange(64, at::kLong) + 1).to(at::kByte).view({1, 1, 8, 8}).expand({batch, 3, 8, 8}).contiguous();
  const at::Tensor base = ramp[0][0].to(at::kFloat) / 255;

  const clprompt::Transform flip({.horizontal_flip = true, .mean = {}, .std = {}});
  at::Generator gen = clprompt::make_generator(3, 0);
  const at::Tensor f = flip(ramp, true, gen);
  int64_t flipped = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const bool same = at::equal(f[b][1], base), mirrored = at::equal(f[b][1], base.flip({1}));
    CHECK((same || mirrored));
    flipped += mirrored ? 1 : 0;
  }
  CHECK(flipped > 10);
  CHECK(flipped < 54);
  CHECK(at::equal(ramp, (at::arange(64, at::kLong) + 1).to(at::kByte).view({1, 1, 8, 8}).expand({batch, 3, 8, 8})));
  CHECK(at::equal(flip(ramp, false, gen)[0][0], base));  // no flip at test time

  // CIFAR-style: pad by 2, crop 8 -> a window of the zero-padded image.
  const clprompt::Transform crop({.size = 8, .train_crop = clprompt::TrainCrop::random, .crop_padding = 2, .mean = {}, .std = {}});
  at::Generator g1 = clprompt::make_generator(4, 0), g2 = clprompt::make_generator(4, 0);
  const at::Tensor r = crop(ramp, true, g1);
  CHECK(at::equal(r, crop(ramp, true, g2)));
  const at::Tensor padded = at::constant_pad_nd(base, {2, 2, 2, 2}, 0);
  std::set<std::pair<int64_t, int64_t>> offsets;
  for (int64_t b = 0; b < batch; ++b) {
    bool found = false;
    for (int64_t y = 0; y <= 4 && !found; ++y)
      for (int64_t x = 0; x <= 4 && !found; ++x)
        if (at::equal(r[b][0], padded.slice(0, y, y + 8).slice(1, x, x + 8))) {
          found = true;
          offsets.emplace(y, x);
        }
    CHECK(found);
  }
  CHECK(offsets.size() > 5);

  CHECK_THROWS_AS(clprompt::Transform({.train_crop = clprompt::TrainCrop::random_resized}), clprompt::ConfigError);
  CHECK_THROWS_AS(clprompt::Transform({.crop_padding = 2}), clprompt::ConfigError);
  CHECK_THROWS_AS(clprompt::Transform({.mean = {0.5, 0.5}, .std = {1, 1}}), clprompt::ConfigError);
  CHECK_THROWS_AS(clprompt::Transform({.std = {1, 0, 1}}), clprompt::ConfigError);
  CHECK_THROWS_AS(flip(ramp.to(at::kFloat), true, gen), clprompt::ShapeError);
  CHECK_THROWS_AS(clprompt::Transform({.size = 9, .train_crop = clprompt::TrainCrop::random})(ramp, true, gen),
                  clprompt::ShapeError);
  CHECK_THROWS_AS(plain_images_of_two_sizes(), clprompt::ShapeError);
}

TEST_CASE("the loader visits each index once per epoch with remapped labels", "[data][loader]") {
  const auto data = numbered_dataset(4, 10);
  const Indices subset{3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 35, 37, 39, 0, 2, 4, 6};
  const Indices label_map{3, 2, 1, 0};
  const clprompt::Transform plain({.mean = {}, .std = {}});
  const clprompt::Loader train(*data, subset, label_map, plain, {.batch_size = 5, .training = true, .seed = 42});
  CHECK(train.size() == 23);
  CHECK(train.num_batches() == 5);

  std::vector<Indices> orders;
  for (int64_t e = 0; e < 2; ++e) {
    Indices seen;
    int64_t batches = 0;
    for (const clprompt::Batch& b : train.epoch(e)) {
      CHECK(b.images.sizes() == at::IntArrayRef{static_cast<int64_t>(b.indices.size()), 3, 2, 2});
      CHECK(b.labels.size(0) == static_cast<int64_t>(b.indices.size()));
      for (size_t k = 0; k < b.indices.size(); ++k) {
        const int64_t i = b.indices[k];
        CHECK(b.labels[static_cast<int64_t>(k)].item<int64_t>() == label_map[static_cast<size_t>(data->label(i))]);
        CHECK(b.images[static_cast<int64_t>(k)][2][1][1].item<float>() == Approx(static_cast<double>(i) / 255));
      }
      seen.insert(seen.end(), b.indices.begin(), b.indices.end());
      ++batches;
    }
    CHECK(batches == 5);
    CHECK(seen == train.order(e));
    Indices sorted = seen, expected = subset;
    std::sort(sorted.begin(), sorted.end());
    std::sort(expected.begin(), expected.end());
    CHECK(sorted == expected);
    orders.push_back(seen);
  }
  CHECK(orders[0] != orders[1]);

  // Reproducible per seed and independent of what was consumed before.
  const clprompt::Loader again(*data, subset, label_map, plain, {.batch_size = 5, .training = true, .seed = 42});
  CHECK(again.order(1) == orders[1]);
  CHECK(at::equal(again.batch(1, 4).images, train.batch(1, 4).images));
  CHECK(clprompt::Loader(*data, subset, label_map, plain, {.batch_size = 5, .training = true, .seed = 43}).order(0) != orders[0]);

  // Test mode: the given order, a partial last batch.
  const clprompt::Loader test(*data, subset, label_map, plain, {.batch_size = 10, .training = false, .seed = 42});
  CHECK(test.order(0) == subset);
  CHECK(test.order(3) == subset);
  Indices seen;
  for (const auto& b : test.epoch(0)) seen.insert(seen.end(), b.indices.begin(), b.indices.end());
  CHECK(seen == subset);
  CHECK(test.batch(0, 2).indices.size() == 3);

  // Leaving early waits for the batch in flight; an empty subset has no batches.
  for (const auto& b : train.epoch(5)) {
    CHECK(b.indices.size() == 5);
    break;
  }
  int64_t none = 0;
  for (const auto& b : clprompt::Loader(*data, {}, label_map, plain, {.batch_size = 5, .training = true, .seed = 1}).epoch(0)) none += b.labels.size(0);
  CHECK(none == 0);

  CHECK_THROWS_AS(clprompt::Loader(*data, subset, label_map, plain, {.batch_size = 0, .training = true, .seed = 1}), clprompt::ConfigError);
  CHECK_THROWS_AS(clprompt::Loader(*data, {40}, label_map, plain, {.batch_size = 5, .training = true, .seed = 1}), clprompt::ShapeError);
  CHECK_THROWS_AS(clprompt::Loader(*data, subset, {0, 1}, plain, {.batch_size = 5, .training = true, .seed = 1}), clprompt::ShapeError);
}

TEST_CASE("a worker exception reaches the consumer", "[data][loader]") {
  const FailingDataset data;
  Indices all(20);
  std::iota(all.begin(), all.end(), int64_t{0});
  const clprompt::Loader loader(data, all, {0, 1}, clprompt::Transform{}, {.batch_size = 4, .training = false, .seed = 0});
  int64_t batches = 0;
  auto run = [&] {
    for (const auto& b : loader.epoch(0)) {
      (void)b;
      ++batches;
    }
  };
  CHECK_THROWS_WITH(run(), Catch::Contains("image13.jpg"));
  CHECK(batches == 3);  // batches 0-2 arrived, batch 3 holds image 13
  auto epoch = loader.epoch(1);
  (void)epoch.begin();
  CHECK_THROWS_AS(epoch.begin(), clprompt::Error);
}
