// SimpleCIL and APER on Split Fashion-MNIST:   example_aper [vit.safetensors]
// SimpleCIL: the frozen ViT's class-mean prototypes, cosine classification. APER: the ViT
// fine-tuned on the first task only, prototypes of the pre-trained and adapted features together.
#include <clprompt/methods/aper.hpp>
#include <clprompt/methods/simplecil.hpp>

#include "example_common.hpp"

int main(int argc, char** argv) try {
  const auto scenario = example::split_fashion_mnist();
  auto simplecil = clprompt::make_simplecil(example::small_vit(argc, argv));
  clprompt::TrainOptions nothing;
  nothing.epochs = 0;
  if (const int status = example::run(*simplecil, scenario, nothing, "simplecil"); status != 0) return status;

  auto aper = clprompt::make_aper(example::small_vit(argc, argv));
  auto train = clprompt::aper_train_options();  // SGD 0.01, cosine, first task only
  train.batch_size = 64;
  train.epochs = 1;
  return example::run(*aper, scenario, train, "aper");
} catch (const clprompt::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
