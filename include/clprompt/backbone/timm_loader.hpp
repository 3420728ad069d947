#pragma once
// Loading timm ViT checkpoints (safetensors, as timm publishes them) into VisionTransformer.
#include <cmath>
#include <string>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/io/safetensors.hpp"
#include "clprompt/io/state_dict.hpp"

namespace clprompt {

/// Resamples a ViT positional embedding [1, prefix + g*g, D] to a new grid, as timm's
/// resample_abs_pos_embed does: prefix ([CLS]) rows kept, the grid interpolated bicubically
/// with antialiasing (PyTorch's interpolate(mode="bicubic", antialias=True)).
inline at::Tensor resample_position_embedding(const at::Tensor& pos_embed, int64_t new_grid,
                                              int64_t prefix_tokens = 1) {
  if (pos_embed.dim() != 3 || pos_embed.size(0) != 1 || pos_embed.size(1) <= prefix_tokens)
    throw ShapeError(fmt::format("pos_embed has shape {}, expected [1, {} + grid*grid, D]", pos_embed.sizes(), prefix_tokens));
  const int64_t n = pos_embed.size(1) - prefix_tokens, D = pos_embed.size(2);
  const auto old_grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  if (old_grid * old_grid != n)
    throw ShapeError(fmt::format("pos_embed has {} patch positions, which is not a square grid", n));
  if (old_grid == new_grid) return pos_embed;
  auto prefix = pos_embed.narrow(1, 0, prefix_tokens);
  auto grid = pos_embed.narrow(1, prefix_tokens, n).reshape({1, old_grid, old_grid, D}).permute({0, 3, 1, 2}).to(at::kFloat);
  auto resized = at::_upsample_bicubic2d_aa(grid, {new_grid, new_grid}, /*align_corners=*/false);
  resized = resized.permute({0, 2, 3, 1}).reshape({1, new_grid * new_grid, D}).to(pos_embed.scalar_type());
  return at::cat({prefix, resized}, 1);
}

/// Loads a timm `vit_*` checkpoint into `vit` by parameter name. The classifier (`head.*`) and
/// timm's optional pre-logits / fc_norm layers are not part of the backbone and are skipped;
/// pos_embed is resampled when the checkpoint's grid differs. Throws CheckpointError listing
/// every missing, unexpected and mis-shaped name.
inline LoadReport load_timm_vit(VisionTransformer& vit, const std::string& path) {
  auto contents = read_safetensors(path);
  auto& tensors = contents.tensors;
  if (auto it = tensors.find("pos_embed"); it != tensors.end()) {
    const auto expected = vit.pos_embed.sizes();
    if (it->second.dim() == 3 && it->second.size(2) == expected[2] && it->second.size(1) != expected[1])
      it->second = resample_position_embedding(it->second, vit.options().grid_size());
  }
  LoadOptions options;
  options.source = path;
  options.ignore_prefixes = {"head.", "pre_logits.", "fc_norm.", "head_drop."};
  return load_state_dict(vit, tensors, options);
}

}  // namespace clprompt
