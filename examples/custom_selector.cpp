// A user-written PromptSelector plugged into the same model: one learned prompt per task,
// prefix-tuned into layer 0; without task identity (evaluation) the prompts of all seen tasks
// are averaged. Everything a selector needs is in this file.   example_custom_selector
#include <torch/nn/modules/container/parameterlist.h>

#include <clprompt/head/linear.hpp>
#include <clprompt/methods/linear_probe.hpp>

#include "example_common.hpp"

struct PerTaskPrefix : torch::nn::Module {
  static constexpr auto query_source = clprompt::QuerySource::none;  // no extra forward pass of the backbone

  PerTaskPrefix(int64_t length, int64_t dim) : length_(length), dim_(dim) {
    prompts = register_module("prompts", torch::nn::ParameterList());
  }
  void begin_task(const clprompt::TaskContext& ctx) {  // a fresh prompt for each new task
    while (static_cast<int64_t>(prompts->size()) <= ctx.task)
      prompts->append(at::randn({2 * length_, dim_}).mul_(0.02).set_requires_grad(true));
  }
  clprompt::Selection select(const at::Tensor& query, const clprompt::TaskContext& ctx) {
    std::vector<at::Tensor> seen;
    for (int64_t t = ctx.training ? ctx.task : 0; t <= ctx.task; ++t) seen.push_back(prompts[t]);
    auto prompt = at::stack(seen).mean(0).unsqueeze(0).expand({query.size(0), 2 * length_, dim_});
    clprompt::Selection s;
    s.prompts.add_prefix(0, prompt.narrow(1, 0, length_), prompt.narrow(1, length_, length_));
    return s;
  }
  torch::nn::ParameterList prompts{nullptr};
  int64_t length_, dim_;
};
static_assert(clprompt::PromptSelector<PerTaskPrefix>);

int main(int argc, char** argv) try {
  auto vit = example::small_vit(argc, argv);
  clprompt::ContinualModel<clprompt::VisionTransformer, PerTaskPrefix, clprompt::LinearHead> model(
      vit, std::make_shared<PerTaskPrefix>(4, vit->dim()),
      std::make_shared<clprompt::LinearHead>(clprompt::LinearHeadOptions{}, clprompt::dims_of(*vit)));
  return example::run(model, example::split_fashion_mnist(), {.optim = {.lr = 1e-2}, .batch_size = 64}, "custom selector");
} catch (const clprompt::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
