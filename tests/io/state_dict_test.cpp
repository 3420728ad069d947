#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include "clprompt/core/error.hpp"
#include "clprompt/io/safetensors.hpp"
#include "clprompt/io/state_dict.hpp"
#include "test_util.hpp"

// After LibTorch: glog (pulled in by c10) defines its own CHECK, which Catch's must replace
// when the build does not use the precompiled header.
#include <catch2/catch.hpp>

namespace {

// A backbone layer, a classifier head and a buffer: names fc.weight, fc.bias, head.weight,
// head.bias, scale.
struct Net : torch::nn::Module {
  torch::nn::Linear fc{nullptr}, head{nullptr};
  torch::Tensor scale;
  explicit Net(int64_t classes = 2) {
    fc = register_module("fc", torch::nn::Linear(4, 3));
    head = register_module("head", torch::nn::Linear(3, classes));
    scale = register_buffer("scale", torch::rand({3}));
  }
};

std::vector<std::string> names_of(const clprompt::TensorMap& tensors) {
  std::vector<std::string> names;
  for (const auto& [name, t] : tensors) names.push_back(name);
  return names;
}

std::string strict_error(Net& net, const clprompt::TensorMap& tensors, clprompt::LoadOptions options = {}) {
  try {
    (void)clprompt::load_state_dict(net, tensors, options);
  } catch (const clprompt::CheckpointError& e) {
    return e.what();
  }
  return "no error";
}

bool same_values(Net& a, Net& b) {
  const auto sa = clprompt::state_dict(a), sb = clprompt::state_dict(b);
  for (const auto& [name, t] : sa)
    if (!torch::equal(t, sb.at(name))) return false;
  return true;
}

}  // namespace

TEST_CASE("state_dict names parameters and buffers and shares their storage", "[io][state_dict]") {
  Net net;
  const auto sd = clprompt::state_dict(net);
  CHECK(names_of(sd) == std::vector<std::string>{"fc.bias", "fc.weight", "head.bias", "head.weight", "scale"});
  CHECK(sd.at("fc.weight").data_ptr() == net.fc->weight.data_ptr());
  CHECK_FALSE(sd.at("fc.weight").requires_grad());
  CHECK(names_of(clprompt::state_dict(net, "model.")).front() == "model.fc.bias");
}

TEST_CASE("load_state_dict copies an exact checkpoint", "[io][state_dict]") {
  torch::manual_seed(1);
  Net source, target;
  REQUIRE_FALSE(same_values(source, target));
  const auto report = clprompt::load_state_dict(target, clprompt::state_dict(source));
  CHECK(report.ok());
  CHECK(report.loaded.size() == 5);
  CHECK(same_values(source, target));
  // A copy, not an alias, and the parameters stay trainable leaves.
  CHECK(target.fc->weight.data_ptr() != source.fc->weight.data_ptr());
  CHECK(target.fc->weight.requires_grad());
  CHECK(target.fc->weight.is_leaf());
}

TEST_CASE("load_state_dict converts an F16 checkpoint to the model's F32", "[io][state_dict]") {
  Net source, target;
  clprompt::TensorMap half;
  for (const auto& [name, t] : clprompt::state_dict(source)) half[name] = t.to(torch::kHalf);
  CHECK(clprompt::load_state_dict(target, half).ok());
  CHECK(target.fc->weight.scalar_type() == torch::kFloat);
  CHECK(torch::equal(target.fc->weight, source.fc->weight.to(torch::kHalf).to(torch::kFloat)));
  CHECK(torch::equal(target.scale, source.scale.to(torch::kHalf).to(torch::kFloat)));
}

TEST_CASE("load_state_dict round-trips through a safetensors file", "[io][state_dict][safetensors]") {
  clprompt::test::TempDir dir;
  const auto path = dir.file("net.safetensors");
  Net source, target;
  clprompt::write_safetensors(path, clprompt::state_dict(source), {{"format", "pt"}});
  const auto contents = clprompt::read_safetensors(path);
  CHECK(clprompt::load_state_dict(target, contents.tensors, {.source = path}).ok());
  CHECK(same_values(source, target));
}

TEST_CASE("strict load lists every missing, unexpected and mis-shaped name", "[io][state_dict]") {
  Net source, target;
  auto ckpt = clprompt::state_dict(source);
  ckpt.erase("fc.bias");
  ckpt.erase("scale");
  ckpt["extra.weight"] = torch::zeros({1});
  ckpt["extra.bias"] = torch::zeros({1});
  ckpt["fc.weight"] = torch::zeros({3, 5});
  ckpt["head.weight"] = torch::zeros({10, 3});
  const auto before = clprompt::state_dict(target);
  const auto before_fc = target.fc->weight.clone();
  const auto before_head_bias = target.head->bias.clone();

  const auto message = strict_error(target, ckpt, {.source = "ckpt.safetensors"});
  CHECK_THAT(message, Catch::StartsWith("ckpt.safetensors: "));
  for (const char* fragment : {"fc.bias", "scale", "extra.weight", "extra.bias", "fc.weight: checkpoint [3, 5] vs model [3, 4]",
                               "head.weight: checkpoint [10, 3] vs model [2, 3]", "hint"})
    CHECK_THAT(message, Catch::Contains(fragment));
  // Nothing is copied when a strict load fails, not even the tensors that matched.
  CHECK(torch::equal(target.head->bias, before_head_bias));
  CHECK(torch::equal(target.fc->weight, before_fc));

  // Non-strict: the same checkpoint loads what matches and reports the rest.
  const auto report = clprompt::load_state_dict(target, ckpt, {.strict = false});
  CHECK_FALSE(report.ok());
  CHECK(report.loaded == std::vector<std::string>{"head.bias"});
  CHECK(report.missing == std::vector<std::string>{"fc.bias", "scale"});
  CHECK(report.unexpected == std::vector<std::string>{"extra.bias", "extra.weight"});
  CHECK(report.mismatched.size() == 2);
  CHECK(torch::equal(target.head->bias, source.head->bias));
  CHECK(torch::equal(target.fc->weight, before_fc));
  CHECK_THAT(report.summary(), Catch::Contains("loaded 1, missing 2, unexpected 2, mis-shaped 2"));
}

TEST_CASE("ignore_prefixes skips a head of another size", "[io][state_dict]") {
  Net pretrained(/*classes=*/10), target(/*classes=*/2);
  const auto head_before = target.head->weight.clone();
  // Strict still holds: the skipped head is neither unexpected nor missing.
  const auto report = clprompt::load_state_dict(target, clprompt::state_dict(pretrained), {.ignore_prefixes = {"head."}});
  CHECK(report.ok());
  CHECK(report.ignored == std::vector<std::string>{"head.bias", "head.weight"});
  CHECK(report.loaded == std::vector<std::string>{"fc.bias", "fc.weight", "scale"});
  CHECK(torch::equal(target.head->weight, head_before));
  CHECK(torch::equal(target.fc->weight, pretrained.fc->weight));
}

TEST_CASE("strip_prefix matches checkpoint names saved under a wrapper", "[io][state_dict]") {
  Net source, target;
  const auto ckpt = clprompt::state_dict(source, "model.");
  // Without the option the hint names the prefix to strip.
  CHECK_THAT(strict_error(target, ckpt), Catch::Contains("strip_prefix = \"model.\""));
  const auto report = clprompt::load_state_dict(target, ckpt, {.strip_prefix = "model."});
  CHECK(report.ok());
  CHECK(same_values(source, target));
  // Both prefixes together: the ignore prefix applies to the stripped name.
  Net other;
  CHECK(clprompt::load_state_dict(other, ckpt, {.ignore_prefixes = {"head."}, .strip_prefix = "model."}).ignored.size() == 2);
}
