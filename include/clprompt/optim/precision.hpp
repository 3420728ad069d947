#pragma once
// Mixed precision: `train.precision = fp32 | bf16 | fp16`. AutocastScope runs the forward pass
// and the loss under LibTorch's autocast for the model's device (matrix products and attention in
// the low precision, reductions and losses in float32, parameters and optimiser state in
// float32); GradScaler is the loss scaling fp16 needs (torch.cuda.amp.GradScaler's rule: scale
// 2^16, halved and the step skipped when a gradient is not finite, doubled after 2000 finite
// steps). bf16 needs no scaling. Class statistics are accumulated in double whatever the
// precision (stats/class_statistics.hpp).
#include <array>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include "clprompt/core/error.hpp"

namespace clprompt {

enum class Precision { fp32, bf16, fp16 };
constexpr auto enum_names(Precision) {
  return std::array{std::pair{Precision::fp32, "fp32"}, std::pair{Precision::bf16, "bf16"},
                    std::pair{Precision::fp16, "fp16"}};
}

/// Autocast on `device`'s type for the scope (nothing for fp32). CPU autocast supports bf16 only.
class AutocastScope {
 public:
  AutocastScope(Precision precision, c10::Device device) : enabled_(precision != Precision::fp32), cuda_(device.is_cuda()) {
    if (!enabled_) return;
    if (!cuda_ && precision == Precision::fp16)
      throw ConfigError("train.precision", "fp16 autocast runs on CUDA only; use bf16 on the CPU");
    const auto dtype = precision == Precision::bf16 ? at::kBFloat16 : at::kHalf;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    const auto type = cuda_ ? at::kCUDA : at::kCPU;
    previous_enabled_ = at::autocast::is_autocast_enabled(type);
    previous_dtype_ = at::autocast::get_autocast_dtype(type);
    at::autocast::set_autocast_dtype(type, dtype);
    at::autocast::set_autocast_enabled(type, true);
#else
    previous_enabled_ = cuda_ ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
    previous_dtype_ = cuda_ ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
    if (cuda_) {
      at::autocast::set_autocast_gpu_dtype(dtype);
      at::autocast::set_enabled(true);
    } else {
      at::autocast::set_autocast_cpu_dtype(dtype);
      at::autocast::set_cpu_enabled(true);
    }
#endif
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!enabled_) return;
    // Leaving the outermost scope frees the casted copies of the weights (autocast's cache).
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    const auto type = cuda_ ? at::kCUDA : at::kCPU;
    at::autocast::set_autocast_enabled(type, previous_enabled_);
    at::autocast::set_autocast_dtype(type, previous_dtype_);
#else
    if (cuda_) {
      at::autocast::set_enabled(previous_enabled_);
      at::autocast::set_autocast_gpu_dtype(previous_dtype_);
    } else {
      at::autocast::set_cpu_enabled(previous_enabled_);
      at::autocast::set_autocast_cpu_dtype(previous_dtype_);
    }
#endif
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool enabled_, cuda_;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

/// Dynamic loss scaling for fp16 (torch.cuda.amp.GradScaler's defaults).
class GradScaler {
 public:
  double scale() const { return scale_; }
  /// The loss to back-propagate.
  at::Tensor scaled(const at::Tensor& loss) const { return loss * scale_; }
  /// Divides the gradients by the scale; true when all of them are finite (the step may go on).
  /// One host synchronisation per step: the decision to skip it.
  bool unscale(const std::vector<at::Tensor>& params) {
    std::vector<at::Tensor> finite;
    for (const auto& p : params) {
      if (!p.grad().defined()) continue;
      auto& g = p.mutable_grad();
      g.mul_(1.0 / scale_);
      finite.push_back(at::isfinite(g).all());
    }
    const bool ok = finite.empty() || at::stack(finite).all().item<bool>();
    update(ok);
    return ok;
  }
  int64_t skipped_steps() const { return skipped_; }

 private:
  void update(bool finite) {
    if (!finite) {
      scale_ *= 0.5;
      growth_ = 0;
      ++skipped_;
    } else if (++growth_ == 2000) {
      scale_ *= 2.0;
      growth_ = 0;
    }
  }
  double scale_ = 65536.0;
  int64_t growth_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace clprompt
