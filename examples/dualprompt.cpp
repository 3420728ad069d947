// DualPrompt on Split Fashion-MNIST:   example_dualprompt [vit.safetensors]
#include <clprompt/methods/dualprompt.hpp>

#include "example_common.hpp"

int main(int argc, char** argv) try {
  auto vit = example::small_vit(argc, argv);
  auto model = clprompt::make_dualprompt(vit, clprompt::DualPrompt::Options{});  // G: layers 0-1, E: layers 2-4
  return example::run(*model, example::split_fashion_mnist(), example::shortened(clprompt::dualprompt_train_options()),
                      "dualprompt");
} catch (const clprompt::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
