#pragma once
// ClipModel: OpenAI CLIP's image and text encoders (Radford et al., ICML'21; `clip/model.py`)
// with OpenAI's / open_clip's module structure and parameter names (visual.conv1,
// visual.transformer.resblocks.{i}.attn.in_proj_weight, token_embedding, ln_final,
// text_projection, ...), so an OpenAI-layout state dict loads by name. Hugging Face files are
// renamed on load (clip_loader.hpp); docs/star-prompt-reference.md section 5 has the mapping.
//
//   auto loaded = clprompt::load_clip_directory("clip-vit-base-patch16");   // clip_loader.hpp
//   at::Tensor img = loaded.model->encode_image(images);          // [B, 512], not normalised
//   at::Tensor txt = loaded.model->encode_text(ids);              // [B, 512], ids [B, <=77]
//   double scale = loaded.model->logit_scale_value();             // 100 for OpenAI weights
//
// Both towers are pre-norm transformers with QuickGELU MLPs. The text tower runs under a
// causal mask and is read out at the <|endoftext|> token, which is the largest id, so
// argmax(ids) finds it (as OpenAI's code does). Computation is batch-first; OpenAI runs
// sequence-first through nn.MultiheadAttention, which is numerically the same.
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "clprompt/core/error.hpp"
#include "clprompt/core/options.hpp"

namespace clprompt {

struct ClipOptions {
  int64_t embed_dim = 512;  // output dimension of both towers (the joint embedding space)
  int64_t image_size = 224;
  int64_t patch_size = 16;
  int64_t vision_width = 768;
  int64_t vision_layers = 12;
  int64_t vision_heads = 12;
  int64_t context_length = 77;
  int64_t vocab_size = 49408;
  int64_t text_width = 512;
  int64_t text_layers = 12;
  int64_t text_heads = 8;
  double layer_norm_eps = 1e-5;  // nn.LayerNorm's default, used everywhere in CLIP

  /// OpenAI ViT-B/16 (the defaults).
  static ClipOptions vit_b16() { return {}; }
  /// OpenAI ViT-L/14, STAR-Prompt's default CLIP.
  static ClipOptions vit_l14() {
    ClipOptions o;
    o.embed_dim = 768;
    o.patch_size = 14;
    o.vision_width = 1024;
    o.vision_layers = 24;
    o.vision_heads = 16;
    o.text_width = 768;
    o.text_heads = 12;
    return o;
  }

  int64_t grid_size() const { return image_size / patch_size; }
  int64_t num_patches() const { return grid_size() * grid_size(); }

  friend bool operator==(const ClipOptions&, const ClipOptions&) = default;

  static constexpr auto fields() {
    return std::tuple{field("embed_dim", &ClipOptions::embed_dim),
                      field("image_size", &ClipOptions::image_size),
                      field("patch_size", &ClipOptions::patch_size),
                      field("vision_width", &ClipOptions::vision_width),
                      field("vision_layers", &ClipOptions::vision_layers),
                      field("vision_heads", &ClipOptions::vision_heads),
                      field("context_length", &ClipOptions::context_length),
                      field("vocab_size", &ClipOptions::vocab_size),
                      field("text_width", &ClipOptions::text_width),
                      field("text_layers", &ClipOptions::text_layers),
                      field("text_heads", &ClipOptions::text_heads),
                      field("layer_norm_eps", &ClipOptions::layer_norm_eps)};
  }
  void validate(const std::string& path) const {
    require_option(embed_dim > 0, path, "embed_dim", "must be positive");
    require_option(patch_size > 0, path, "patch_size", "must be positive");
    require_option(image_size > 0 && image_size % patch_size == 0, path, "image_size",
                   fmt::format("must be a positive multiple of patch_size ({}), got {}", patch_size, image_size));
    require_option(vision_layers > 0, path, "vision_layers", "must be positive");
    require_option(vision_heads > 0 && vision_width > 0 && vision_width % vision_heads == 0, path, "vision_width",
                   fmt::format("must be a positive multiple of vision_heads ({}), got {}", vision_heads, vision_width));
    // Two positions at least: <|startoftext|> and <|endoftext|>.
    require_option(context_length >= 2, path, "context_length", fmt::format("must be at least 2, got {}", context_length));
    require_option(vocab_size > 0, path, "vocab_size", "must be positive");
    require_option(text_layers > 0, path, "text_layers", "must be positive");
    require_option(text_heads > 0 && text_width > 0 && text_width % text_heads == 0, path, "text_width",
                   fmt::format("must be a positive multiple of text_heads ({}), got {}", text_heads, text_width));
    require_option(layer_norm_eps > 0, path, "layer_norm_eps", "must be positive");
  }
};

namespace detail {

/// CLIP's activation: x * sigmoid(1.702 x), a cheap approximation of GELU that the weights
/// were trained with (exact GELU gives slightly different features).
inline at::Tensor quick_gelu(const at::Tensor& x) { return x * at::sigmoid(1.702 * x); }

inline torch::nn::LayerNorm clip_layer_norm(int64_t width, double eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(eps));
}

/// Self-attention with nn.MultiheadAttention's parameters: in_proj_weight [3W, W] holds the
/// query, key and value projections in that row order, in_proj_bias [3W] likewise.
class ClipAttention : public torch::nn::Module {
 public:
  ClipAttention(int64_t width, int64_t heads)
      : in_proj_weight(register_parameter("in_proj_weight", at::zeros({3 * width, width}))),
        in_proj_bias(register_parameter("in_proj_bias", at::zeros({3 * width}))),
        out_proj(register_module("out_proj", torch::nn::Linear(width, width))),
        heads_(heads),
        head_dim_(width / heads) {}

  /// x [B, N, W]; mask: additive [N, N] (-inf where a query must not look) or undefined.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask) {
    const int64_t B = x.size(0), N = x.size(1), W = x.size(2);
    // [B, N, 3W] -> [3, B, H, N, hd]
    auto qkv = at::linear(x, in_proj_weight, in_proj_bias).reshape({B, N, 3, heads_, head_dim_}).permute({2, 0, 3, 1, 4});
    auto scores = at::matmul(qkv[0] * (1.0 / std::sqrt(static_cast<double>(head_dim_))), qkv[1].transpose(-2, -1));
    if (mask.defined()) scores = scores + mask;
    auto out = at::matmul(scores.softmax(-1), qkv[2]).transpose(1, 2).reshape({B, N, W});
    return out_proj->forward(out);
  }

  at::Tensor in_proj_weight, in_proj_bias;
  torch::nn::Linear out_proj{nullptr};

 private:
  int64_t heads_, head_dim_;
};

class ClipMlp : public torch::nn::Module {
 public:
  explicit ClipMlp(int64_t width)
      : c_fc(register_module("c_fc", torch::nn::Linear(width, 4 * width))),
        c_proj(register_module("c_proj", torch::nn::Linear(4 * width, width))) {}
  at::Tensor forward(const at::Tensor& x) { return c_proj->forward(quick_gelu(c_fc->forward(x))); }
  torch::nn::Linear c_fc{nullptr}, c_proj{nullptr};
};

/// OpenAI's ResidualAttentionBlock: x + attn(ln_1(x)), then x + mlp(ln_2(x)).
class ClipResidualBlock : public torch::nn::Module {
 public:
  ClipResidualBlock(int64_t width, int64_t heads, double eps)
      : ln_1(register_module("ln_1", clip_layer_norm(width, eps))),
        attn(register_module("attn", std::make_shared<ClipAttention>(width, heads))),
        ln_2(register_module("ln_2", clip_layer_norm(width, eps))),
        mlp(register_module("mlp", std::make_shared<ClipMlp>(width))) {}
  at::Tensor forward(at::Tensor x, const at::Tensor& mask) {
    x = x + attn->forward(ln_1->forward(x), mask);
    return x + mlp->forward(ln_2->forward(x));
  }
  torch::nn::LayerNorm ln_1{nullptr};
  std::shared_ptr<ClipAttention> attn;
  torch::nn::LayerNorm ln_2{nullptr};
  std::shared_ptr<ClipMlp> mlp;
};

/// A stack of blocks under the name `resblocks`, as OpenAI's Transformer.
class ClipTransformer : public torch::nn::Module {
 public:
  ClipTransformer(int64_t width, int64_t layers, int64_t heads, double eps)
      : resblocks(register_module("resblocks", torch::nn::ModuleList())) {
    for (int64_t i = 0; i < layers; ++i) resblocks->push_back(std::make_shared<ClipResidualBlock>(width, heads, eps));
  }
  at::Tensor forward(at::Tensor x, const at::Tensor& mask) {
    for (std::size_t i = 0; i < resblocks->size(); ++i) x = resblocks->ptr<ClipResidualBlock>(i)->forward(x, mask);
    return x;
  }
  ClipResidualBlock& block(int64_t i) { return *resblocks->ptr<ClipResidualBlock>(static_cast<std::size_t>(i)); }
  torch::nn::ModuleList resblocks{nullptr};
};

/// OpenAI's VisionTransformer (the `visual` tower): patches by a bias-free strided convolution,
/// a learned class token, ln_pre before the blocks, ln_post on the class token, then `proj`.
class ClipVisionTransformer : public torch::nn::Module {
 public:
  explicit ClipVisionTransformer(const ClipOptions& o)
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, o.vision_width, o.patch_size)
                                                             .stride(o.patch_size)
                                                             .bias(false)))),
        class_embedding(register_parameter("class_embedding", at::zeros({o.vision_width}))),
        positional_embedding(register_parameter("positional_embedding", at::zeros({o.num_patches() + 1, o.vision_width}))),
        ln_pre(register_module("ln_pre", clip_layer_norm(o.vision_width, o.layer_norm_eps))),
        transformer(register_module("transformer", std::make_shared<ClipTransformer>(o.vision_width, o.vision_layers,
                                                                                      o.vision_heads, o.layer_norm_eps))),
        ln_post(register_module("ln_post", clip_layer_norm(o.vision_width, o.layer_norm_eps))),
        proj(register_parameter("proj", at::zeros({o.vision_width, o.embed_dim}))) {}

  /// images [B, 3, S, S] -> [B, embed_dim].
  at::Tensor forward(const at::Tensor& images) {
    auto patches = conv1->forward(images).flatten(2).transpose(1, 2);  // [B, g*g, W]
    const int64_t B = patches.size(0), W = patches.size(2);
    auto cls = class_embedding.view({1, 1, W}).expand({B, 1, W});
    auto x = ln_pre->forward(at::cat({cls, patches}, 1) + positional_embedding);
    x = transformer->forward(x, at::Tensor());
    return at::matmul(ln_post->forward(x.select(1, 0)), proj);
  }

  torch::nn::Conv2d conv1{nullptr};
  at::Tensor class_embedding, positional_embedding;
  torch::nn::LayerNorm ln_pre{nullptr};
  std::shared_ptr<ClipTransformer> transformer;
  torch::nn::LayerNorm ln_post{nullptr};
  at::Tensor proj;
};

}  // namespace detail

class ClipModel : public torch::nn::Module {
 public:
  using Options = ClipOptions;

  /// CLIP's preprocessing normalisation (after resizing to image_size and scaling to [0, 1]).
  static constexpr std::array<double, 3> kMean{0.48145466, 0.4578275, 0.40821073};
  static constexpr std::array<double, 3> kStd{0.26862954, 0.26130258, 0.27577711};

  explicit ClipModel(ClipOptions options = {}) : options_(std::move(options)) {
    options_.validate("clip");
    const auto& o = options_;
    visual = register_module("visual", std::make_shared<detail::ClipVisionTransformer>(o));
    token_embedding = register_module("token_embedding", torch::nn::Embedding(o.vocab_size, o.text_width));
    positional_embedding = register_parameter("positional_embedding", at::zeros({o.context_length, o.text_width}));
    transformer = register_module("transformer", std::make_shared<detail::ClipTransformer>(o.text_width, o.text_layers,
                                                                                          o.text_heads, o.layer_norm_eps));
    ln_final = register_module("ln_final", detail::clip_layer_norm(o.text_width, o.layer_norm_eps));
    text_projection = register_parameter("text_projection", at::zeros({o.text_width, o.embed_dim}));
    // A 0-dim parameter, as in OpenAI's state dict (shape []).
    logit_scale = register_parameter("logit_scale", at::scalar_tensor(std::log(1.0 / 0.07), at::kFloat));
    reset_parameters();
  }

  const ClipOptions& options() const { return options_; }
  int64_t embed_dim() const { return options_.embed_dim; }
  int64_t text_width() const { return options_.text_width; }
  int64_t image_size() const { return options_.image_size; }
  int64_t context_length() const { return options_.context_length; }

  /// OpenAI's initialize_parameters, applied to both towers (OpenAI leaves the vision blocks
  /// at PyTorch's defaults): residual-branch outputs scaled down with depth so the stream's
  /// variance stays bounded; biases and LayerNorms at their identity values; logit_scale ln(1/0.07).
  void reset_parameters() {
    at::NoGradGuard no_grad;
    const auto& o = options_;
    token_embedding->weight.normal_(0.0, 0.02);
    positional_embedding.normal_(0.0, 0.01);
    text_projection.normal_(0.0, std::pow(static_cast<double>(o.text_width), -0.5));
    const double v_scale = std::pow(static_cast<double>(o.vision_width), -0.5);
    visual->class_embedding.normal_(0.0, v_scale);
    visual->positional_embedding.normal_(0.0, v_scale);
    visual->proj.normal_(0.0, v_scale);
    init_transformer(*transformer, o.text_width, o.text_layers);
    init_transformer(*visual->transformer, o.vision_width, o.vision_layers);
    logit_scale.fill_(std::log(1.0 / 0.07));
  }

  /// Image features [B, embed_dim], NOT L2-normalised, of images [B, 3, S, S] already
  /// normalised with kMean / kStd.
  at::Tensor encode_image(const at::Tensor& images) {
    if (images.dim() != 4 || images.size(1) != 3 || images.size(2) != options_.image_size ||
        images.size(3) != options_.image_size || !at::isFloatingType(images.scalar_type()))
      throw ShapeError(fmt::format("ClipModel::encode_image expects float images [B, 3, {0}, {0}] (CLIP-normalised), got "
                                   "{1} of dtype {2}; resize/crop to the model's image_size {0}",
                                   options_.image_size, images.sizes(), images.scalar_type()));
    return visual->forward(images);
  }

  /// Text features [B, embed_dim], NOT L2-normalised, of token ids [B, L] (int64, L <=
  /// context_length, <|endoftext|> the largest id of each row) as ClipTokenizer::tokenize gives.
  at::Tensor encode_text(const at::Tensor& ids) { return encode_text_embeddings(embed_tokens(ids), ids); }

  /// Token embeddings [B, L, text_width] of ids [B, L], without positional embedding: replace
  /// some of them by learned context vectors (CoOp, STAR-Prompt) and pass the result to
  /// encode_text_embeddings with the same ids.
  at::Tensor embed_tokens(const at::Tensor& ids) {
    check_ids(ids, "embed_tokens");
    return token_embedding->forward(ids);
  }

  /// Text features [B, embed_dim] from token embeddings [B, L, text_width] (positional
  /// embedding added here); `ids` [B, L] only locate <|endoftext|> (argmax) for pooling.
  at::Tensor encode_text_embeddings(const at::Tensor& token_embeddings, const at::Tensor& ids) {
    check_ids(ids, "encode_text_embeddings");
    auto x = text_hidden_states(token_embeddings);
    if (x.size(0) != ids.size(0) || x.size(1) != ids.size(1))
      throw ShapeError(fmt::format("ClipModel::encode_text_embeddings: token_embeddings {} and ids {} must share [B, L]",
                                   token_embeddings.sizes(), ids.sizes()));
    const int64_t B = x.size(0), W = x.size(2);
    auto eot = ids.argmax(-1).view({B, 1, 1}).expand({B, 1, W});
    return at::matmul(x.gather(1, eot).squeeze(1), text_projection);
  }

  /// Every position's hidden state after ln_final, [B, L, text_width], from token embeddings
  /// [B, L, text_width]. Position i depends only on tokens 0..i (causal mask).
  at::Tensor text_hidden_states(const at::Tensor& token_embeddings) {
    const auto& t = token_embeddings;
    if (t.dim() != 3 || t.size(1) < 1 || t.size(1) > options_.context_length || t.size(2) != options_.text_width)
      throw ShapeError(fmt::format("ClipModel: token embeddings have shape {}, expected [B, L <= {}, {}] ([batch, "
                                   "tokens, text_width])",
                                   t.sizes(), options_.context_length, options_.text_width));
    const int64_t L = t.size(1);
    auto x = t + positional_embedding.narrow(0, 0, L);
    x = transformer->forward(x, causal_mask(L, x.options()));
    return ln_final->forward(x);
  }

  /// exp(logit_scale): the temperature-inverse multiplying cosine similarities (100 for
  /// OpenAI's weights).
  double logit_scale_value() const { return std::exp(logit_scale.item<double>()); }

  /// Additive mask [L, L]: 0 on and below the diagonal, -inf above (OpenAI's build_attention_mask).
  static at::Tensor causal_mask(int64_t L, const at::TensorOptions& options) {
    return at::full({L, L}, -std::numeric_limits<double>::infinity(), options).triu_(1);
  }

  std::shared_ptr<detail::ClipVisionTransformer> visual;
  torch::nn::Embedding token_embedding{nullptr};
  at::Tensor positional_embedding;
  std::shared_ptr<detail::ClipTransformer> transformer;
  torch::nn::LayerNorm ln_final{nullptr};
  at::Tensor text_projection, logit_scale;

 private:
  static void init_transformer(detail::ClipTransformer& t, int64_t width, int64_t layers) {
    const double w = static_cast<double>(width);
    const double attn_std = std::pow(w, -0.5);
    const double proj_std = attn_std * std::pow(2.0 * static_cast<double>(layers), -0.5);
    const double fc_std = std::pow(2.0 * w, -0.5);
    for (int64_t i = 0; i < layers; ++i) {
      auto& b = t.block(i);
      b.attn->in_proj_weight.normal_(0.0, attn_std);
      b.attn->in_proj_bias.zero_();
      b.attn->out_proj->weight.normal_(0.0, proj_std);
      b.attn->out_proj->bias.zero_();
      b.mlp->c_fc->weight.normal_(0.0, fc_std);
      b.mlp->c_fc->bias.zero_();
      b.mlp->c_proj->weight.normal_(0.0, proj_std);
      b.mlp->c_proj->bias.zero_();
    }
  }

  void check_ids(const at::Tensor& ids, const char* where) const {
    if (ids.dim() != 2 || ids.size(1) < 1 || ids.size(1) > options_.context_length || ids.scalar_type() != at::kLong)
      throw ShapeError(fmt::format("ClipModel::{}: expected int64 token ids [B, L <= {}], got {} of dtype {}", where,
                                   options_.context_length, ids.sizes(), ids.scalar_type()));
    if (ids.numel() == 0) return;
    const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= options_.vocab_size)
      throw ShapeError(fmt::format("ClipModel::{}: token ids must lie in [0, {}) (vocab_size), got values in [{}, {}]",
                                   where, options_.vocab_size, lo, hi));
  }

  ClipOptions options_;
};

}  // namespace clprompt
