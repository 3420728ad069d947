#pragma once
// Where a run computes. Debian's LibTorch is CPU-only; a CUDA build of LibTorch makes "cuda"
// and "auto" pick the GPU with no other change.
#include <string>

#include <ATen/Context.h>
#include <c10/core/Device.h>

#include "clprompt/core/error.hpp"

namespace clprompt {

/// "cpu", "cuda", "cuda:N", or "auto" (CUDA when this LibTorch has it and a GPU is present).
/// `field` names the configuration field in errors.
inline c10::Device resolve_device(const std::string& name, const std::string& field = "device") {
  if (name == "auto") return at::hasCUDA() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  c10::Device device(c10::kCPU);
  try {
    device = c10::Device(name);
  } catch (const c10::Error&) {
    throw ConfigError(field, fmt::format("unknown device '{}'; expected cpu, cuda, cuda:N or auto", name));
  }
  if (device.is_cuda() && !at::hasCUDA())
    throw ConfigError(field, fmt::format("'{}' requested but this LibTorch was built without CUDA or sees no GPU; "
                                         "use cpu", name));
  if (!device.is_cpu() && !device.is_cuda())
    throw ConfigError(field, fmt::format("device '{}' is not supported; expected cpu or cuda", name));
  return device;
}

}  // namespace clprompt
