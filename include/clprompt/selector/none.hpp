#pragma once
// NoPrompts: the selector of methods without prompts (fine-tuning, linear probing, SLCA).
#include <tuple>

#include "clprompt/backbone/concepts.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/core/query_source.hpp"
#include "clprompt/selector/concepts.hpp"

namespace clprompt {

class NoPrompts : public torch::nn::Module {
 public:
  struct Options {
    static constexpr auto fields() { return std::tuple{}; }
  };
  static constexpr QuerySource query_source = QuerySource::none;  // no extra forward pass

  NoPrompts() = default;
  NoPrompts(const Options&, const BackboneDims&) {}

  Selection select(const at::Tensor& /*query*/, const TaskContext& /*ctx*/) { return {}; }
};

}  // namespace clprompt
