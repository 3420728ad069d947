// Builds against the installed package and runs one training step of a fine-tuning model.
#include <cstdio>

#include <clprompt/methods/linear_probe.hpp>

int main() {
  clprompt::ViTOptions vit;
  vit.image_size = 16;
  vit.patch_size = 8;
  vit.embed_dim = 32;
  vit.depth = 1;
  vit.num_heads = 2;
  auto model = clprompt::make_finetune(std::make_shared<clprompt::VisionTransformer>(vit));
  const auto ctx = clprompt::TaskContext::for_task(0, 1, {3}, /*training=*/true);
  model->begin_task(ctx);
  auto images = at::randn({4, 3, 16, 16});
  auto loss = model->loss(model->forward(images, ctx), at::tensor({0, 1, 2, 0}, at::kLong), ctx);
  loss.backward();
  std::printf("consumer ok: loss %.4f, %lld predictions\n", loss.item<double>(),
              static_cast<long long>(model->predict(images).numel()));
  return 0;
}
