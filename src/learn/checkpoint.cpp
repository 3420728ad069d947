// Compiled part of include/clprompt/learn/checkpoint.hpp: the resume checkpoint's file format.
#include "clprompt/learn/checkpoint.hpp"

#include <cstring>
#include <sstream>

#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <fmt/format.h>
#include <torch/cuda.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/version.h>

#include "clprompt/core/error.hpp"
#include "clprompt/core/json_parse.hpp"
#include "clprompt/io/sha256.hpp"
#include "clprompt_paths.hpp"

namespace clprompt {
namespace {

constexpr const char* kFormat = "clprompt-resume-1";
constexpr const char* kModelPrefix = "model.";

Json position_json(const RunPosition& p) {
  return {{"task", p.task},           {"epoch", p.epoch},
          {"batch", p.batch},         {"trainer_task", p.trainer_task},
          {"epoch_loss_sum", p.epoch_loss_sum}, {"epoch_steps", p.epoch_steps}};
}

RunPosition position_from(const Json& j) {
  RunPosition p;
  p.task = j.at("task").get<int64_t>();
  p.epoch = j.at("epoch").get<int64_t>();
  p.batch = j.at("batch").get<int64_t>();
  p.trainer_task = j.at("trainer_task").get<int64_t>();
  p.epoch_loss_sum = j.at("epoch_loss_sum").get<double>();
  p.epoch_steps = j.at("epoch_steps").get<int64_t>();
  if (p.task < 0 || p.epoch < 0 || p.batch < 0 || p.epoch_steps < 0)
    throw std::out_of_range("a negative task, epoch, batch or step count");
  return p;
}

at::Tensor bytes_tensor(const std::string& bytes) {
  auto t = at::empty({static_cast<int64_t>(bytes.size())}, at::kByte);
  if (!bytes.empty()) std::memcpy(t.data_ptr<uint8_t>(), bytes.data(), bytes.size());
  return t;
}

}  // namespace

void write_resume_checkpoint(const std::string& path, const ResumeState& state) {
  TensorMap tensors;
  for (const auto& [name, t] : state.model) tensors[kModelPrefix + name] = t;
  if (state.optimizer.defined()) tensors["optimizer"] = state.optimizer;
  tensors["generator.cpu"] = state.cpu_generator;
  for (std::size_t i = 0; i < state.cuda_generators.size(); ++i)
    tensors[fmt::format("generator.cuda.{}", i)] = state.cuda_generators[i];
  Metadata metadata = state.metadata;
  metadata["clprompt.format"] = kFormat;
  metadata["clprompt.resume.position"] = position_json(state.position).dump();
  metadata["clprompt.resume.results"] = state.results.to_json().dump();
  metadata["clprompt.resume.record"] = task_record_json(state.record).dump();
  metadata["clprompt.resume.classes_per_task"] = Json(state.classes_per_task).dump();
  metadata["clprompt.resume.scenario"] = state.scenario_fingerprint;
  metadata["clprompt.resume.code"] = state.code_fingerprint;
  write_safetensors(path, tensors, metadata);
}

ResumeState read_resume_checkpoint(const std::string& path) {
  auto contents = read_safetensors(path);
  auto& meta = contents.metadata;
  const auto format = meta.find("clprompt.format");
  if (format == meta.end() || format->second != kFormat)
    throw CheckpointError(fmt::format("{}: not a clprompt resume checkpoint (metadata 'clprompt.format' is {}, "
                                      "expected '{}')",
                                      path, format == meta.end() ? "missing" : "'" + brief(format->second) + "'", kFormat));
  ResumeState state;
  const char* entry = "";
  try {
    auto json_of = [&](const char* key) {
      entry = key;
      return parse_json<Json>(meta.at(key));
    };
    state.position = position_from(json_of("clprompt.resume.position"));
    state.results = Results::from_json(json_of("clprompt.resume.results"));
    state.record = task_record_from_json(json_of("clprompt.resume.record"));
    state.classes_per_task = json_of("clprompt.resume.classes_per_task").get<std::vector<int64_t>>();
    entry = "clprompt.resume.scenario";
    state.scenario_fingerprint = meta.at(entry);
    entry = "clprompt.resume.code";
    state.code_fingerprint = meta.at(entry);
  } catch (const std::exception& e) {
    throw CheckpointError(fmt::format("{}: metadata '{}' is missing or malformed ({})", path, entry, brief(e.what())));
  }
  for (auto& [name, t] : contents.tensors) {
    if (name.rfind(kModelPrefix, 0) == 0) state.model[name.substr(std::strlen(kModelPrefix))] = t;
    else if (name == "optimizer") state.optimizer = t;
    else if (name == "generator.cpu") state.cpu_generator = t;
    else if (name.rfind("generator.cuda.", 0) == 0) state.cuda_generators.push_back(t);
    else throw CheckpointError(fmt::format("{}: unexpected tensor '{}' in a resume checkpoint", path, name));
  }
  if (!state.cpu_generator.defined())
    throw CheckpointError(fmt::format("{}: the CPU generator's state (tensor 'generator.cpu') is missing", path));
  for (auto& [key, value] : meta)
    if (key.rfind("clprompt.resume.", 0) != 0 && key != "clprompt.format") state.metadata[key] = value;
  return state;
}

at::Tensor save_optimizer_state(torch::optim::Optimizer& optimizer) {
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  std::ostringstream out;
  archive.save_to(out);
  return bytes_tensor(out.str());
}

void load_optimizer_state(torch::optim::Optimizer& optimizer, const at::Tensor& bytes, const std::string& source) {
  if (!bytes.defined() || bytes.scalar_type() != at::kByte || bytes.dim() != 1)
    throw CheckpointError(fmt::format("{}: the optimiser's state (tensor 'optimizer') is missing or not bytes", source));
  try {
    const auto contiguous = bytes.contiguous();
    torch::serialize::InputArchive archive;
    archive.load_from(reinterpret_cast<const char*>(contiguous.data_ptr<uint8_t>()),
                      static_cast<std::size_t>(contiguous.numel()));
    optimizer.load(archive);
  } catch (const c10::Error& e) {
    throw CheckpointError(fmt::format("{}: the optimiser's state does not fit this optimiser ({})", source,
                                      brief(e.what_without_backtrace())));
  }
}

void capture_global_generators(ResumeState& state) {
  {
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    state.cpu_generator = generator.get_state();
  }
  state.cuda_generators.clear();
  if (!torch::cuda::is_available()) return;
  for (std::size_t i = 0; i < torch::cuda::device_count(); ++i) {
    auto generator = at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(i)));
    std::lock_guard<std::mutex> lock(generator.mutex());
    state.cuda_generators.push_back(generator.get_state());
  }
}

void restore_global_generators(const ResumeState& state, const std::string& source) {
  try {
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state.cpu_generator);
  } catch (const c10::Error& e) {
    throw CheckpointError(fmt::format("{}: the CPU generator's state is invalid ({})", source,
                                      brief(e.what_without_backtrace())));
  }
  if (state.cuda_generators.empty()) return;
  const std::size_t devices = torch::cuda::is_available() ? torch::cuda::device_count() : 0;
  if (devices < state.cuda_generators.size())
    throw CheckpointError(fmt::format("{}: written with {} CUDA device(s), {} visible now", source,
                                      state.cuda_generators.size(), devices));
  for (std::size_t i = 0; i < state.cuda_generators.size(); ++i) {
    auto generator = at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(i)));
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state.cuda_generators[i]);
  }
}

std::string scenario_fingerprint(const std::vector<int64_t>& class_order,
                                 const std::vector<std::vector<int64_t>>& index_lists) {
  std::string bytes;
  auto add = [&](const std::vector<int64_t>& v) {
    const int64_t n = static_cast<int64_t>(v.size());
    bytes.append(reinterpret_cast<const char*>(&n), sizeof n);
    bytes.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(int64_t));
  };
  add(class_order);
  for (const auto& list : index_lists) add(list);
  return sha256_hex(bytes);
}

std::string code_fingerprint() {
  return fmt::format("clprompt {}, LibTorch {}", CLPROMPT_VERSION, TORCH_VERSION);
}

}  // namespace clprompt
