// A method of your own with the whole clprompt command line: a prompt selector (one prefix prompt
// in layer 0, shared by every task), its registration, and run_cli over the published methods
// plus this one. Every flag, progress line, results.json and plot of `clprompt` comes with it:
//   example_custom_method run --method shared-prefix,l2p --set train.epochs=2
//   example_custom_method run --method shared-prefix --align        (any head on any method)
//   example_custom_method methods
#include <clprompt/methods/registry.hpp>
#include <clprompt/model/continual_model.hpp>
#include <clprompt/run/cli.hpp>

struct SharedPrefixOptions {
  int64_t length = 4;  ///< prefix tokens for the keys, and as many for the values
  static constexpr auto fields() { return std::tuple{clprompt::field("length", &SharedPrefixOptions::length)}; }
  void validate(const std::string& path) const { clprompt::require_option(length > 0, path, "length", "must be positive"); }
};

struct SharedPrefix : torch::nn::Module {
  static constexpr auto query_source = clprompt::QuerySource::none;  // no extra forward pass
  SharedPrefix(const SharedPrefixOptions& options, const clprompt::BackboneDims& dims) : length(options.length) {
    prompt = register_parameter("prompt", at::randn({2 * length, dims.dim}).mul_(0.02));
  }
  clprompt::Selection select(const at::Tensor& query, const clprompt::TaskContext&) {
    const auto p = prompt.unsqueeze(0).expand({query.size(0), 2 * length, prompt.size(1)});
    clprompt::Selection s;
    s.prompts.add_prefix(0, p.narrow(1, 0, length), p.narrow(1, length, length));
    return s;
  }
  at::Tensor prompt;
  int64_t length;
};

struct SharedPrefixMethod {
  static constexpr std::string_view name = "shared-prefix";
  static constexpr std::string_view label = "Shared prefix";
  static constexpr std::string_view description = "one prefix prompt in layer 0 shared by all tasks (an example)";
  static constexpr std::string_view default_head = "linear";
  struct Options {
    SharedPrefixOptions selector;
    static constexpr auto fields() { return std::tuple{clprompt::field("selector", &Options::selector)}; }
  };
  static clprompt::TrainOptions recipe() { return {.optim = {.lr = 1e-2}, .batch_size = 64}; }
  static constexpr bool lr_scales_with_batch = false;
  template <class Head>
  static auto make(const Options& options, std::shared_ptr<Head> head, const clprompt::MethodContext& ctx) {
    return std::make_shared<clprompt::ContinualModel<clprompt::VisionTransformer, SharedPrefix, Head>>(
        ctx.backbone, std::make_shared<SharedPrefix>(options.selector, ctx.dims), std::move(head));
  }
};

int main(int argc, char** argv) {
  auto registry = clprompt::builtin_methods();
  registry.add<SharedPrefixMethod>();
  return clprompt::run_cli(argc, argv, registry);
}
