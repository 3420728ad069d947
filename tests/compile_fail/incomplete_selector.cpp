// Must NOT compile: a selector without select(). The build of this file is a test
// (tests/CMakeLists.txt) that passes when the compiler's output carries the contract's message.
#include "clprompt/methods/finetune.hpp"
#include "clprompt/methods/linear_probe.hpp"

struct ForgotSelect : torch::nn::Module {
  static constexpr clprompt::QuerySource query_source = clprompt::QuerySource::backbone;
  clprompt::Selection choose(const at::Tensor&, const clprompt::TaskContext&) { return {}; }  // wrong name
};

int main() {
  clprompt::ContinualModel<clprompt::VisionTransformer, ForgotSelect, clprompt::LinearHead> model(
      nullptr, nullptr, nullptr);
  return 0;
}
