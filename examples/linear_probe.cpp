// A continual learner composed in C++ (the library's API, without the CLI): a linear probe on a
// frozen ViT over Split Fashion-MNIST. Pass a timm ViT safetensors file to start from
// pre-trained weights:   linear_probe [vit.safetensors]
#include <fmt/format.h>

#include <clprompt/backbone/timm_loader.hpp>
#include <clprompt/core/seed.hpp>
#include <clprompt/core/threads.hpp>
#include <clprompt/data/idx.hpp>
#include <clprompt/learn/experiment.hpp>
#include <clprompt/learn/learner.hpp>
#include <clprompt/methods/baselines.hpp>

int main(int argc, char** argv) try {
  clprompt::configure_threads();
  clprompt::seed_everything(1993);

  clprompt::ViTOptions vit_options{.image_size = 28, .patch_size = 4, .embed_dim = 128, .depth = 6, .num_heads = 4};
  auto vit = std::make_shared<clprompt::VisionTransformer>(vit_options);
  if (argc > 1) clprompt::load_timm_vit(*vit, argv[1]);

  using Method = clprompt::ContinualModel<clprompt::VisionTransformer, clprompt::NoPrompts, clprompt::LinearHead>;
  Method model(vit, std::make_shared<clprompt::NoPrompts>(),
               std::make_shared<clprompt::LinearHead>(clprompt::LinearHeadOptions{}, clprompt::dims_of(*vit)));

  const std::string root = "/usr/share/datasets/fashion-mnist";
  auto train = std::make_shared<clprompt::TensorDataset>(clprompt::load_fashion_mnist(root, clprompt::Split::train));
  auto test = std::make_shared<clprompt::TensorDataset>(clprompt::load_fashion_mnist(root, clprompt::Split::test));
  clprompt::Scenario scenario(train, test, {.num_tasks = 5, .train_per_class = 500, .test_per_class = 500}, 1993);

  clprompt::Learner learner(model, scenario, {.lr = 1e-2, .epochs = 1}, {}, 1993);
  auto results = learner.run();
  results.method = "linear-probe (example)";
  fmt::print("{}", clprompt::format_summary(results));
  return 0;
} catch (const clprompt::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
