// `clprompt pretrain`: supervised pre-training of the default ViT on rendered font glyphs
// (learn/pretrain.hpp).
#include "clprompt/pretrain/pretrain.hpp"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <future>
#include <map>

#include <fmt/format.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/modules/linear.h>

#include "clprompt/core/device.hpp"
#include "clprompt/core/seed.hpp"
#include "clprompt/core/memory.hpp"
#include "clprompt/core/threads.hpp"
#include "clprompt/io/atomic_file.hpp"
#include "clprompt/io/safetensors.hpp"
#include "clprompt/io/state_dict.hpp"
#include "clprompt/core/progress.hpp"
#include "clprompt/optim/optimizer_options.hpp"
#include "clprompt/optim/trainer.hpp"

namespace clprompt {

void PretrainConfig::validate(const std::string& path) const {
  require_option(seed >= 0, path, "seed", "must be >= 0");
  require_option(threads >= 0 && threads <= kMaxThreads, path, "threads",
                 fmt::format("must be in [0, {}] (0 = all cores), got {}", kMaxThreads, threads));
  require_option(validation_fraction > 0 && validation_fraction < 1, path, "validation_fraction",
                 "must be in (0, 1)");
  require_option(validation_variants > 0, path, "validation_variants", "must be positive");
  require_option(backbone.image_size == glyphs.image_size, path, "backbone.image_size",
                 fmt::format("must equal glyphs.image_size ({}): glyphs are rendered at the backbone's input size",
                             glyphs.image_size));
  require_option(transform.size == 0 && transform.train_crop == TrainCrop::none && transform.test_resize == 0, path, "transform",
                 "resize/crop are not used for glyphs (they are rendered at the input size)");
  require_option(steps > 0, path, "steps", "must be positive");
  require_option(batch_size > 0, path, "batch_size", "must be positive");
  require_option(lr > 0, path, "lr", "must be positive");
  require_option(min_lr >= 0 && min_lr <= lr, path, "min_lr", "must be in [0, lr]");
  require_option(warmup_steps >= 0 && warmup_steps < steps, path, "warmup_steps", "must be in [0, steps)");
  require_option(weight_decay >= 0, path, "weight_decay", "must be >= 0");
  require_option(adam_betas.size() == 2 && adam_betas[0] >= 0 && adam_betas[0] < 1 && adam_betas[1] >= 0 &&
                     adam_betas[1] < 1,
                 path, "adam_betas", "must be two numbers in [0, 1)");
  require_option(label_smoothing >= 0 && label_smoothing < 1, path, "label_smoothing", "must be in [0, 1)");
  require_option(clip_grad_norm >= 0, path, "clip_grad_norm", "must be >= 0 (0 = off)");
  require_option(checkpoint_every > 0, path, "checkpoint_every", "must be positive");
  require_option(validate_every > 0, path, "validate_every", "must be positive");
  (void)resolve_device(device, path.empty() ? "device" : path + ".device");
}

double PretrainConfig::lr_at(int64_t step) const {
  if (step < warmup_steps) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  const double progress = static_cast<double>(step - warmup_steps) / static_cast<double>(steps - warmup_steps);
  return min_lr + (lr - min_lr) * half_cosine(kPi * progress);
}

PretrainConfig default_pretrain_config() {
  PretrainConfig c;
  // The fonts of the pinned packages in scripts/pretrain.sh; other fonts on the machine are not
  // picked up, so the data set is the same everywhere.
  c.glyphs.font_dirs = {"/usr/share/fonts/truetype", "/usr/share/fonts/opentype"};
  c.backbone.image_size = 28;
  c.backbone.patch_size = 4;
  c.backbone.embed_dim = 128;
  c.backbone.depth = 6;
  c.backbone.num_heads = 4;
  return c;
}

PretrainConfig resolve_pretrain_config(const Json& overrides) {
  if (!overrides.is_object()) throw ConfigError("<root>", "the configuration must be a JSON object");
  Json merged = write_options(default_pretrain_config());
  merged.merge_patch(overrides);
  return options_from_json<PretrainConfig>(merged);
}

namespace {

/// AdamW (Loshchilov & Hutter; torch.optim.AdamW's update) with its moments as plain tensors so
/// that they go into the checkpoint by name.
struct AdamW {
  struct Slot {
    std::string name;
    at::Tensor param, exp_avg, exp_avg_sq;
    bool decay;
  };
  std::vector<Slot> slots;
  int64_t step = 0;

  void add(const std::string& name, const at::Tensor& p) {
    // timm's rule: no weight decay on biases, norm scales and the token/position embeddings.
    const bool decay = p.dim() > 1 && name.find("pos_embed") == std::string::npos &&
                       name.find("cls_token") == std::string::npos;
    slots.push_back({name, p, at::zeros_like(p), at::zeros_like(p), decay});
  }
  void update(double lr, const PretrainConfig& c) {
    ++step;
    const double b1 = c.adam_betas[0], b2 = c.adam_betas[1], eps = 1e-8;
    const double bias1 = 1.0 - std::pow(b1, static_cast<double>(step));
    const double bias2 = 1.0 - std::pow(b2, static_cast<double>(step));
    at::NoGradGuard no_grad;
    for (auto& s : slots) {
      if (!s.param.grad().defined()) continue;
      const auto& g = s.param.grad();
      if (s.decay && c.weight_decay > 0) s.param.mul_(1.0 - lr * c.weight_decay);
      s.exp_avg.mul_(b1).add_(g, 1.0 - b1);
      s.exp_avg_sq.mul_(b2).addcmul_(g, g, 1.0 - b2);
      const auto denom = (s.exp_avg_sq / bias2).sqrt_().add_(eps);
      s.param.addcdiv_(s.exp_avg, denom, -lr / bias1);
    }
  }
};

struct GlyphModel {
  std::shared_ptr<VisionTransformer> vit;
  torch::nn::Linear head{nullptr};

  TensorMap tensors() const {
    auto all = state_dict(*vit);
    for (auto& [name, t] : state_dict(*head, "head.")) all[name] = t;
    return all;
  }
  at::Tensor logits(const at::Tensor& images) { return head->forward(vit->forward(images)); }
};


/// The configuration with the fields that may change between a run and its resumption removed.
Json comparable(const PretrainConfig& c) {
  auto j = write_options(c);
  j.erase("threads");
  j.erase("device");
  j.erase("checkpoint_every");
  j.erase("validate_every");
  return j;
}

Json font_list(const std::vector<FontFile>& fonts) {
  Json out = Json::array();
  for (const auto& f : fonts) out.push_back({{"path", f.path}, {"family", f.family}});
  return out;
}

}  // namespace

PretrainResult pretrain(const PretrainConfig& config, const std::string& out_dir, bool resume,
                        const PretrainHooks& hooks) {
  config.validate("");
  namespace fs = std::filesystem;
  const auto started = std::chrono::steady_clock::now();
  auto log = [&](const std::string& line) {
    if (hooks.log) hooks.log(line);
  };
  const int threads = configure_threads(static_cast<int>(config.threads));
  keep_freed_memory();
  const auto device = resolve_device(config.device);
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) throw FileError(out_dir, "cannot create the output directory: " + ec.message());
  const auto state_path = (fs::path(out_dir) / "state.safetensors").string();
  const auto report_path = (fs::path(out_dir) / "pretrain.json").string();
  const auto weights_path = (fs::path(out_dir) / "vit.safetensors").string();

  const auto seed = static_cast<uint64_t>(config.seed);
  const auto fonts = discover_fonts(config.glyphs);
  // Named, not a structured binding: lambdas below capture them, which Clang allows from 16 on.
  const auto split = split_by_family(fonts, config.validation_fraction, seed);
  const auto& train_fonts = split.first;
  const auto& val_fonts = split.second;
  auto train_renderer = std::make_shared<const GlyphRenderer>(train_fonts, config.glyphs);
  auto val_renderer = std::make_shared<const GlyphRenderer>(val_fonts, config.glyphs);
  const GlyphDataset validation(val_renderer, config.validation_variants, seed + 1, "held-out fonts");
  log(fmt::format("pretrain: {} fonts ({} train, {} held-out in whole families), {} classes, {} validation images, "
                  "{} threads, device {}",
                  fonts.size(), train_fonts.size(), val_fonts.size(), train_renderer->num_classes(),
                  validation.size(), threads, device.str()));

  seed_everything(seed);
  GlyphModel model;
  model.vit = std::make_shared<VisionTransformer>(config.backbone);
  model.head = torch::nn::Linear(config.backbone.embed_dim, train_renderer->num_classes());
  {
    // Small random head (timm: trunc_normal std 0.02 for Linear weights), zero bias.
    at::NoGradGuard no_grad;
    model.head->weight.normal_(0.0, 0.02);
    model.head->bias.zero_();
  }
  model.vit->to(device);
  model.head->to(device);
  // Every parameter trains (the parameters themselves: state_dict() gives detached views).
  AdamW optimizer;
  for (const auto& p : model.vit->named_parameters()) optimizer.add(p.key(), p.value());
  for (const auto& p : model.head->named_parameters()) optimizer.add("head." + p.key(), p.value());

  Json history = Json::array();
  double seconds_before = 0.0;
  if (resume) {
    if (!fs::exists(state_path)) throw FileError(state_path, "no checkpoint to resume from");
    auto contents = read_safetensors(state_path);
    const auto meta = contents.metadata;
    if (!meta.count("clprompt.pretrain.config") || !meta.count("clprompt.pretrain.step"))
      throw FileError(state_path, "not a clprompt pretrain checkpoint (metadata clprompt.pretrain.* missing)");
    const auto saved = Json::parse(meta.at("clprompt.pretrain.config"), nullptr, false);
    if (saved.is_discarded()) throw FileError(state_path, "metadata clprompt.pretrain.config is not valid JSON");
    // save_state() stores comparable(config), so both sides leave out the fields that may change.
    const auto& saved_config = saved;
    if (const auto field = first_difference(saved_config, comparable(config)); !field.empty())
      throw ConfigError(field, fmt::format("differs from the checkpoint {} (checkpoint: {}); resume with the same "
                                           "configuration or start a new output directory",
                                           state_path, saved_config.contains(field) ? saved_config.at(field).dump() : "see file"));
    TensorMap model_part, optim_part;
    for (auto& [name, t] : contents.tensors)
      (name.rfind("optimizer.", 0) == 0 ? optim_part : model_part)[name] = t;
    LoadOptions vit_load;
    vit_load.source = state_path;
    vit_load.ignore_prefixes = {"head."};
    load_state_dict(*model.vit, model_part, vit_load);
    LoadOptions head_load;
    head_load.source = state_path;
    head_load.strip_prefix = "head.";
    TensorMap head_part;
    for (auto& [name, t] : model_part)
      if (name.rfind("head.", 0) == 0) head_part[name] = t;
    load_state_dict(*model.head, head_part, head_load);
    at::NoGradGuard no_grad;
    for (auto& s : optimizer.slots)
      for (auto [suffix, target] : {std::pair{".exp_avg", &s.exp_avg}, std::pair{".exp_avg_sq", &s.exp_avg_sq}}) {
        const auto key = "optimizer." + s.name + suffix;
        auto it = optim_part.find(key);
        if (it == optim_part.end()) throw CheckpointError(fmt::format("{}: missing optimizer tensor {}", state_path, key));
        if (it->second.sizes() != target->sizes())
          throw CheckpointError(fmt::format("{}: {} has shape {}, expected {}", state_path, key, it->second.sizes(),
                                            target->sizes()));
        target->copy_(it->second);
      }
    optimizer.step = std::stoll(meta.at("clprompt.pretrain.step"));
    if (meta.count("clprompt.pretrain.history")) history = Json::parse(meta.at("clprompt.pretrain.history"), nullptr, false);
    if (meta.count("clprompt.pretrain.seconds")) seconds_before = std::stod(meta.at("clprompt.pretrain.seconds"));
    log(fmt::format("pretrain: resumed from {} at step {}", state_path, optimizer.step));
  }

  const Transform transform(config.transform);
  auto make_batch = [&](int64_t step) {
    const auto B = config.batch_size;
    auto images = at::empty({B, 1, config.glyphs.image_size, config.glyphs.image_size}, at::kByte);
    auto labels = at::empty({B}, at::kLong);
    for (int64_t j = 0; j < B; ++j) {
      auto [image, label] = train_renderer->render_sample(seed, static_cast<uint64_t>(step * B + j));
      images[j].copy_(image);
      labels[j] = label;
    }
    at::Generator unused = make_generator(seed, 0);  // glyphs arrive augmented; the transform only normalises
    return std::pair{transform(images, /*train=*/false, unused), labels};
  };

  auto evaluate = [&]() {
    at::NoGradGuard no_grad;
    model.vit->eval();
    int64_t correct = 0;
    const int64_t n = validation.size();
    at::Generator unused = make_generator(seed, 0);
    for (int64_t begin = 0; begin < n; begin += 256) {
      std::vector<int64_t> idx;
      for (int64_t i = begin; i < std::min(n, begin + 256); ++i) idx.push_back(i);
      auto x = transform(validation.images(idx), false, unused).to(device);
      auto pred = model.logits(x).argmax(1).cpu();
      for (std::size_t i = 0; i < idx.size(); ++i)
        correct += pred[static_cast<int64_t>(i)].item<int64_t>() == validation.label(idx[i]);
    }
    model.vit->train();
    return 100.0 * static_cast<double>(correct) / static_cast<double>(n);
  };

  auto elapsed = [&]() {
    return seconds_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };
  auto write_report = [&](double val_acc, bool finished) {
    Json report{{"config", write_options(config)},
                {"threads", threads},
                {"steps_done", optimizer.step},
                {"finished", finished},
                {"validation_accuracy", val_acc},
                {"wall_seconds", elapsed()},
                {"train_fonts", font_list(train_fonts)},
                {"validation_fonts", font_list(val_fonts)},
                {"history", history}};
    write_text_file_atomically(report_path, report.dump(2) + "\n");
  };
  auto save_state = [&]() {
    TensorMap tensors;
    for (auto& [name, t] : model.tensors()) tensors[name] = t.cpu();
    for (const auto& s : optimizer.slots) {
      tensors["optimizer." + s.name + ".exp_avg"] = s.exp_avg.cpu();
      tensors["optimizer." + s.name + ".exp_avg_sq"] = s.exp_avg_sq.cpu();
    }
    write_safetensors(state_path, tensors,
                      {{"clprompt.pretrain.config", comparable(config).dump()},
                       {"clprompt.pretrain.step", std::to_string(optimizer.step)},
                       {"clprompt.pretrain.history", history.dump()},
                       {"clprompt.pretrain.seconds", fmt::format("{:.3f}", elapsed())}});
  };

  // The shared training step (divergence check, clipping) around the hand-written AdamW.
  std::vector<at::Tensor> params;
  for (const auto& slot : optimizer.slots) params.push_back(slot.param);
  Trainer trainer("pretrain", params, config.lr, [&](double lr) { optimizer.update(lr, config); },
                  config.clip_grad_norm, fmt::format("the last checkpoint {} is kept", state_path));

  PretrainResult result;
  double val_acc = history.empty() ? 0.0 : history.back().value("validation_accuracy", 0.0);
  model.vit->train();
  ProgressBar bar("pretrain", config.steps - optimizer.step, hooks.progress_bar && ::isatty(::fileno(stderr)) == 1);
  auto next = std::async(std::launch::async, make_batch, optimizer.step);
  double loss_sum = 0.0;
  int64_t loss_count = 0;
  bool stopped = false;
  while (optimizer.step < config.steps) {
    const int64_t step = optimizer.step;
    auto [images, labels] = next.get();
    if (step + 1 < config.steps) next = std::async(std::launch::async, make_batch, step + 1);
    const double lr = config.lr_at(step);
    trainer.set_lr(lr);
    trainer.set_position(fmt::format("step {}", step));
    auto logits = model.logits(images.to(device));
    const double loss_value = trainer.step(torch::nn::functional::cross_entropy(
        logits, labels.to(device), torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(config.label_smoothing)));
    loss_sum += loss_value;
    ++loss_count;
    bar.advance(1, fmt::format("loss {:.3f} lr {:.2e}", loss_value, lr));

    const bool last = optimizer.step == config.steps;
    if (optimizer.step % config.validate_every == 0 || last) {
      bar.finish();
      val_acc = evaluate();
      history.push_back({{"step", optimizer.step},
                         {"train_loss", loss_sum / static_cast<double>(loss_count)},
                         {"lr", lr},
                         {"validation_accuracy", val_acc},
                         {"seconds", elapsed()}});
      log(fmt::format("pretrain: step {}/{} train loss {:.4f} held-out accuracy {:.2f}% ({:.0f} s)", optimizer.step,
                      config.steps, loss_sum / static_cast<double>(loss_count), val_acc, elapsed()));
      loss_sum = 0.0;
      loss_count = 0;
    }
    if (hooks.on_step && !hooks.on_step(optimizer.step, loss_value)) stopped = !last;
    if (optimizer.step % config.checkpoint_every == 0 || last || stopped) {
      save_state();
      write_report(val_acc, last);
    }
    if (stopped) break;
  }
  bar.finish();
  if (next.valid()) next.wait();

  result.steps_done = optimizer.step;
  result.finished = optimizer.step == config.steps;
  result.validation_accuracy = val_acc;
  if (result.finished) {
    TensorMap tensors;
    for (auto& [name, t] : model.tensors()) tensors[name] = t.cpu();
    write_safetensors(weights_path, tensors,
                      {{"format", "pt"},
                       {"clprompt.pretrain.config", write_options(config).dump()},
                       {"clprompt.pretrain.classes", config.glyphs.charset},
                       {"clprompt.pretrain.validation_accuracy", fmt::format("{:.2f}", val_acc)}});
    result.weights_path = weights_path;
    log(fmt::format("pretrain: wrote {} (held-out font accuracy {:.2f}%, {:.0f} s in all)", weights_path, val_acc,
                    elapsed()));
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return result;
}

}  // namespace clprompt
