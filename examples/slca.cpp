// SLCA on Split Fashion-MNIST:   example_slca [vit.safetensors]
// Slow learner (backbone at lr x 0.01), per-task linear heads, classifier alignment after each
// task on features sampled from the class statistics, with logit normalisation.
#include <clprompt/methods/slca.hpp>

#include "example_common.hpp"

int main(int argc, char** argv) try {
  auto vit = example::small_vit(argc, argv);
  auto model = clprompt::make_slca(vit, clprompt::SLCAHeadOptions{});  // CA: 5 epochs, 256 samples per class, tau 0.1
  // SLCA's learning rates are not scaled with the batch: shorten epochs and batch only.
  auto train = clprompt::slca_train_options();
  train.batch_size = 64;
  train.epochs = 1;
  return example::run(*model, example::split_fashion_mnist(), train, "slca");
} catch (const clprompt::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
