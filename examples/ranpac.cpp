// RanPAC on Split Fashion-MNIST:   example_ranpac [vit.safetensors]
// Frozen ViT features, a fixed random projection to M dimensions with ReLU, and a ridge-regression
// classifier solved in closed form after each task from Gram statistics of every task so far.
#include <clprompt/methods/ranpac.hpp>

#include "example_common.hpp"

int main(int argc, char** argv) try {
  auto vit = example::small_vit(argc, argv);
  clprompt::RanPACHeadOptions head;
  head.ranpac.projection_dim = 2048;  // published: 10 000 for 768-d features; this ViT is 128-d
  auto model = clprompt::make_ranpac(vit, head);
  auto train = clprompt::ranpac_train_options();  // nothing trains ("No Phase 1")
  return example::run(*model, example::split_fashion_mnist(), train, "ranpac");
} catch (const clprompt::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
