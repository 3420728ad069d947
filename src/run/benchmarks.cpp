// Compiled part of include/clprompt/run/benchmarks.hpp.
#include "clprompt/run/benchmarks.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "clprompt/core/error.hpp"

namespace clprompt {

namespace {

Benchmark make(std::string name, std::string description, std::string dataset, int64_t tasks) {
  Benchmark b;
  b.name = std::move(name);
  b.description = std::move(description);
  b.data.dataset = std::move(dataset);
  b.data.root = "";
  b.scenario.num_tasks = tasks;
  b.scenario.order = ClassOrderRule::natural;
  b.backbone = ViTOptions::base_patch16_224();
  return b;
}

}  // namespace

const std::vector<Benchmark>& benchmarks() {
  static const std::vector<Benchmark> all = [] {
    std::vector<Benchmark> v;
    v.push_back(make("split-cifar100", "CIFAR-100 (torchvision's download or the binary version), 10 tasks x 10 classes",
                     "cifar100", 10));
    auto imagenet_r = [&](const char* name, int64_t tasks) {
      auto b = make(name, fmt::format("ImageNet-R (imagenet-r/<wnid>/*.jpg), {} tasks x {} classes", tasks, 200 / tasks),
                    "imagenet-r", tasks);
      // CODA-Prompt's and mammoth's split files by default; the methods' presets say which split
      // their reference uses.
      b.data.imagenet_r.split = ImageNetRSplit::split_lists;
      return b;
    };
    v.push_back(imagenet_r("split-imagenet-r", 10));
    v.push_back(imagenet_r("split-imagenet-r-5", 5));
    v.push_back(imagenet_r("split-imagenet-r-20", 20));
    auto cub = make("split-cub200", "CUB-200-2011 as SLCA's split_cub.py writes it (root/train, root/val), 10 x 20",
                    "image-folder", 10);
    cub.data.test_folder = "val";
    cub.data.image_folder.decode_size = 0;
    v.push_back(cub);
    auto cars = make("split-cars196", "Stanford Cars as SLCA's split_car.py writes it (root/train, root/val), 9 x 20 + 16",
                     "image-folder", 10);
    cars.data.test_folder = "val";
    cars.data.image_folder.decode_size = 0;
    cars.scenario.classes_per_task = 20;
    v.push_back(cars);
    return v;
  }();
  return all;
}

const Benchmark& find_benchmark(const std::string& name, const std::string& field) {
  const auto& all = benchmarks();
  const auto it = std::find_if(all.begin(), all.end(), [&](const Benchmark& b) { return b.name == name; });
  if (it == all.end()) {
    std::vector<std::string> names;
    for (const auto& b : all) names.push_back(b.name);
    throw ConfigError(field, fmt::format("unknown benchmark '{}'; available: {}", name, fmt::join(names, ", ")));
  }
  return *it;
}

}  // namespace clprompt
