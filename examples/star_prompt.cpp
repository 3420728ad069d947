// STAR-Prompt on Split Fashion-MNIST:   example_star_prompt [vit.safetensors] [clip-directory]
// The clip directory holds CLIP weights and tokenizer, e.g. a download of Hugging Face's
// openai/clip-vit-base-patch16 (model.safetensors, vocab.json, merges.txt). Without it, the
// second level runs on class-mean keys of the backbone: a fallback, not STAR-Prompt's numbers.
#include <clprompt/clip/clip_loader.hpp>
#include <clprompt/methods/star_prompt.hpp>

#include "example_common.hpp"

int main(int argc, char** argv) try {
  auto vit = example::small_vit(argc > 2 ? 2 : argc, argv);
  auto scenario = example::split_fashion_mnist();
  auto train = clprompt::star_prompt_train_options();  // Adam 1e-3, mammoth's cosine schedule
  train.batch_size = 64;                                // its lr is not batch-scaled in the reference
  train.epochs = 1;
  if (argc > 2) {
    auto clip = clprompt::load_clip_directory(argv[2]);
    clprompt::ClipPrototypeOptions level1;  // SGD 0.002, ortho 30, Gaussian replay
    level1.epochs = train.epochs;            // the reference's first_stage_epochs = n_epochs
    auto model = clprompt::make_star_prompt(vit, clip.model, clip.tokenizer, scenario.class_names(), {}, level1);
    fmt::print("prototype source: {}\n", model->selector().source().description());
    return example::run(*model, scenario, train, "star-prompt");
  }
  auto model = clprompt::make_star_prompt_fallback(vit);
  fmt::print("prototype source: {}\n", model->selector().source().description());
  return example::run(*model, scenario, train, "star-prompt-fallback");
} catch (const clprompt::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
