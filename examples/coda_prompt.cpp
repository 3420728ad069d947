// CODA-Prompt on Split Fashion-MNIST:   example_coda_prompt [vit.safetensors]
#include <clprompt/methods/coda_prompt.hpp>

#include "example_common.hpp"

int main(int argc, char** argv) try {
  auto vit = example::small_vit(argc, argv);
  auto scenario = example::split_fashion_mnist();
  clprompt::AttentionDecomposed::Options options;  // 100 components of length 8, layers 0-4
  options.num_tasks = scenario.num_tasks();         // 20 new components per task
  auto model = clprompt::make_coda_prompt(vit, options);
  auto train = clprompt::coda_prompt_train_options();
  train.batch_size = 64;  // its lr is not batch-scaled in the reference
  train.epochs = 1;
  return example::run(*model, scenario, train, "coda-prompt");
} catch (const clprompt::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
