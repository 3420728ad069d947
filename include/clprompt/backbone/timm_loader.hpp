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

/// The geometry of a timm `vit_*` checkpoint, read from its header alone (the data is not read):
/// embed_dim from cls_token, depth from the blocks.N names, patch size and channels from
/// patch_embed.proj.weight [D, C, p, p], image size from pos_embed's grid × p, qkv_bias from the
/// blocks' attn.qkv.bias. The number of heads is not in the weights: it follows the width as in
/// timm's ViT-Ti/S/B/L/H (192 → 3, 384 → 6, 768 → 12, 1024 → 16, 1280 → 16), else `base.num_heads`.
/// The other fields (mlp_ratio, eps, prompt position) come from `base`. Throws FileError naming
/// the file and the tensor when it is not a ViT checkpoint.
inline ViTOptions vit_options_from_weights(const std::string& path, ViTOptions base = {}) {
  const auto header = read_safetensors_header(path);
  auto shape = [&](const std::string& name) -> const std::vector<int64_t>& {
    const auto it = header.shapes.find(name);
    if (it == header.shapes.end())
      throw FileError(path, fmt::format("has no tensor '{}': not a timm ViT checkpoint (vit_* safetensors)", name));
    return it->second;
  };
  const auto& cls = shape("cls_token");
  const auto& proj = shape("patch_embed.proj.weight");
  const auto& pos = shape("pos_embed");
  if (cls.size() != 3 || proj.size() != 4 || proj[2] != proj[3] || pos.size() != 3)
    throw FileError(path, "cls_token, patch_embed.proj.weight or pos_embed has an unexpected rank: not a timm ViT");
  base.embed_dim = cls[2];
  base.in_channels = proj[1];
  base.patch_size = proj[2];
  const auto grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(pos[1] - 1))));
  if (grid * grid != pos[1] - 1)
    throw FileError(path, fmt::format("pos_embed has {} positions: not [CLS] + a square grid", pos[1]));
  base.image_size = grid * base.patch_size;
  int64_t depth = 0;
  while (header.shapes.count(fmt::format("blocks.{}.attn.qkv.weight", depth))) ++depth;
  if (depth == 0) throw FileError(path, "has no blocks.0.attn.qkv.weight: not a timm ViT checkpoint");
  base.depth = depth;
  base.qkv_bias = header.shapes.count("blocks.0.attn.qkv.bias") > 0;
  switch (base.embed_dim) {
    case 192: base.num_heads = 3; break;
    case 384: base.num_heads = 6; break;
    case 768: base.num_heads = 12; break;
    case 1024: case 1280: base.num_heads = 16; break;
    default: break;
  }
  return base;
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
