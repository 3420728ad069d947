// CLIP encoders (backbone/clip.hpp) and their loaders (backbone/clip_loader.hpp) on a tiny
// randomly initialised CLIP, checked against independent re-statements of the forward pass
// (libtorch's MultiheadAttention, and plain ATen ops written position by position).
#include <cmath>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <torch/nn/modules/activation.h>

#include "clip/tiny_clip.hpp"
#include "clprompt/clip/clip_model.hpp"
#include "clprompt/clip/clip_loader.hpp"
#include "clprompt/io/safetensors.hpp"
#include "clprompt/io/state_dict.hpp"
#include "test_util.hpp"
#include "clip/tiny_vocab.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which Catch's must override.
#include <catch2/catch.hpp>

using clprompt::CheckpointError;
using clprompt::ClipModel;
using clprompt::ClipNaming;
using clprompt::ClipOptions;
using clprompt::FileError;
using clprompt::ShapeError;
using clprompt::TensorMap;
using clprompt::test::error_message;
using clprompt::test::file_error;
using clprompt::test::TempDir;
using clprompt::test::tiny_clip_model;
using clprompt::test::tiny_clip_options;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

using clprompt::test::kTinyEot;
using clprompt::test::kTinySot;

// Two padded token rows of different lengths, as ClipTokenizer::tokenize lays them out.
at::Tensor sample_ids(int64_t length = 16) {
  std::vector<int64_t> a = {kTinySot, 72, 320, 515, kTinyEot}, b = {kTinySot, 5, 300, 301, 302, 303, 17, kTinyEot};
  a.resize(static_cast<std::size_t>(length), 0);
  b.resize(static_cast<std::size_t>(length), 0);
  return at::stack({at::tensor(a, at::kLong), at::tensor(b, at::kLong)});
}

at::Tensor sample_images(const ClipOptions& o, uint64_t seed = 1) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn({2, 3, o.image_size, o.image_size}, gen, at::TensorOptions(at::kFloat));
}

// Copies of a checkpoint's tensors (so edits do not touch the model).
TensorMap copy_of(const TensorMap& tensors) {
  TensorMap out;
  for (const auto& [name, t] : tensors) out.emplace(name, t.clone());
  return out;
}

// ---- an independent re-statement of CLIP's forward pass -----------------------------------

at::Tensor ref_layer_norm(const at::Tensor& x, const torch::nn::LayerNorm& ln) {
  auto mean = x.mean(-1, /*keepdim=*/true);
  auto var = (x - mean).pow(2).mean(-1, /*keepdim=*/true);
  return (x - mean) / (var + 1e-5).sqrt() * ln->weight + ln->bias;
}

// One residual block, one query position at a time: position i attends to positions 0..i
// when causal (no mask tensor involved), to all otherwise.
at::Tensor ref_block(clprompt::detail::ClipResidualBlock& blk, const at::Tensor& x, int64_t heads, bool causal) {
  const int64_t B = x.size(0), N = x.size(1), W = x.size(2), hd = W / heads;
  auto h = ref_layer_norm(x, blk.ln_1);
  const auto& w = blk.attn->in_proj_weight;
  const auto& b = blk.attn->in_proj_bias;
  auto q = at::matmul(h, w.narrow(0, 0, W).t()) + b.narrow(0, 0, W);
  auto k = at::matmul(h, w.narrow(0, W, W).t()) + b.narrow(0, W, W);
  auto v = at::matmul(h, w.narrow(0, 2 * W, W).t()) + b.narrow(0, 2 * W, W);
  std::vector<at::Tensor> rows;
  for (int64_t i = 0; i < N; ++i) {
    const int64_t visible = causal ? i + 1 : N;
    std::vector<at::Tensor> head_outs;
    for (int64_t hh = 0; hh < heads; ++hh) {
      auto qi = q.select(1, i).narrow(1, hh * hd, hd);                 // [B, hd]
      auto kh = k.narrow(1, 0, visible).narrow(2, hh * hd, hd);        // [B, visible, hd]
      auto vh = v.narrow(1, 0, visible).narrow(2, hh * hd, hd);
      auto scores = (kh * qi.unsqueeze(1)).sum(-1) / std::sqrt(static_cast<double>(hd));  // [B, visible]
      auto p = scores.exp() / scores.exp().sum(-1, true);
      head_outs.push_back((vh * p.unsqueeze(-1)).sum(1));             // [B, hd]
    }
    rows.push_back(at::cat(head_outs, 1));
  }
  auto attn = at::matmul(at::stack(rows, 1), blk.attn->out_proj->weight.t()) + blk.attn->out_proj->bias;
  auto y = x + attn;
  auto m = at::matmul(ref_layer_norm(y, blk.ln_2), blk.mlp->c_fc->weight.t()) + blk.mlp->c_fc->bias;
  m = m / (1 + (-1.702 * m).exp());
  m = at::matmul(m, blk.mlp->c_proj->weight.t()) + blk.mlp->c_proj->bias;
  (void)B;
  return y + m;
}

at::Tensor ref_encode_text(ClipModel& model, const at::Tensor& ids) {
  const auto& o = model.options();
  const int64_t B = ids.size(0), L = ids.size(1);
  auto x = model.token_embedding->weight.index_select(0, ids.reshape({-1})).reshape({B, L, o.text_width});
  x = x + model.positional_embedding.narrow(0, 0, L).unsqueeze(0);
  for (int64_t l = 0; l < o.text_layers; ++l) x = ref_block(model.transformer->block(l), x, o.text_heads, true);
  std::vector<at::Tensor> pooled;
  for (int64_t r = 0; r < B; ++r) {
    int64_t eot = 0;  // the first position holding the row's largest id
    for (int64_t i = 0; i < L; ++i)
      if (ids[r][i].item<int64_t>() > ids[r][eot].item<int64_t>()) eot = i;
    pooled.push_back(ref_layer_norm(x[r][eot], model.ln_final));
  }
  return at::matmul(at::stack(pooled), model.text_projection);
}

at::Tensor ref_encode_image(ClipModel& model, const at::Tensor& images) {
  const auto& o = model.options();
  const int64_t B = images.size(0), P = o.patch_size, g = o.grid_size(), W = o.vision_width;
  // Patches in row-major grid order, each flattened as (channel, row, column) like conv1's kernel.
  auto patches = images.reshape({B, 3, g, P, g, P}).permute({0, 2, 4, 1, 3, 5}).reshape({B, g * g, 3 * P * P});
  auto x = at::matmul(patches, model.visual->conv1->weight.reshape({W, -1}).t());
  x = at::cat({model.visual->class_embedding.expand({B, 1, W}), x}, 1) + model.visual->positional_embedding;
  x = ref_layer_norm(x, model.visual->ln_pre);
  for (int64_t l = 0; l < o.vision_layers; ++l) x = ref_block(model.visual->transformer->block(l), x, o.vision_heads, false);
  return at::matmul(ref_layer_norm(x.select(1, 0), model.visual->ln_post), model.visual->proj);
}

std::string checkpoint_error(const std::function<void()>& f) { return error_message<CheckpointError>(f); }

}  // namespace

TEST_CASE("ClipModel registers OpenAI's parameter names and shapes", "[backbone][clip]") {
  ClipModel model(tiny_clip_options());
  const auto sd = clprompt::state_dict(model);
  const std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {
      {"visual.conv1.weight", {64, 3, 4, 4}},
      {"visual.class_embedding", {64}},
      {"visual.positional_embedding", {5, 64}},
      {"visual.ln_pre.weight", {64}},
      {"visual.transformer.resblocks.1.attn.in_proj_weight", {192, 64}},
      {"visual.transformer.resblocks.1.attn.in_proj_bias", {192}},
      {"visual.transformer.resblocks.1.attn.out_proj.weight", {64, 64}},
      {"visual.transformer.resblocks.0.mlp.c_fc.weight", {256, 64}},
      {"visual.transformer.resblocks.0.mlp.c_proj.bias", {64}},
      {"visual.transformer.resblocks.0.ln_2.bias", {64}},
      {"visual.ln_post.bias", {64}},
      {"visual.proj", {64, 16}},
      {"token_embedding.weight", {531, 64}},
      {"positional_embedding", {16, 64}},
      {"transformer.resblocks.1.ln_1.weight", {64}},
      {"transformer.resblocks.1.attn.in_proj_weight", {192, 64}},
      {"ln_final.weight", {64}},
      {"text_projection", {64, 16}},
      {"logit_scale", {}},
  };
  for (const auto& [name, shape] : expected) {
    INFO(name);
    REQUIRE(sd.count(name) == 1);
    CHECK(sd.at(name).sizes() == at::IntArrayRef(shape));
  }
  // 12 tensors per block (ln_1, in_proj, out_proj, ln_2, c_fc, c_proj: weight and bias each);
  // vision: 8 more (conv1, class, positions, ln_pre 2, ln_post 2, proj); text: 5 more (tokens,
  // positions, ln_final 2, projection); logit_scale. The causal mask is not a buffer.
  CHECK(sd.size() == 2 * 12 + 8 + 2 * 12 + 5 + 1);
  CHECK(sd.count("attn_mask") == 0);
  CHECK(sd.at("visual.conv1.weight").dim() == 4);
  CHECK_FALSE(model.visual->conv1->bias.defined());
  CHECK(model.logit_scale_value() == Approx(1 / 0.07));
  CHECK(model.embed_dim() == 16);
  CHECK(model.text_width() == 64);
  CHECK(model.image_size() == 8);
  CHECK(ClipModel::kMean[0] == 0.48145466);
  CHECK(ClipModel::kStd[2] == 0.27577711);
  CHECK(ClipOptions::vit_l14().vision_width == 1024);
  CHECK(ClipOptions::vit_b16().text_heads == 8);
}

TEST_CASE("ClipModel's forward matches an independent position-by-position computation", "[backbone][clip]") {
  // Two heads per tower here (built directly, not inferred from a file) to cover the head split.
  auto options = tiny_clip_options();
  options.vision_heads = 2;
  options.text_heads = 2;
  auto model = tiny_clip_model(3, options);
  const auto ids = sample_ids(12);
  const auto images = sample_images(options);
  at::NoGradGuard no_grad;
  const auto text = model->encode_text(ids);
  const auto image = model->encode_image(images);
  CHECK(text.sizes() == at::IntArrayRef({2, 16}));
  CHECK(image.sizes() == at::IntArrayRef({2, 16}));
  CHECK(at::allclose(text, ref_encode_text(*model, ids), 1e-4, 1e-5));
  CHECK(at::allclose(image, ref_encode_image(*model, images), 1e-4, 1e-5));
  // HF pads with <|endoftext|> instead of 0: argmax still pools at the first one.
  auto hf_padded = ids.clone();
  hf_padded[0].narrow(0, 5, 7).fill_(kTinyEot);
  CHECK(at::allclose(model->encode_text(hf_padded).select(0, 0), text.select(0, 0), 1e-5, 1e-6));
}

TEST_CASE("a CLIP attention block equals libtorch's MultiheadAttention with the causal mask", "[backbone][clip]") {
  auto options = tiny_clip_options();
  options.text_heads = 4;
  auto model = tiny_clip_model(5, options);
  auto& attn = *model->transformer->block(0).attn;
  torch::nn::MultiheadAttention mha(torch::nn::MultiheadAttentionOptions(64, 4));
  {
    at::NoGradGuard no_grad;
    mha->in_proj_weight.copy_(attn.in_proj_weight);  // rows q, k, v: PyTorch's own layout
    mha->in_proj_bias.copy_(attn.in_proj_bias);
    mha->out_proj->weight.copy_(attn.out_proj->weight);
    mha->out_proj->bias.copy_(attn.out_proj->bias);
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const auto x = at::randn({3, 6, 64}, gen, at::TensorOptions(at::kFloat));
  const auto mask = ClipModel::causal_mask(6, x.options());
  CHECK(mask[0][1].item<float>() == -INFINITY);
  CHECK(mask[1][0].item<float>() == 0);
  CHECK(mask[2][2].item<float>() == 0);
  at::NoGradGuard no_grad;
  // MultiheadAttention is sequence-first: [L, B, W].
  const auto xt = x.transpose(0, 1);
  const auto expected = std::get<0>(mha->forward(xt, xt, xt, {}, false, mask)).transpose(0, 1);
  CHECK(at::allclose(attn.forward(x, mask), expected, 1e-4, 1e-6));
  const auto unmasked = std::get<0>(mha->forward(xt, xt, xt)).transpose(0, 1);
  CHECK(at::allclose(attn.forward(x, at::Tensor()), unmasked, 1e-4, 1e-6));
  CHECK_FALSE(at::allclose(unmasked, expected, 1e-3, 1e-4));
}

TEST_CASE("the text encoder is causal", "[backbone][clip]") {
  auto model = tiny_clip_model(11);
  at::NoGradGuard no_grad;
  const auto ids = sample_ids().narrow(0, 1, 1).clone();  // sot 5 300 301 302 303 17 eot 0...
  const auto before = model->text_hidden_states(model->embed_tokens(ids));
  auto changed = ids.clone();
  changed[0][4] = 99;
  const auto after = model->text_hidden_states(model->embed_tokens(changed));
  CHECK(at::allclose(after.narrow(1, 0, 4), before.narrow(1, 0, 4), 0, 1e-6));
  for (int64_t i = 4; i < 16; ++i) {
    INFO("position " << i);
    CHECK((after.select(1, i) - before.select(1, i)).abs().max().item<float>() > 1e-4);
  }
  // Pooled at <|endoftext|> (position 7): tokens after it do not count, tokens before it do.
  const auto pooled = model->encode_text(ids);
  auto tail = ids.clone();
  tail[0][10] = 123;
  CHECK(at::allclose(model->encode_text(tail), pooled, 0, 1e-6));
  CHECK_FALSE(at::allclose(model->encode_text(changed), pooled, 1e-3, 1e-4));
}

TEST_CASE("encode_text is encode_text_embeddings of embed_tokens; learned context gets gradients",
          "[backbone][clip]") {
  auto model = tiny_clip_model(13);
  const auto ids = sample_ids();
  {
    at::NoGradGuard no_grad;
    CHECK(at::equal(model->encode_text(ids), model->encode_text_embeddings(model->embed_tokens(ids), ids)));
    CHECK(at::equal(model->embed_tokens(ids), model->token_embedding->weight.index_select(0, ids.reshape({-1})).view({2, 16, 64})));
  }
  // CoOp / STAR-Prompt: position 1 replaced by a learned context vector per row.
  auto ctx = at::zeros({2, 1, 64}).normal_(0, 0.02).set_requires_grad(true);
  const auto tokens = model->embed_tokens(ids).detach();
  const auto prompted = at::cat({tokens.narrow(1, 0, 1), ctx, tokens.narrow(1, 2, 14)}, 1);
  const auto features = model->encode_text_embeddings(prompted, ids);
  CHECK_FALSE(at::allclose(features, model->encode_text(ids), 1e-3, 1e-4));
  features.pow(2).sum().backward();
  REQUIRE(ctx.grad().defined());
  CHECK(ctx.grad().abs().sum().item<float>() > 0);
}

TEST_CASE("ClipModel rejects malformed inputs with ShapeError", "[backbone][clip]") {
  auto model = tiny_clip_model();
  auto shape_error = [](const std::function<void()>& f) { return error_message<ShapeError>(f); };
  CHECK_THAT(shape_error([&] { (void)model->encode_image(at::zeros({2, 3, 16, 16})); }),
             Contains("expects float images [B, 3, 8, 8]") && Contains("[2, 3, 16, 16]"));
  CHECK_THAT(shape_error([&] { (void)model->encode_image(at::zeros({2, 1, 8, 8})); }), Contains("[2, 1, 8, 8]"));
  CHECK_THAT(shape_error([&] { (void)model->encode_text(at::zeros({2, 16})); }),
             Contains("expected int64 token ids [B, L <= 16]") && Contains("Float"));
  CHECK_THAT(shape_error([&] { (void)model->encode_text(at::zeros({2, 17}, at::kLong)); }), Contains("[2, 17]"));
  CHECK_THAT(shape_error([&] { (void)model->encode_text(at::full({1, 3}, 531, at::kLong)); }),
             Contains("must lie in [0, 531)") && Contains("[531, 531]"));
  CHECK_THAT(shape_error([&] { (void)model->encode_text_embeddings(at::zeros({2, 16, 32}), sample_ids()); }),
             Contains("[2, 16, 32]") && Contains("[B, L <= 16, 64]"));
  CHECK_THAT(shape_error([&] { (void)model->encode_text_embeddings(at::zeros({2, 8, 64}), sample_ids()); }),
             Contains("must share [B, L]"));
}

TEST_CASE("CLIP weights round-trip through both namings with the sizes inferred", "[backbone][clip]") {
  TempDir dir;
  auto model = tiny_clip_model(17);
  const auto ids = sample_ids();
  const auto images = sample_images(model->options());
  at::NoGradGuard no_grad;
  const auto text = model->encode_text(ids);
  const auto image = model->encode_image(images);
  const auto n_tensors = clprompt::state_dict(*model).size();

  for (const auto naming : {ClipNaming::openai, ClipNaming::huggingface}) {
    const std::string path = dir / ("clip-" + clprompt::to_string(naming) + ".safetensors");
    INFO(path);
    clprompt::save_clip(*model, path, naming);
    const auto contents = clprompt::read_safetensors(path);
    CHECK(clprompt::detect_clip_naming(contents.tensors, path) == naming);
    CHECK(contents.metadata.at("format") == "pt");

    const auto loaded = clprompt::load_clip_model(path);
    CHECK(loaded->options() == model->options());
    CHECK(at::equal(loaded->encode_text(ids), text));
    CHECK(at::equal(loaded->encode_image(images), image));
    CHECK(loaded->logit_scale_value() == Approx(100.0));

    ClipModel fresh(model->options());
    const auto report = clprompt::load_clip(fresh, path);
    CHECK(report.ok());
    CHECK(report.loaded.size() == n_tensors);
    CHECK(at::equal(fresh.encode_text(ids), text));
  }
}

TEST_CASE("the Hugging Face file has Hugging Face's names and layouts", "[backbone][clip]") {
  TempDir dir;
  auto model = tiny_clip_model(19);
  clprompt::save_clip(*model, dir / "model.safetensors", ClipNaming::huggingface);
  const auto hf = clprompt::read_safetensors(dir / "model.safetensors").tensors;
  // Each in_proj pair becomes three pairs: 4 more tensors per block.
  CHECK(hf.size() == clprompt::state_dict(*model).size() + 4 * 4);
  for (const auto& name : hf) CHECK((name.first == "logit_scale" || name.first.starts_with("text_model.") ||
                                     name.first.starts_with("vision_model.") || name.first.ends_with("projection.weight")));
  auto& block = model->transformer->block(0);
  const auto& w = block.attn->in_proj_weight;
  REQUIRE(hf.count("text_model.encoder.layers.0.self_attn.q_proj.weight") == 1);
  CHECK(at::equal(hf.at("text_model.encoder.layers.0.self_attn.q_proj.weight"), w.narrow(0, 0, 64)));
  CHECK(at::equal(hf.at("text_model.encoder.layers.0.self_attn.k_proj.weight"), w.narrow(0, 64, 64)));
  CHECK(at::equal(hf.at("text_model.encoder.layers.0.self_attn.v_proj.weight"), w.narrow(0, 128, 64)));
  CHECK(at::equal(hf.at("text_model.encoder.layers.0.self_attn.v_proj.bias"), block.attn->in_proj_bias.narrow(0, 128, 64)));
  CHECK(at::equal(hf.at("text_model.encoder.layers.0.mlp.fc1.weight"), block.mlp->c_fc->weight));
  CHECK(at::equal(hf.at("text_model.encoder.layers.0.layer_norm2.bias"), block.ln_2->bias));
  CHECK(at::equal(hf.at("vision_model.encoder.layers.1.mlp.fc2.weight"),
                  model->visual->transformer->block(1).mlp->c_proj->weight));
  CHECK(at::equal(hf.at("vision_model.pre_layrnorm.weight"), model->visual->ln_pre->weight));
  CHECK(at::equal(hf.at("vision_model.post_layernorm.bias"), model->visual->ln_post->bias));
  CHECK(at::equal(hf.at("vision_model.embeddings.patch_embedding.weight"), model->visual->conv1->weight));
  CHECK(at::equal(hf.at("vision_model.embeddings.class_embedding"), model->visual->class_embedding));
  CHECK(at::equal(hf.at("text_model.embeddings.position_embedding.weight"), model->positional_embedding));
  CHECK(at::equal(hf.at("text_model.final_layer_norm.weight"), model->ln_final->weight));
  CHECK(hf.at("visual_projection.weight").sizes() == at::IntArrayRef({16, 64}));  // [embed, width]
  CHECK(at::equal(hf.at("visual_projection.weight"), model->visual->proj.t()));
  CHECK(at::equal(hf.at("text_projection.weight"), model->text_projection.t()));
  CHECK(hf.count("visual.proj") == 0);

  // Older HF files keep position_ids buffers; OpenAI's keep three scalars. Both are ignored.
  auto with_extras = copy_of(hf);
  with_extras.emplace("text_model.embeddings.position_ids", at::arange(16, at::kLong).unsqueeze(0));
  with_extras.emplace("vision_model.embeddings.position_ids", at::arange(5, at::kLong).unsqueeze(0));
  clprompt::write_safetensors(dir / "old.safetensors", with_extras);
  CHECK(clprompt::load_clip_model(dir / "old.safetensors")->options() == model->options());
  auto openai = copy_of(clprompt::state_dict(*model));
  openai.emplace("input_resolution", at::scalar_tensor(8, at::kLong));
  openai.emplace("context_length", at::scalar_tensor(16, at::kLong));
  openai.emplace("vocab_size", at::scalar_tensor(531, at::kLong));
  clprompt::write_safetensors(dir / "openai.safetensors", openai);
  ClipModel fresh(model->options());
  const auto report = clprompt::load_clip(fresh, dir / "openai.safetensors");
  CHECK(report.ignored.size() == 3);
  // The two conversions are inverse to each other.
  const auto back = clprompt::clip_openai_from_hf(clprompt::clip_hf_from_openai(clprompt::state_dict(*model)), "x");
  const auto original = clprompt::state_dict(*model);
  REQUIRE(back.size() == original.size());
  for (const auto& [name, t] : original) CHECK(at::equal(back.at(name), t));
}

TEST_CASE("CLIP checkpoints that do not match give errors naming the file and tensors", "[backbone][clip]") {
  TempDir dir;
  auto model = tiny_clip_model(23);
  const auto openai = clprompt::state_dict(*model);
  const auto hf = clprompt::clip_hf_from_openai(openai);
  ClipModel target(model->options());

  SECTION("a renamed tensor (OpenAI naming)") {
    auto tensors = copy_of(openai);
    tensors.emplace("ln_finale.weight", tensors.at("ln_final.weight"));
    tensors.erase("ln_final.weight");
    const std::string path = dir / "renamed.safetensors";
    clprompt::write_safetensors(path, tensors);
    const auto msg = checkpoint_error([&] { clprompt::load_clip(target, path); });
    CHECK_THAT(msg, StartsWith(path + ": checkpoint does not match the model, nothing was loaded"));
    CHECK_THAT(msg, Contains("missing from the checkpoint (1): ln_final.weight"));
    CHECK_THAT(msg, Contains("unexpected in the checkpoint (1): ln_finale.weight"));
  }
  SECTION("a renamed tensor (Hugging Face naming) is reported under its own name") {
    auto tensors = copy_of(hf);
    tensors.emplace("text_model.final_layer_norm.gamma", tensors.at("text_model.final_layer_norm.weight"));
    tensors.erase("text_model.final_layer_norm.weight");
    const std::string path = dir / "renamed-hf.safetensors";
    clprompt::write_safetensors(path, tensors);
    const auto msg = checkpoint_error([&] { (void)clprompt::load_clip_model(path); });
    CHECK_THAT(msg, StartsWith(path + ": "));
    CHECK_THAT(msg, Contains("missing from the checkpoint (1): ln_final.weight"));
    CHECK_THAT(msg, Contains("unexpected in the checkpoint (1): text_model.final_layer_norm.gamma"));
  }
  SECTION("a wrong-shaped tensor") {
    auto tensors = copy_of(hf);
    tensors["visual_projection.weight"] = at::zeros({17, 64});
    const std::string path = dir / "shape.safetensors";
    clprompt::write_safetensors(path, tensors);
    const auto msg = checkpoint_error([&] { clprompt::load_clip(target, path); });
    CHECK_THAT(msg, StartsWith(path + ": "));
    CHECK_THAT(msg, Contains("shape mismatch (1): visual.proj: checkpoint [64, 17] vs model [64, 16]"));
    CHECK_THAT(checkpoint_error([&] { (void)clprompt::load_clip_model(path); }),
               Contains("visual.proj: checkpoint [64, 17] vs model [64, 16]"));
  }
  SECTION("a file in neither naming") {
    const std::string path = dir / "other.safetensors";
    clprompt::write_safetensors(path, {{"blocks.0.attn.qkv.weight", at::zeros({3})}, {"cls_token", at::zeros({1})}});
    const auto msg = checkpoint_error([&] { (void)clprompt::load_clip_model(path); });
    CHECK_THAT(msg, StartsWith(path + ": not a CLIP checkpoint in a known naming"));
    CHECK_THAT(msg, Contains("visual.conv1.weight") && Contains("text_model.*") &&
                        Contains("found blocks.0.attn.qkv.weight, cls_token"));
    auto mixed = copy_of(openai);
    mixed.emplace("text_model.embeddings.token_embedding.weight", at::zeros({1}));
    CHECK_THAT(checkpoint_error([&] { (void)clprompt::detect_clip_naming(mixed, "m.safetensors"); }),
               StartsWith("m.safetensors: mixes Hugging Face names ('text_model.embeddings.token_embedding.weight') "
                          "and OpenAI / open_clip names"));
  }
  SECTION("a missing part of a q/k/v group") {
    auto tensors = copy_of(hf);
    tensors.erase("vision_model.encoder.layers.1.self_attn.k_proj.bias");
    const std::string path = dir / "qkv.safetensors";
    clprompt::write_safetensors(path, tensors);
    CHECK(checkpoint_error([&] { (void)clprompt::load_clip_model(path); }) ==
          path + ": tensor 'vision_model.encoder.layers.1.self_attn.k_proj.bias' is missing; the query, key and value "
                 "projections are all needed to build 'visual.transformer.resblocks.1.attn.in_proj_bias'");
    tensors = copy_of(hf);
    tensors["text_model.encoder.layers.0.self_attn.v_proj.weight"] = at::zeros({64, 32});
    CHECK_THAT(checkpoint_error([&] { (void)clprompt::clip_openai_from_hf(tensors, "f"); }),
               Contains("'text_model.encoder.layers.0.self_attn.v_proj.weight' [64, 32] must have the same shape"));
  }
  SECTION("tensors needed to infer the sizes") {
    auto tensors = copy_of(openai);
    tensors.erase("visual.conv1.weight");
    CHECK(checkpoint_error([&] { (void)clprompt::clip_options_from_checkpoint(tensors, "c.safetensors"); }) ==
          "c.safetensors: tensor 'visual.conv1.weight' is missing; it gives the CLIP model's vision width and patch size");
    tensors = copy_of(openai);
    tensors.erase("text_projection");
    CHECK_THAT(checkpoint_error([&] { (void)clprompt::clip_options_from_checkpoint(tensors, "c.safetensors"); }),
               Contains("'text_projection' is missing"));
    tensors = copy_of(openai);
    tensors["visual.positional_embedding"] = at::zeros({6, 64});
    CHECK_THAT(checkpoint_error([&] { (void)clprompt::clip_options_from_checkpoint(tensors, "c.safetensors"); }),
               Contains("'visual.positional_embedding' has 6 rows"));
    auto narrow = tiny_clip_options();
    narrow.vision_width = 96;
    CHECK_THAT(checkpoint_error([&] {
                 (void)clprompt::clip_options_from_checkpoint(clprompt::state_dict(ClipModel(narrow)), "c.safetensors");
               }),
               Contains("width 96 (from 'visual.conv1.weight') is not a multiple of 64"));
  }
}

// Found while writing fuzz/clip_loader_fuzzer.cpp: sizes were read from single names and
// shapes, so a small file could ask for a model of any size (or throw std::out_of_range).
TEST_CASE("CLIP sizes a checkpoint cannot hold are refused before the model is built", "[backbone][clip]") {
  TempDir dir;
  const auto openai = clprompt::state_dict(*tiny_clip_model(5));
  auto load = [&](const TensorMap& tensors, const std::string& name) {
    const std::string path = dir / name;
    clprompt::write_safetensors(path, tensors);
    return checkpoint_error([&] { (void)clprompt::load_clip_model(path); });
  };
  SECTION("a stray block index beyond int64 is an unexpected tensor, not std::out_of_range") {
    auto tensors = copy_of(openai);
    tensors.emplace("transformer.resblocks.99999999999999999999.ln_1.weight", at::zeros({64}));
    CHECK_THAT(load(tensors, "huge-index.safetensors"),
               Contains("unexpected in the checkpoint (1): transformer.resblocks.99999999999999999999.ln_1.weight"));
  }
  SECTION("a stray block index does not make a model of that many blocks") {
    auto tensors = copy_of(openai);
    tensors.emplace("visual.transformer.resblocks.100000000.ln_1.weight", at::zeros({64}));
    CHECK_THAT(load(tensors, "far-index.safetensors"),
               Contains("unexpected in the checkpoint (1): visual.transformer.resblocks.100000000.ln_1.weight"));
  }
  SECTION("a width from one small tensor") {
    auto tensors = copy_of(openai);
    tensors["visual.conv1.weight"] = at::zeros({12800, 3, 1, 1}, at::kByte);  // 12 x 12800^2 values per block
    CHECK_THAT(load(tensors, "wide.safetensors"),
               Contains("describe a CLIP (vision width 12800, 2 layers; text width 64, 2 layers)") &&
                   Contains("truncated, or not a CLIP checkpoint"));
  }
}

TEST_CASE("find_clip_files explains what a CLIP directory must hold", "[backbone][clip]") {
  TempDir dir;
  const std::string missing = dir / "nope";
  CHECK_THAT(file_error([&] { (void)clprompt::find_clip_files(missing); }),
             StartsWith(missing + ": no such directory; expected a CLIP model directory with weights (model.safetensors") &&
                 Contains("vocab.json and merges.txt") && Contains("bpe_simple_vocab_16e6.txt.gz"));
  CHECK_THAT(file_error([&] { (void)clprompt::find_clip_files(dir.str()); }),
             StartsWith(dir.str() + ": no weights (*.safetensors); expected") && Contains("the directory is empty"));

  auto model = tiny_clip_model();
  clprompt::save_clip(*model, dir / "a.safetensors", ClipNaming::openai);
  clprompt::save_clip(*model, dir / "b.safetensors", ClipNaming::openai);
  CHECK_THAT(file_error([&] { (void)clprompt::find_clip_files(dir.str()); }),
             Contains("several candidate weight files (" + dir / "a.safetensors" + ", " + dir / "b.safetensors" + ")"));
  std::filesystem::remove(dir / "b.safetensors");
  CHECK_THAT(file_error([&] { (void)clprompt::find_clip_files(dir.str()); }),
             StartsWith(dir.str() + ": no tokenizer files: expected vocab.json and merges.txt") &&
                 Contains("found: a.safetensors"));
  clprompt::test::write_text(dir / "vocab.json", "{}");
  CHECK_THAT(file_error([&] { (void)clprompt::find_clip_files(dir.str()); }),
             Contains("no tokenizer files (vocab.json is there but merges.txt is not)"));
  clprompt::test::write_tiny_openai_bpe(dir / "bpe_simple_vocab_16e6.txt.gz");
  auto files = clprompt::find_clip_files(dir.str());
  CHECK(files.weights == dir / "a.safetensors");
  CHECK(files.openai_bpe == dir / "bpe_simple_vocab_16e6.txt.gz");
  CHECK(files.vocab_json.empty());
  // model.safetensors wins over other weights; vocab.json + merges.txt over the OpenAI file.
  clprompt::save_clip(*model, dir / "model.safetensors", ClipNaming::huggingface);
  clprompt::test::write_tiny_hf_tokenizer(dir.str());
  files = clprompt::find_clip_files(dir.str());
  CHECK(files.weights == dir / "model.safetensors");
  CHECK(files.vocab_json == dir / "vocab.json");
  CHECK(files.merges_txt == dir / "merges.txt");
  CHECK(files.openai_bpe.empty());
  const std::string a_file = dir / "a.safetensors";
  CHECK_THAT(file_error([&] { (void)clprompt::find_clip_files(a_file); }), StartsWith(a_file + ": is not a directory"));
}

TEST_CASE("load_clip_directory reads Hugging Face and open_clip directories", "[backbone][clip]") {
  auto to_tensor = [](const std::vector<int64_t>& ids) { return at::tensor(ids, at::kLong).unsqueeze(0); };

  SECTION("Hugging Face: model.safetensors, vocab.json, merges.txt (the tiny-CLIP test helper)") {
    TempDir dir;
    const auto options = clprompt::test::write_tiny_clip_dir(dir.str(), ClipNaming::huggingface, 28, 7, 5);
    CHECK(options.image_size == 28);
    CHECK(options.patch_size == 7);
    const auto clip = clprompt::load_clip_directory(dir.str());
    CHECK(clip.naming == ClipNaming::huggingface);
    CHECK(clip.files.weights == dir / "model.safetensors");
    CHECK(clip.model->options() == options);
    CHECK(clip.tokenizer.vocab_size() == 531);
    CHECK(clip.tokenizer.options().context_length == 16);
    const auto ids = clip.tokenizer.tokenize("Hello, café!");
    CHECK(ids.size() == 16);
    // The helper is deterministic: the same seed writes the same weights.
    const auto expected = tiny_clip_model(5, options);
    at::NoGradGuard no_grad;
    CHECK(at::equal(clip.model->encode_text(to_tensor(ids)), expected->encode_text(to_tensor(ids))));
    const auto images = sample_images(options);
    CHECK(at::equal(clip.model->encode_image(images), expected->encode_image(images)));
  }
  SECTION("open_clip: open_clip_model.safetensors and a gzipped OpenAI BPE file") {
    TempDir dir;
    auto model = tiny_clip_model(29);
    clprompt::save_clip(*model, dir / "open_clip_model.safetensors", ClipNaming::openai);
    clprompt::test::write_tiny_openai_bpe(dir / "bpe_simple_vocab_16e6.txt.gz");
    const auto clip = clprompt::load_clip_directory(dir.str());
    CHECK(clip.naming == ClipNaming::openai);
    CHECK(clip.files.openai_bpe == dir / "bpe_simple_vocab_16e6.txt.gz");
    const auto ids = clip.tokenizer.tokenize("hello world");
    CHECK(ids.front() == kTinySot);
    CHECK(ids[7] == kTinyEot);  // <|startoftext|> hello</w> w o r l d</w> <|endoftext|>
    at::NoGradGuard no_grad;
    CHECK(at::equal(clip.model->encode_text(to_tensor(ids)), model->encode_text(to_tensor(ids))));
  }
  SECTION("a tokenizer with more ids than the model embeds") {
    TempDir dir;
    auto options = tiny_clip_options();
    options.vocab_size = 520;
    clprompt::save_clip(*tiny_clip_model(0, options), dir / "model.safetensors", ClipNaming::huggingface);
    clprompt::test::write_tiny_hf_tokenizer(dir.str());
    CHECK(checkpoint_error([&] { (void)clprompt::load_clip_directory(dir.str()); }) ==
          dir.str() + ": the tokenizer (" + dir / "vocab.json" + " and " + dir / "merges.txt" +
              ") has 531 ids but the weights (" + dir / "model.safetensors" +
              ") embed only 520 tokens (token_embedding.weight has 520 rows); the tokenizer files do not belong to "
              "these weights");
  }
}
