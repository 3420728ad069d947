#pragma once
// What every example shares: the embedded default's data (Split Fashion-MNIST from Debian's
// dataset-fashion-mnist, 5 tasks x 2 classes) and its small ViT, optionally initialised from a
// timm safetensors file given on the command line. Kept out of the library on purpose: this is
// what a user's own program would write.
#include <memory>
#include <string>

#include <fmt/format.h>

#include <clprompt/backbone/timm_loader.hpp>
#include <clprompt/core/seed.hpp>
#include <clprompt/core/memory.hpp>
#include <clprompt/core/threads.hpp>
#include <clprompt/data/idx.hpp>
#include <clprompt/data/scenario.hpp>
#include <clprompt/learn/learner.hpp>
#include <clprompt/run/experiment.hpp>

namespace example {

constexpr uint64_t kSeed = 1993;

inline std::shared_ptr<clprompt::VisionTransformer> small_vit(int argc, char** argv) {
  clprompt::configure_threads();
  clprompt::keep_freed_memory();
  clprompt::seed_everything(kSeed);
  auto vit = std::make_shared<clprompt::VisionTransformer>(clprompt::embedded_default().backbone);
  if (argc > 1) clprompt::load_timm_vit(*vit, argv[1]);
  else fmt::print("note: randomly initialised backbone (pass a timm ViT safetensors file to load one)\n");
  return vit;
}

inline clprompt::Scenario split_fashion_mnist(int64_t train_per_class = 300, int64_t test_per_class = 200) {
  const std::string root = "/usr/share/datasets/fashion-mnist";
  auto train = std::make_shared<clprompt::TensorDataset>(clprompt::load_fashion_mnist(root, clprompt::Split::train));
  auto test = std::make_shared<clprompt::TensorDataset>(clprompt::load_fashion_mnist(root, clprompt::Split::test));
  return clprompt::Scenario(
      train, test, {.num_tasks = 5, .train_per_class = train_per_class, .test_per_class = test_per_class}, kSeed);
}

/// Published recipe, shortened to one epoch with batch 64 so that the example runs in a minute.
inline clprompt::TrainOptions shortened(clprompt::TrainOptions published) {
  published.optim.lr *= 64.0 / static_cast<double>(published.batch_size);
  published.batch_size = 64;
  published.epochs = 1;
  return published;
}

template <class Model>
int run(Model& model, const clprompt::Scenario& scenario, const clprompt::TrainOptions& train, const char* name) {
  clprompt::Learner learner(model, scenario, train, clprompt::TransformOptions{}, kSeed);
  auto results = learner.run();
  results.method = name;
  fmt::print("{}", clprompt::format_summary(results));
  return 0;
}

}  // namespace example
