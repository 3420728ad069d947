#pragma once
// VisionTransformer: a ViT (Dosovitskiy et al., ICLR'21) with timm's module structure and
// parameter names (patch_embed.proj, cls_token, pos_embed, blocks.{i}.norm1/attn.qkv/attn.proj/
// norm2/mlp.fc1/mlp.fc2, norm), so timm `vit_*` safetensors load by name. It takes Prompts in
// its forward pass (prompt tuning, prefix tuning, value residuals; see prompts.hpp).
//
//   auto vit = std::make_shared<clprompt::VisionTransformer>(clprompt::ViTOptions::base_patch16_224());
//   clprompt::load_timm_vit(*vit, "vit_base_patch16_224.augreg_in21k.safetensors");
//   at::Tensor q = vit->query(images);                  // [B, 768], no grad
//   at::Tensor f = vit->forward(images, prompts);       // [B, 768]
#include <cmath>
#include <cstdint>
#include <string>

#include <torch/nn/module.h>
#include <torch/version.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "clprompt/backbone/prompts.hpp"
#include "clprompt/core/error.hpp"
#include "clprompt/core/options.hpp"

namespace clprompt {

/// Where the positional embedding of input prompt tokens comes from.
enum class PromptPositionEmbedding {
  class_token,  ///< prompt tokens get the [CLS] position's embedding (l2p-pytorch's convention)
  none,         ///< prompt tokens get no positional embedding
};
constexpr auto enum_names(PromptPositionEmbedding) {
  return std::array{std::pair{PromptPositionEmbedding::class_token, "class_token"},
                    std::pair{PromptPositionEmbedding::none, "none"}};
}

struct ViTOptions {
  int64_t image_size = 224;
  int64_t patch_size = 16;
  int64_t in_channels = 3;
  int64_t embed_dim = 768;
  int64_t depth = 12;
  int64_t num_heads = 12;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  double layer_norm_eps = 1e-6;  // timm's ViTs use 1e-6, not LayerNorm's default 1e-5
  PromptPositionEmbedding prompt_position = PromptPositionEmbedding::class_token;

  /// timm vit_base_patch16_224 (ViT-B/16), the backbone of every published method here.
  static ViTOptions base_patch16_224() { return {}; }
  /// timm vit_tiny_patch16_224 (ViT-Ti/16).
  static ViTOptions tiny_patch16_224() {
    ViTOptions o;
    o.embed_dim = 192;
    o.num_heads = 3;
    return o;
  }

  int64_t grid_size() const { return image_size / patch_size; }
  int64_t num_patches() const { return grid_size() * grid_size(); }
  int64_t head_dim() const { return embed_dim / num_heads; }

  static constexpr auto fields() {
    return std::tuple{field("image_size", &ViTOptions::image_size),
                      field("patch_size", &ViTOptions::patch_size),
                      field("in_channels", &ViTOptions::in_channels),
                      field("embed_dim", &ViTOptions::embed_dim),
                      field("depth", &ViTOptions::depth),
                      field("num_heads", &ViTOptions::num_heads),
                      field("mlp_ratio", &ViTOptions::mlp_ratio),
                      field("qkv_bias", &ViTOptions::qkv_bias),
                      field("layer_norm_eps", &ViTOptions::layer_norm_eps),
                      field("prompt_position", &ViTOptions::prompt_position)};
  }
  void validate(const std::string& path) const {
    require_option(patch_size > 0, path, "patch_size", "must be positive");
    require_option(image_size > 0 && image_size % patch_size == 0, path, "image_size",
                   fmt::format("must be a positive multiple of patch_size ({}), got {}", patch_size, image_size));
    require_option(in_channels > 0, path, "in_channels", "must be positive");
    require_option(depth > 0, path, "depth", "must be positive");
    require_option(num_heads > 0 && embed_dim > 0 && embed_dim % num_heads == 0, path, "embed_dim",
                   fmt::format("must be a positive multiple of num_heads ({}), got {}", num_heads, embed_dim));
    require_option(mlp_ratio > 0, path, "mlp_ratio", "must be positive");
    require_option(layer_norm_eps > 0, path, "layer_norm_eps", "must be positive");
  }
};

namespace detail {

/// timm's PatchEmbed: a strided convolution, flattened to tokens.
class PatchEmbed : public torch::nn::Module {
 public:
  PatchEmbed(const ViTOptions& o)
      : proj(register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels, o.embed_dim, o.patch_size)
                                                           .stride(o.patch_size)))) {}
  at::Tensor forward(const at::Tensor& images) { return proj->forward(images).flatten(2).transpose(1, 2); }
  torch::nn::Conv2d proj;
};

/// Multi-head self-attention with optional prefix keys/values and value residuals.
class Attention : public torch::nn::Module {
 public:
  Attention(const ViTOptions& o)
      : num_heads_(o.num_heads),
        head_dim_(o.head_dim()),
        qkv(register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(o.embed_dim, 3 * o.embed_dim).bias(o.qkv_bias)))),
        proj(register_module("proj", torch::nn::Linear(o.embed_dim, o.embed_dim))) {}

  at::Tensor forward(const at::Tensor& x, const LayerPrompt* prompt, int64_t layer) {
    const int64_t B = x.size(0), N = x.size(1), D = x.size(2);
    // [B, N, 3, H, hd] -> [3, B, H, N, hd]
    auto qkv_heads = qkv->forward(x).reshape({B, N, 3, num_heads_, head_dim_}).permute({2, 0, 3, 1, 4});
    at::Tensor q = qkv_heads[0], k = qkv_heads[1], v = qkv_heads[2];
    if (prompt != nullptr) {
      if (prompt->value_residual.defined()) {
        check_prompt(prompt->value_residual, {B, D}, "value_residual", layer);
        v = v + prompt->value_residual.reshape({B, num_heads_, 1, head_dim_});
      }
      if (prompt->key_prefix.defined()) {
        const auto& kp = prompt->key_prefix;
        const auto& vp = prompt->value_prefix;
        if (!vp.defined() || kp.dim() != 3 || vp.dim() != 3 || kp.size(1) != vp.size(1))
          throw ShapeError(fmt::format("layer {}: key_prefix {} and value_prefix {} must both be [B, L, D] with the same L",
                                       layer, kp.sizes(), vp.defined() ? vp.sizes() : at::IntArrayRef{}));
        check_prompt(kp, {B, kp.size(1), D}, "key_prefix", layer);
        check_prompt(vp, {B, vp.size(1), D}, "value_prefix", layer);
        // Prefix tuning (Li & Liang '21): extend keys and values, never the queries.
        k = at::cat({to_heads(kp), k}, 2);
        v = at::cat({to_heads(vp), v}, 2);
      }
    }
#if TORCH_VERSION_MAJOR >= 2
    // The fused kernel (flash / memory-efficient attention on CUDA, a blocked one on the CPU):
    // the same softmax(q kᵀ / √d) v without the [B, H, N, N] matrix in memory.
    auto out = at::scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape({B, N, D});
#else
    auto attn = at::matmul(q * (1.0 / std::sqrt(static_cast<double>(head_dim_))), k.transpose(-2, -1)).softmax(-1);
    auto out = at::matmul(attn, v).transpose(1, 2).reshape({B, N, D});
#endif
    return proj->forward(out);
  }

  torch::nn::Linear qkv{nullptr}, proj{nullptr};

 private:
  at::Tensor to_heads(const at::Tensor& t) const {
    return t.reshape({t.size(0), t.size(1), num_heads_, head_dim_}).transpose(1, 2);
  }
  static void check_prompt(const at::Tensor& t, std::vector<int64_t> expected, const char* what, int64_t layer) {
    if (t.sizes() != at::IntArrayRef(expected))
      throw ShapeError(fmt::format("layer {}: {} has shape {}, expected {} ([batch, tokens, embed_dim])", layer,
                                   what, t.sizes(), at::IntArrayRef(expected)));
  }
  int64_t num_heads_, head_dim_;
};

class Mlp : public torch::nn::Module {
 public:
  Mlp(const ViTOptions& o)
      : fc1(register_module("fc1", torch::nn::Linear(o.embed_dim, hidden(o)))),
        fc2(register_module("fc2", torch::nn::Linear(hidden(o), o.embed_dim))) {}
  at::Tensor forward(const at::Tensor& x) { return fc2->forward(at::gelu(fc1->forward(x))); }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};

 private:
  static int64_t hidden(const ViTOptions& o) { return static_cast<int64_t>(static_cast<double>(o.embed_dim) * o.mlp_ratio); }
};

/// A pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)).
class Block : public torch::nn::Module {
 public:
  Block(const ViTOptions& o)
      : norm1(register_module("norm1", make_norm(o))),
        attn(register_module("attn", std::make_shared<Attention>(o))),
        norm2(register_module("norm2", make_norm(o))),
        mlp(register_module("mlp", std::make_shared<Mlp>(o))) {}
  at::Tensor forward(at::Tensor x, const LayerPrompt* prompt, int64_t layer) {
    x = x + attn->forward(norm1->forward(x), prompt, layer);
    return x + mlp->forward(norm2->forward(x));
  }
  static torch::nn::LayerNorm make_norm(const ViTOptions& o) {
    return torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.embed_dim}).eps(o.layer_norm_eps));
  }
  torch::nn::LayerNorm norm1{nullptr};
  std::shared_ptr<Attention> attn;
  torch::nn::LayerNorm norm2{nullptr};
  std::shared_ptr<Mlp> mlp;
};

/// Truncated normal N(mean, std) on [mean - 2 std, mean + 2 std], by inverse-CDF sampling.
inline void trunc_normal_(const at::Tensor& t, double std) {
  at::NoGradGuard no_grad;
  const double lo = 0.5 * (1.0 + std::erf(-2.0 / std::sqrt(2.0)));
  const double hi = 0.5 * (1.0 + std::erf(2.0 / std::sqrt(2.0)));
  t.uniform_(2 * lo - 1, 2 * hi - 1).erfinv_().mul_(std * std::sqrt(2.0)).clamp_(-2 * std, 2 * std);
}

}  // namespace detail

class VisionTransformer : public torch::nn::Module {
 public:
  using Options = ViTOptions;

  explicit VisionTransformer(ViTOptions options = {}) : options_(std::move(options)) {
    options_.validate("backbone");
    patch_embed = register_module("patch_embed", std::make_shared<detail::PatchEmbed>(options_));
    cls_token = register_parameter("cls_token", at::zeros({1, 1, options_.embed_dim}));
    pos_embed = register_parameter("pos_embed", at::zeros({1, 1 + options_.num_patches(), options_.embed_dim}));
    blocks = register_module("blocks", torch::nn::ModuleList());
    for (int64_t i = 0; i < options_.depth; ++i) blocks->push_back(std::make_shared<detail::Block>(options_));
    norm = register_module("norm", detail::Block::make_norm(options_));
    reset_parameters();
  }

  int64_t dim() const { return options_.embed_dim; }
  int64_t depth() const { return options_.depth; }
  int64_t num_heads() const { return options_.num_heads; }
  const ViTOptions& options() const { return options_; }

  /// timm's initialisation: truncated normal (std 0.02) for linear weights and the positional
  /// embedding, zero biases, a tiny [CLS] token.
  void reset_parameters() {
    at::NoGradGuard no_grad;
    detail::trunc_normal_(pos_embed, 0.02);
    cls_token.normal_(0.0, 1e-6);
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* linear = m->as<torch::nn::Linear>()) {
        detail::trunc_normal_(linear->weight, 0.02);
        if (linear->bias.defined()) linear->bias.zero_();
      }
    }
  }

  /// Replaces the final norm by a fresh LayerNorm (weight 1, bias 0) with `eps`, registered under
  /// the same name: SLCA's backbone trains a new nn.LayerNorm(768) (PyTorch's eps 1e-5) in place
  /// of the pre-trained one (GengDavid/SLCA convs/vits.py:709-711).
  void reset_final_norm(double eps) {
    auto fresh = torch::nn::LayerNorm(torch::nn::LayerNormOptions({options_.embed_dim}).eps(eps));
    for (const auto& p : norm->parameters()) {
      fresh->to(p.device(), p.scalar_type());
      break;
    }
    norm = replace_module("norm", fresh);
  }

  /// The query of key-query methods: final-norm [CLS] of the un-prompted backbone, no grad.
  at::Tensor query(const at::Tensor& images) {
    at::NoGradGuard no_grad;
    return forward_tokens(images, Prompts{}).select(1, 0);
  }

  /// Features [B, D] of the prompted backbone, read out as `prompts.readout` says.
  at::Tensor forward(const at::Tensor& images, const Prompts& prompts = {}) {
    return read_out(forward_tokens(images, prompts), prompts);
  }

  /// The feature of output tokens: [CLS], or the mean over the inserted prompt positions.
  static at::Tensor read_out(const at::Tensor& tokens, const Prompts& prompts) {
    if (prompts.readout == Readout::prompt_mean) {
      if (!prompts.input_tokens.defined())
        throw ShapeError("Readout::prompt_mean needs Prompts::input_tokens (prompt tuning); none were given");
      return tokens.narrow(1, 1, prompts.input_tokens.size(1)).mean(1);
    }
    return tokens.select(1, 0);
  }

  /// All output tokens after the final norm: [B, 1 + L_prompt + num_patches, D].
  at::Tensor forward_tokens(const at::Tensor& images, const Prompts& prompts) {
    return forward_from(embed(images), 0, prompts);
  }

  /// The un-prompted tokens entering layer `layer` ([CLS] and patches, [B, 1 + num_patches, D]):
  /// the shared part of a single-pass forward (core/query_source.hpp, QueryOptions).
  at::Tensor tokens_before(const at::Tensor& images, int64_t layer) {
    check_layer(layer);
    auto x = embed(images);
    for (int64_t i = 0; i < layer; ++i) x = blocks->ptr<detail::Block>(i)->forward(x, nullptr, i);
    return x;
  }

  /// The query read from tokens entering a layer: the final norm of their [CLS] token, [B, D].
  at::Tensor query_of(const at::Tensor& tokens) { return norm->forward(tokens.select(1, 0)); }

  /// The forward continued from `tokens` entering layer `layer`, with the prompts of layers >=
  /// `layer` (prompt tuning's tokens inserted after [CLS] before it); all output tokens after the
  /// final norm. Prompts for an earlier layer are an error (those layers have run).
  at::Tensor forward_from(at::Tensor x, int64_t layer, const Prompts& prompts) {
    check_layer(layer);
    for (int64_t i = 0; i < layer; ++i)
      if (prompts.find_layer(i) != nullptr)
        throw ShapeError(fmt::format("prompts for layer {} given to a forward that starts at layer {}; a single-pass "
                                     "query at layer {} needs every prompt at layer {} or later",
                                     i, layer, layer, layer));
    if (prompts.input_tokens.defined()) {
      const int64_t B = x.size(0);
      const auto& p = prompts.input_tokens;
      if (p.dim() != 3 || p.size(0) != B || p.size(2) != options_.embed_dim)
        throw ShapeError(fmt::format("Prompts::input_tokens has shape {}, expected [{}, L, {}] ([batch, tokens, embed_dim])",
                                     p.sizes(), B, options_.embed_dim));
      auto prompt_tokens = options_.prompt_position == PromptPositionEmbedding::class_token
                               ? p + pos_embed.narrow(1, 0, 1)
                               : p;
      x = at::cat({x.narrow(1, 0, 1), prompt_tokens, x.narrow(1, 1, x.size(1) - 1)}, 1);
    }
    for (int64_t i = layer; i < options_.depth; ++i)
      x = blocks->ptr<detail::Block>(i)->forward(x, prompts.find_layer(i), i);
    return norm->forward(x);
  }

  /// Features [B, D] of a forward continued from tokens entering `layer`, read out as `prompts.readout` says.
  at::Tensor forward_features_from(const at::Tensor& tokens, int64_t layer, const Prompts& prompts) {
    return read_out(forward_from(tokens, layer, prompts), prompts);
  }

  std::shared_ptr<detail::PatchEmbed> patch_embed;
  at::Tensor cls_token, pos_embed;
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};

 private:
  /// [CLS] and patch tokens with positions, before the first layer: [B, 1 + num_patches, D].
  at::Tensor embed(const at::Tensor& images) {
    check_images(images);
    const int64_t B = images.size(0);
    auto patches = patch_embed->forward(images) + pos_embed.narrow(1, 1, options_.num_patches());
    auto cls = (cls_token + pos_embed.narrow(1, 0, 1)).expand({B, 1, options_.embed_dim});
    return at::cat({cls, patches}, 1);
  }
  void check_layer(int64_t layer) const {
    if (layer < 0 || layer >= options_.depth)
      throw ShapeError(fmt::format("layer {} is outside the backbone's layers [0, {})", layer, options_.depth));
  }
  void check_images(const at::Tensor& images) const {
    if (images.dim() != 4 || images.size(1) != options_.in_channels || images.size(2) != options_.image_size ||
        images.size(3) != options_.image_size)
      throw ShapeError(fmt::format("VisionTransformer expects images [B, {}, {}, {}], got {}; set backbone.image_size or "
                                   "transform.size to match",
                                   options_.in_channels, options_.image_size, options_.image_size, images.sizes()));
  }
  ViTOptions options_;
};

}  // namespace clprompt
