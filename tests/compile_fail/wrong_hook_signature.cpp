// Must not compile: the head declares the optional hook `consolidate` with a signature the
// contract does not call, which would otherwise silently never run. The contract names the
// expected signature (tests/CMakeLists.txt matches the message).
#include "clprompt/head/linear.hpp"
#include "clprompt/methods/finetune.hpp"

struct HeadWithWrongHook : clprompt::LinearHead {
  using clprompt::LinearHead::LinearHead;
  void consolidate(const clprompt::TaskContext& ctx) { (void)ctx; }  // the FeatureStream is missing
};

int main() {
  auto vit = std::make_shared<clprompt::VisionTransformer>(clprompt::ViTOptions::tiny_patch16_224());
  clprompt::ContinualModel<clprompt::VisionTransformer, clprompt::NoPrompts, HeadWithWrongHook> model(
      vit, std::make_shared<clprompt::NoPrompts>(),
      std::make_shared<HeadWithWrongHook>(clprompt::LinearHeadOptions{}, clprompt::dims_of(*vit)));
  return 0;
}
