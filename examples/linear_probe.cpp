// A linear probe (frozen ViT, class-incremental linear head) composed with the library's C++
// API on Split Fashion-MNIST:   example_linear_probe [vit.safetensors]
#include <clprompt/methods/linear_probe.hpp>

#include "example_common.hpp"

int main(int argc, char** argv) try {
  auto vit = example::small_vit(argc, argv);
  using Method = clprompt::ContinualModel<clprompt::VisionTransformer, clprompt::NoPrompts, clprompt::LinearHead>;
  Method model(vit, std::make_shared<clprompt::NoPrompts>(),
               std::make_shared<clprompt::LinearHead>(clprompt::LinearHeadOptions{}, clprompt::dims_of(*vit)));
  return example::run(model, example::split_fashion_mnist(), {.optim = {.lr = 1e-2}, .batch_size = 64}, "linear-probe");
} catch (const clprompt::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
