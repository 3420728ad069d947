#include <filesystem>
#include <set>

#include "clprompt/backbone/timm_loader.hpp"
#include "clprompt/backbone/vit.hpp"
#include "clprompt/io/safetensors.hpp"
#include "clprompt/io/state_dict.hpp"
#include "test_util.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which Catch's must override.
#include <catch2/catch.hpp>

using clprompt::LayerPrompt;
using clprompt::Prompts;
using clprompt::VisionTransformer;
using clprompt::ViTOptions;

namespace {

ViTOptions tiny_options(int64_t depth = 2) {
  ViTOptions o;
  o.image_size = 16;
  o.patch_size = 4;
  o.embed_dim = 24;
  o.depth = depth;
  o.num_heads = 3;
  return o;
}

// An independent re-statement of one pre-norm ViT block, head by head, with optional prefix
// keys/values and value residual: what the backbone must compute.
at::Tensor reference_block(clprompt::detail::Block& blk, const at::Tensor& x, const LayerPrompt* p, int64_t heads) {
  const int64_t B = x.size(0), N = x.size(1), D = x.size(2), hd = D / heads;
  auto h = at::layer_norm(x, {D}, blk.norm1->weight, blk.norm1->bias, 1e-6);
  auto qkv = at::linear(h, blk.attn->qkv->weight, blk.attn->qkv->bias);
  auto q = qkv.narrow(2, 0, D), k = qkv.narrow(2, D, D), v = qkv.narrow(2, 2 * D, D);
  if (p && p->value_residual.defined()) v = v + p->value_residual.unsqueeze(1);
  if (p && p->key_prefix.defined()) {
    k = at::cat({p->key_prefix, k}, 1);
    v = at::cat({p->value_prefix, v}, 1);
  }
  std::vector<at::Tensor> outs;
  for (int64_t i = 0; i < heads; ++i) {
    auto qi = q.narrow(2, i * hd, hd), ki = k.narrow(2, i * hd, hd), vi = v.narrow(2, i * hd, hd);
    auto scores = at::bmm(qi, ki.transpose(1, 2)) / std::sqrt(static_cast<double>(hd));
    outs.push_back(at::bmm(at::softmax(scores, -1), vi));
  }
  auto attn = at::linear(at::cat(outs, 2), blk.attn->proj->weight, blk.attn->proj->bias);
  auto y = x + attn;
  auto m = at::layer_norm(y, {D}, blk.norm2->weight, blk.norm2->bias, 1e-6);
  m = at::linear(at::gelu(at::linear(m, blk.mlp->fc1->weight, blk.mlp->fc1->bias)), blk.mlp->fc2->weight,
                 blk.mlp->fc2->bias);
  (void)B;
  (void)N;
  return y + m;
}

}  // namespace

TEST_CASE("VisionTransformer uses timm's parameter names", "[backbone][vit]") {
  VisionTransformer vit(tiny_options(2));
  std::set<std::string> names;
  for (const auto& p : vit.named_parameters()) names.insert(p.key());
  std::set<std::string> expected{"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
                                 "norm.weight", "norm.bias"};
  for (int i = 0; i < 2; ++i)
    for (const char* s : {"norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                          "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                          "mlp.fc2.weight", "mlp.fc2.bias"})
      expected.insert(fmt::format("blocks.{}.{}", i, s));
  CHECK(names == expected);
  CHECK(vit.pos_embed.sizes() == at::IntArrayRef({1, 17, 24}));
  CHECK(vit.blocks[0]->named_parameters()["mlp.fc1.weight"].sizes() == at::IntArrayRef({96, 24}));
}

TEST_CASE("query is the un-prompted final-norm [CLS] without gradient", "[backbone][vit]") {
  at::manual_seed(0);
  VisionTransformer vit(tiny_options());
  auto x = at::randn({3, 3, 16, 16});
  auto q = vit.query(x);
  CHECK(q.sizes() == at::IntArrayRef({3, 24}));
  CHECK_FALSE(q.requires_grad());
  CHECK(at::allclose(q, vit.forward(x, Prompts{}).detach()));
  CHECK(at::allclose(q, vit.forward_tokens(x, Prompts{}).select(1, 0)));
}

TEST_CASE("the forward pass equals a head-by-head reference computation", "[backbone][vit]") {
  at::manual_seed(1);
  auto o = tiny_options(2);
  VisionTransformer vit(o);
  auto x = at::randn({2, 3, 16, 16});
  const int64_t B = 2, D = 24;

  Prompts prompts;
  prompts.add_prefix(0, at::randn({B, 4, D}), at::randn({B, 4, D}));
  prompts.add_value_residual(1, at::randn({B, D}));

  at::NoGradGuard no_grad;
  auto tokens = vit.patch_embed->forward(x) + vit.pos_embed.narrow(1, 1, 16);
  auto h = at::cat({(vit.cls_token + vit.pos_embed.narrow(1, 0, 1)).expand({B, 1, D}), tokens}, 1);
  for (int64_t i = 0; i < 2; ++i)
    h = reference_block(*vit.blocks->ptr<clprompt::detail::Block>(i), h, prompts.find_layer(i), 3);
  auto expected = at::layer_norm(h, {D}, vit.norm->weight, vit.norm->bias, 1e-6);

  auto actual = vit.forward_tokens(x, prompts);
  CHECK(actual.sizes() == at::IntArrayRef({B, 17, D}));  // prefixes do not lengthen the sequence
  CHECK(at::allclose(actual, expected, 1e-5, 1e-5));
  CHECK_FALSE(at::allclose(actual, vit.forward_tokens(x, Prompts{}), 1e-3, 1e-3));
}

TEST_CASE("prefixes of two sources concatenate in order", "[backbone][prompts]") {
  Prompts p;
  auto e = at::ones({1, 2, 4}), g = at::zeros({1, 3, 4});
  p.add_prefix(2, e, e);
  p.add_prefix(2, g, g);
  REQUIRE(p.find_layer(2) != nullptr);
  CHECK(p.find_layer(2)->key_prefix.size(1) == 5);
  CHECK(p.find_layer(2)->key_prefix.narrow(1, 0, 2).equal(e));
  CHECK(p.find_layer(0) == nullptr);
  CHECK_FALSE(p.empty());
}

TEST_CASE("prompt tuning inserts tokens after [CLS] with the [CLS] position embedding", "[backbone][vit]") {
  at::manual_seed(2);
  VisionTransformer vit(tiny_options(1));
  auto x = at::randn({2, 3, 16, 16});
  Prompts p;
  p.input_tokens = at::randn({2, 5, 24});
  p.readout = clprompt::Readout::prompt_mean;
  auto tokens = vit.forward_tokens(x, p);
  CHECK(tokens.sizes() == at::IntArrayRef({2, 22, 24}));
  CHECK(at::allclose(vit.forward(x, p), tokens.narrow(1, 1, 5).mean(1)));

  // Same result as building the sequence by hand: [CLS, prompts + pos[0], patches + pos[1:]].
  at::NoGradGuard no_grad;
  const int64_t D = 24;
  auto seq = at::cat({(vit.cls_token + vit.pos_embed.narrow(1, 0, 1)).expand({2, 1, D}),
                      p.input_tokens + vit.pos_embed.narrow(1, 0, 1),
                      vit.patch_embed->forward(x) + vit.pos_embed.narrow(1, 1, 16)},
                     1);
  auto h = reference_block(*vit.blocks->ptr<clprompt::detail::Block>(0), seq, nullptr, 3);
  CHECK(at::allclose(tokens, at::layer_norm(h, {D}, vit.norm->weight, vit.norm->bias, 1e-6), 1e-5, 1e-5));
}

TEST_CASE("wrong shapes give errors that name the expected shape", "[backbone][vit]") {
  VisionTransformer vit(tiny_options(1));
  CHECK_THROWS_WITH(vit.forward(at::randn({2, 3, 32, 32})), Catch::Contains("[B, 3, 16, 16]") && Catch::Contains("[2, 3, 32, 32]"));
  Prompts p;
  p.add_prefix(0, at::randn({2, 4, 23}), at::randn({2, 4, 23}));
  CHECK_THROWS_WITH(vit.forward(at::randn({2, 3, 16, 16}), p), Catch::Contains("key_prefix") && Catch::Contains("layer 0"));
  Prompts q;
  q.input_tokens = at::randn({3, 4, 24});
  CHECK_THROWS_AS(vit.forward(at::randn({2, 3, 16, 16}), q), clprompt::ShapeError);
  ViTOptions bad = tiny_options();
  bad.embed_dim = 25;
  CHECK_THROWS_WITH(VisionTransformer(bad), Catch::Contains("backbone.embed_dim"));
}

TEST_CASE("timm checkpoints load by name, skipping the classifier", "[backbone][timm]") {
  clprompt::test::TempDir dir;
  at::manual_seed(3);
  VisionTransformer source(tiny_options());
  auto tensors = clprompt::state_dict(source);
  tensors["head.weight"] = at::randn({10, 24});
  tensors["head.bias"] = at::randn({10});
  const auto path = dir.file("vit_tiny.safetensors");
  clprompt::write_safetensors(path, tensors);

  VisionTransformer target(tiny_options());
  auto report = clprompt::load_timm_vit(target, path);
  CHECK(report.ok());
  auto x = at::randn({2, 3, 16, 16});
  CHECK(at::allclose(source.query(x), target.query(x)));

  SECTION("missing and mis-shaped names are all listed") {
    auto broken = tensors;
    broken.erase("blocks.1.mlp.fc2.bias");
    broken["blocks.0.attn.qkv.weight"] = at::zeros({72, 12});
    broken["blocks.0.extra"] = at::zeros({1});
    clprompt::write_safetensors(path, broken);
    VisionTransformer fresh(tiny_options());
    CHECK_THROWS_WITH(clprompt::load_timm_vit(fresh, path),
                      Catch::Contains(path) && Catch::Contains("blocks.1.mlp.fc2.bias") &&
                          Catch::Contains("blocks.0.attn.qkv.weight") && Catch::Contains("blocks.0.extra"));
  }
  SECTION("a different grid is resampled") {
    auto o = tiny_options();
    o.image_size = 24;  // 6x6 grid instead of 4x4
    VisionTransformer bigger(o);
    auto report2 = clprompt::load_timm_vit(bigger, path);
    CHECK(report2.ok());
    CHECK(bigger.pos_embed.sizes() == at::IntArrayRef({1, 37, 24}));
    CHECK(bigger.pos_embed.narrow(1, 0, 1).equal(source.pos_embed.narrow(1, 0, 1)));
  }
}

TEST_CASE("position-embedding resampling keeps [CLS], constants and same-size grids", "[backbone][timm]") {
  auto pe = at::randn({1, 1 + 16, 8});
  CHECK(clprompt::resample_position_embedding(pe, 4).equal(pe));
  auto constant = at::full({1, 1 + 16, 8}, 0.5);
  auto up = clprompt::resample_position_embedding(constant, 7);
  CHECK(up.sizes() == at::IntArrayRef({1, 50, 8}));
  CHECK(at::allclose(up, at::full({1, 50, 8}, 0.5), 1e-5, 1e-5));
  CHECK_THROWS_AS(clprompt::resample_position_embedding(at::randn({1, 1 + 15, 8}), 4), clprompt::ShapeError);
}

TEST_CASE("position-embedding resampling equals PyTorch's antialiased bicubic interpolate", "[backbone][timm]") {
  // Reference values: torch 1.13 F.interpolate(x, size, mode="bicubic", antialias=True,
  // align_corners=False) with x = sin(0.37 * arange(48)).reshape(1, 4, 4, 3).permute(0, 3, 1, 2),
  // the call timm's resample_abs_pos_embed makes.
  auto grid = at::sin(at::arange(48, at::kFloat) * 0.37).reshape({1, 16, 3});
  auto pe = at::cat({at::zeros({1, 1, 3}), grid}, 1);
  auto check = [&](int64_t size, std::vector<double> first_channel0, double sum) {
    auto out = clprompt::resample_position_embedding(pe, size).narrow(1, 1, size * size);
    for (std::size_t k = 0; k < first_channel0.size(); ++k)
      CHECK(out[0][static_cast<int64_t>(k)][0].item<double>() == Approx(first_channel0[k]).margin(2e-6));
    CHECK(out.sum().item<double>() == Approx(sum).margin(1e-4));
  };
  check(7, {0.001562, 0.368598, 0.982951, 1.053653, 0.774427, 0.047386}, 5.86558);
  check(2, {-0.14833, 0.367896}, 0.14564);
}
