// L2P on Split Fashion-MNIST:   example_l2p [vit.safetensors]
#include <clprompt/methods/l2p.hpp>

#include "example_common.hpp"

int main(int argc, char** argv) try {
  auto vit = example::small_vit(argc, argv);
  auto model = clprompt::make_l2p(vit, clprompt::KeyQueryPool::Options{});  // pool 10, length 5, top-5
  return example::run(*model, example::split_fashion_mnist(), example::shortened(clprompt::l2p_train_options()), "l2p");
} catch (const clprompt::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
