// Compiled part of include/clprompt/clip/clip_loader.hpp: CLIP name conversion between the
// OpenAI / open_clip and Hugging Face layouts, size inference, file discovery.
#include "clprompt/clip/clip_loader.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace clprompt {
namespace {

namespace fs = std::filesystem;

struct Rename {
  std::string_view openai, hf;
};

// Tensors outside the transformer blocks, copied as they are.
constexpr Rename kTopLevel[] = {
    {"token_embedding.weight", "text_model.embeddings.token_embedding.weight"},
    {"positional_embedding", "text_model.embeddings.position_embedding.weight"},
    {"ln_final.weight", "text_model.final_layer_norm.weight"},
    {"ln_final.bias", "text_model.final_layer_norm.bias"},
    {"visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"},
    {"visual.class_embedding", "vision_model.embeddings.class_embedding"},
    {"visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"},
    {"visual.ln_pre.weight", "vision_model.pre_layrnorm.weight"},  // sic: HF spells it "layrnorm"
    {"visual.ln_pre.bias", "vision_model.pre_layrnorm.bias"},
    {"visual.ln_post.weight", "vision_model.post_layernorm.weight"},
    {"visual.ln_post.bias", "vision_model.post_layernorm.bias"},
    {"logit_scale", "logit_scale"},
};

// Projections: OpenAI multiplies x @ P with P [width, embed]; HF stores a bias-free Linear,
// whose weight is P transposed.
constexpr Rename kTransposed[] = {
    {"text_projection", "text_projection.weight"},
    {"visual.proj", "visual_projection.weight"},
};

// Block prefixes of the two towers (followed by "<index>.").
constexpr Rename kTowers[] = {
    {"transformer.resblocks.", "text_model.encoder.layers."},
    {"visual.transformer.resblocks.", "vision_model.encoder.layers."},
};

// Block members copied as they are; the attention's in_proj is handled apart (split q/k/v).
constexpr Rename kBlockParts[] = {
    {"ln_1.weight", "layer_norm1.weight"},
    {"ln_1.bias", "layer_norm1.bias"},
    {"ln_2.weight", "layer_norm2.weight"},
    {"ln_2.bias", "layer_norm2.bias"},
    {"attn.out_proj.weight", "self_attn.out_proj.weight"},
    {"attn.out_proj.bias", "self_attn.out_proj.bias"},
    {"mlp.c_fc.weight", "mlp.fc1.weight"},
    {"mlp.c_fc.bias", "mlp.fc1.bias"},
    {"mlp.c_proj.weight", "mlp.fc2.weight"},
    {"mlp.c_proj.bias", "mlp.fc2.bias"},
};

constexpr std::array<std::string_view, 3> kQkv = {"q_proj", "k_proj", "v_proj"};

template <std::size_t N, class Key>
const Rename* find_rename(const Rename (&table)[N], const std::string& name, Key key) {
  for (const auto& r : table)
    if (r.*key == name) return &r;
  return nullptr;
}

/// "<prefix><digits>.<rest>" -> {"<digits>", "<rest>"}.
std::optional<std::pair<std::string, std::string>> split_block_name(const std::string& name, std::string_view prefix) {
  if (!name.starts_with(prefix)) return std::nullopt;
  const std::size_t start = prefix.size();
  std::size_t end = start;
  while (end < name.size() && name[end] >= '0' && name[end] <= '9') ++end;
  if (end == start || end >= name.size() || name[end] != '.') return std::nullopt;
  return std::pair{name.substr(start, end - start), name.substr(end + 1)};
}

std::string shape_text(at::IntArrayRef shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

/// A few names of `tensors`, for error messages.
std::string some_names(const TensorMap& tensors, std::size_t max = 6) {
  if (tensors.empty()) return "none (the file holds no tensors)";
  std::vector<std::string> names;
  for (const auto& [name, t] : tensors) {
    (void)t;
    if (names.size() == max) break;
    names.push_back(name);
  }
  std::string s = fmt::format("{}", fmt::join(names, ", "));
  if (tensors.size() > max) s += fmt::format(", ... ({} in all)", tensors.size());
  return s;
}

void put(TensorMap& out, const std::string& name, at::Tensor t, const std::string& from, const std::string& source) {
  if (!out.emplace(name, std::move(t)).second)
    throw CheckpointError(fmt::format("{}: '{}' maps to '{}', which another tensor of the file already gives", source,
                                      from, name));
}

/// The number of blocks under `prefix` ("transformer.resblocks."): indices 0, 1, ... as long as
/// each has a tensor. Not the largest index + 1: one stray name (resblocks.99999999.x, or an index
/// beyond int64) would size a model of that many blocks; counted so, a gap or a stray index is
/// reported by the strict load as unexpected tensors.
int64_t consecutive_blocks(const TensorMap& tensors, std::string_view prefix) {
  std::set<std::string> indices;
  for (const auto& [name, t] : tensors) {
    (void)t;
    if (auto parts = split_block_name(name, prefix)) indices.insert(parts->first);
  }
  int64_t blocks = 0;
  while (indices.count(std::to_string(blocks))) ++blocks;
  return blocks;
}

/// A checkpoint read from disk, converted to OpenAI names.
struct OpenAiTensors {
  TensorMap tensors;
  ClipNaming naming;
};

OpenAiTensors read_openai_named(const std::string& path) {
  auto contents = read_safetensors(path);
  const auto naming = detect_clip_naming(contents.tensors, path);
  if (naming == ClipNaming::huggingface) return {clip_openai_from_hf(contents.tensors, path), naming};
  return {std::move(contents.tensors), naming};
}

LoadReport load_openai_named(ClipModel& model, const TensorMap& tensors, const std::string& path) {
  LoadOptions options;
  options.source = path;
  // OpenAI's .pt state dicts carry these three scalars next to the weights (build_model
  // deletes them); converted files may keep them.
  options.ignore_prefixes = {"input_resolution", "context_length", "vocab_size"};
  return load_state_dict(model, tensors, options);
}

std::string listing(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) names.push_back(entry.path().filename().string());
  if (names.empty()) return "the directory is empty";
  std::sort(names.begin(), names.end());
  constexpr std::size_t kMax = 12;
  std::string s = "found: " + fmt::format("{}", fmt::join(names.begin(), names.begin() + std::min(kMax, names.size()), ", "));
  if (names.size() > kMax) s += fmt::format(", ... ({} entries)", names.size());
  return s;
}

}  // namespace

ClipNaming detect_clip_naming(const TensorMap& tensors, const std::string& source) {
  std::string hf_example, openai_example;
  for (const auto& [name, t] : tensors) {
    (void)t;
    if (hf_example.empty() && (name.starts_with("text_model.") || name.starts_with("vision_model.")))
      hf_example = name;
    if (openai_example.empty() && (name.starts_with("visual.") || name.starts_with("transformer.resblocks.") ||
                                   name == "token_embedding.weight"))
      openai_example = name;
  }
  if (!hf_example.empty() && !openai_example.empty())
    throw CheckpointError(fmt::format("{}: mixes Hugging Face names ('{}') and OpenAI / open_clip names ('{}'); expected "
                                      "one naming scheme",
                                      source, hf_example, openai_example));
  if (!hf_example.empty()) return ClipNaming::huggingface;
  if (!openai_example.empty()) return ClipNaming::openai;
  throw CheckpointError(fmt::format(
      "{}: not a CLIP checkpoint in a known naming: expected OpenAI / open_clip names (visual.conv1.weight, "
      "token_embedding.weight, transformer.resblocks.N.*, ...) or Hugging Face CLIPModel names (text_model.*, "
      "vision_model.*); found {}",
      source, some_names(tensors)));
}

TensorMap clip_openai_from_hf(const TensorMap& hf, const std::string& source) {
  TensorMap out;
  // in_proj name -> the q, k, v parts and the HF prefix they came from (to name a missing one).
  struct QkvGroup {
    std::array<at::Tensor, 3> parts;
    std::string hf_prefix, kind;  // "text_model.encoder.layers.0.self_attn.", "weight"
  };
  std::map<std::string, QkvGroup> groups;

  for (const auto& [name, t] : hf) {
    if (name.ends_with(".position_ids")) continue;  // a buffer of older HF files, not a weight
    if (const auto* r = find_rename(kTopLevel, name, &Rename::hf)) {
      put(out, std::string(r->openai), t, name, source);
      continue;
    }
    if (const auto* r = find_rename(kTransposed, name, &Rename::hf)) {
      put(out, std::string(r->openai), t.dim() == 2 ? t.t().contiguous() : t, name, source);
      continue;
    }
    bool converted = false;
    for (const auto& tower : kTowers) {
      const auto parts = split_block_name(name, tower.hf);
      if (!parts) continue;
      const auto& [index, rest] = *parts;
      const std::string prefix = std::string(tower.openai) + index + ".";
      if (const auto* r = find_rename(kBlockParts, rest, &Rename::hf)) {
        put(out, prefix + std::string(r->openai), t, name, source);
        converted = true;
      } else {
        for (std::size_t i = 0; i < kQkv.size() && !converted; ++i) {
          for (const char* kind : {"weight", "bias"}) {
            if (rest != fmt::format("self_attn.{}.{}", kQkv[i], kind)) continue;
            auto& group = groups[prefix + "attn.in_proj_" + kind];
            group.parts[i] = t;
            group.hf_prefix = std::string(tower.hf) + index + ".self_attn.";
            group.kind = kind;
            converted = true;
            break;
          }
        }
      }
      break;
    }
    if (!converted) put(out, name, t, name, source);  // unknown: reported by the strict load
  }

  for (auto& entry : groups) {
    // Named, not a structured binding: lambdas capture those only from Clang 16 on.
    const auto& openai_name = entry.first;
    auto& group = entry.second;
    auto hf_name = [&](std::size_t i) { return fmt::format("{}{}.{}", group.hf_prefix, kQkv[i], group.kind); };
    for (std::size_t i = 0; i < 3; ++i)
      if (!group.parts[i].defined())
        throw CheckpointError(fmt::format("{}: tensor '{}' is missing; the query, key and value projections are all "
                                          "needed to build '{}'",
                                          source, hf_name(i), openai_name));
    const auto& q = group.parts[0];
    if (group.parts[1].sizes() != q.sizes() || group.parts[2].sizes() != q.sizes())
      throw CheckpointError(fmt::format("{}: '{}' {}, '{}' {} and '{}' {} must have the same shape", source, hf_name(0),
                                        shape_text(q.sizes()), hf_name(1), shape_text(group.parts[1].sizes()),
                                        hf_name(2), shape_text(group.parts[2].sizes())));
    put(out, openai_name, at::cat({group.parts[0], group.parts[1], group.parts[2]}, 0), hf_name(0), source);
  }
  return out;
}

TensorMap clip_hf_from_openai(const TensorMap& openai) {
  TensorMap out;
  for (const auto& [name, t] : openai) {
    if (const auto* r = find_rename(kTopLevel, name, &Rename::openai)) {
      out.emplace(std::string(r->hf), t.contiguous());
      continue;
    }
    if (const auto* r = find_rename(kTransposed, name, &Rename::openai)) {
      out.emplace(std::string(r->hf), t.dim() == 2 ? t.t().contiguous() : t);
      continue;
    }
    bool converted = false;
    for (const auto& tower : kTowers) {
      const auto parts = split_block_name(name, tower.openai);
      if (!parts) continue;
      const auto& [index, rest] = *parts;
      const std::string prefix = std::string(tower.hf) + index + ".";
      if (const auto* r = find_rename(kBlockParts, rest, &Rename::openai)) {
        out.emplace(prefix + std::string(r->hf), t.contiguous());
        converted = true;
      } else if (rest == "attn.in_proj_weight" || rest == "attn.in_proj_bias") {
        if (t.dim() < 1 || t.size(0) % 3 != 0)
          throw CheckpointError(fmt::format("'{}' has shape {}; expected 3 * width rows (query, key, value)", name,
                                            shape_text(t.sizes())));
        const char* kind = rest == "attn.in_proj_weight" ? "weight" : "bias";
        const auto chunks = t.chunk(3, 0);
        for (std::size_t i = 0; i < 3; ++i)
          out.emplace(fmt::format("{}self_attn.{}.{}", prefix, kQkv[i], kind), chunks[i].contiguous());
        converted = true;
      }
      break;
    }
    if (!converted) out.emplace(name, t);
  }
  return out;
}

ClipOptions clip_options_from_checkpoint(const TensorMap& openai_named, const std::string& source) {
  auto get = [&](const std::string& name, int64_t dims, const char* gives) -> const at::Tensor& {
    const auto it = openai_named.find(name);
    if (it == openai_named.end())
      throw CheckpointError(fmt::format("{}: tensor '{}' is missing; it gives the CLIP model's {}", source, name, gives));
    if (it->second.dim() != dims)
      throw CheckpointError(fmt::format("{}: tensor '{}' has shape {}, expected {} dimensions (it gives the {})", source,
                                        name, shape_text(it->second.sizes()), dims, gives));
    return it->second;
  };
  auto layers = [&](std::string_view prefix) {
    const int64_t blocks = consecutive_blocks(openai_named, prefix);
    if (blocks == 0)
      throw CheckpointError(fmt::format("{}: no tensors named '{}0.*'; they give the number of layers", source, prefix));
    return blocks;
  };
  auto heads = [&](int64_t width, const char* tensor) {
    // OpenAI's build_model: heads = width // 64 for both towers (HF configs say the same).
    if (width % 64 != 0)
      throw CheckpointError(fmt::format("{}: width {} (from '{}') is not a multiple of 64, so the number of attention "
                                        "heads cannot be inferred (CLIP uses heads = width / 64)",
                                        source, width, tensor));
    return width / 64;
  };

  ClipOptions o;
  const auto& conv1 = get("visual.conv1.weight", 4, "vision width and patch size");
  if (conv1.size(1) != 3 || conv1.size(2) != conv1.size(3))
    throw CheckpointError(fmt::format("{}: tensor 'visual.conv1.weight' has shape {}, expected [width, 3, patch, patch]",
                                      source, shape_text(conv1.sizes())));
  o.vision_width = conv1.size(0);
  o.patch_size = conv1.size(2);
  const auto& visual_pos = get("visual.positional_embedding", 2, "image size");
  const int64_t patches = visual_pos.size(0) - 1;
  const auto grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(std::max<int64_t>(patches, 0)))));
  if (patches < 1 || grid * grid != patches)
    throw CheckpointError(fmt::format("{}: tensor 'visual.positional_embedding' has {} rows, expected 1 + a square "
                                      "number of patch positions",
                                      source, visual_pos.size(0)));
  o.image_size = grid * o.patch_size;
  o.vision_layers = layers("visual.transformer.resblocks.");
  o.vision_heads = heads(o.vision_width, "visual.conv1.weight");

  const auto& tokens = get("token_embedding.weight", 2, "vocabulary size and text width");
  o.vocab_size = tokens.size(0);
  o.text_width = tokens.size(1);
  o.context_length = get("positional_embedding", 2, "context length").size(0);
  o.text_layers = layers("transformer.resblocks.");
  o.text_heads = heads(o.text_width, "token_embedding.weight");
  o.embed_dim = get("text_projection", 2, "embedding dimension").size(1);
  try {
    o.validate("clip");
  } catch (const ConfigError& e) {
    throw CheckpointError(fmt::format("{}: the sizes inferred from the tensor shapes are invalid: {}", source, e.what()));
  }
  // A strict load needs every parameter of the model in the file, so a model that would hold more
  // values than the file is refused before it is built: a width read from one small tensor (conv1
  // of 12800 x 3 x 1 x 1 bytes) would otherwise allocate gigabytes per block. Lower bound per
  // block: attention in/out projections 4 w^2, MLP 8 w^2 (in double: the sizes may be huge).
  double file_values = 0;
  for (const auto& [name, t] : openai_named) {
    (void)name;
    file_values += static_cast<double>(t.numel());
  }
  auto square = [](int64_t w) { return static_cast<double>(w) * static_cast<double>(w); };
  const double model_values = 12 * (static_cast<double>(o.vision_layers) * square(o.vision_width) +
                                    static_cast<double>(o.text_layers) * square(o.text_width));
  if (model_values > file_values)
    throw CheckpointError(fmt::format("{}: the tensor shapes describe a CLIP (vision width {}, {} layers; text width {}, "
                                      "{} layers) of at least {:.0f} values, but the file holds {:.0f}: truncated, or "
                                      "not a CLIP checkpoint",
                                      source, o.vision_width, o.vision_layers, o.text_width, o.text_layers,
                                      model_values, file_values));
  return o;
}

LoadReport load_clip(ClipModel& model, const std::string& path) {
  return load_openai_named(model, read_openai_named(path).tensors, path);
}

std::shared_ptr<ClipModel> load_clip_model(const std::string& path) {
  const auto checkpoint = read_openai_named(path);
  auto model = std::make_shared<ClipModel>(clip_options_from_checkpoint(checkpoint.tensors, path));
  load_openai_named(*model, checkpoint.tensors, path);
  return model;
}

void save_clip(const ClipModel& model, const std::string& path, ClipNaming naming) {
  TensorMap tensors = state_dict(model);
  if (naming == ClipNaming::huggingface) tensors = clip_hf_from_openai(tensors);
  write_safetensors(path, tensors, {{"format", "pt"}});  // HF's own files carry this metadata
}

ClipFiles find_clip_files(const std::string& directory) {
  static const std::string expected =
      "expected a CLIP model directory with weights (model.safetensors as Hugging Face distributes them, or "
      "open_clip_model.safetensors or a single *.safetensors file) and tokenizer files (vocab.json and merges.txt, "
      "or bpe_simple_vocab_16e6.txt.gz)";
  const fs::path dir(directory);
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw FileError(directory, "no such directory; " + expected);
  if (!fs::is_directory(dir, ec)) throw FileError(directory, "is not a directory; " + expected);
  auto file = [&](const char* name) -> std::string {
    std::error_code e;
    const auto p = dir / name;
    return fs::is_regular_file(p, e) ? p.string() : std::string();
  };

  ClipFiles files;
  files.weights = file("model.safetensors");
  if (files.weights.empty()) files.weights = file("open_clip_model.safetensors");
  if (files.weights.empty()) {
    std::vector<std::string> candidates;
    for (const auto& entry : fs::directory_iterator(dir, ec))
      if (entry.is_regular_file(ec) && entry.path().extension() == ".safetensors") candidates.push_back(entry.path().string());
    std::sort(candidates.begin(), candidates.end());
    if (candidates.empty()) throw FileError(directory, fmt::format("no weights (*.safetensors); {}; {}", expected, listing(dir)));
    if (candidates.size() > 1)
      throw FileError(directory, fmt::format("several candidate weight files ({}); expected model.safetensors, "
                                             "open_clip_model.safetensors or exactly one *.safetensors file",
                                             fmt::join(candidates, ", ")));
    files.weights = candidates.front();
  }

  const std::string vocab = file("vocab.json"), merges = file("merges.txt");
  if (!vocab.empty() && !merges.empty()) {
    files.vocab_json = vocab;
    files.merges_txt = merges;
    return files;
  }
  files.openai_bpe = file("bpe_simple_vocab_16e6.txt.gz");
  if (files.openai_bpe.empty()) files.openai_bpe = file("bpe_simple_vocab_16e6.txt");
  if (files.openai_bpe.empty()) {
    const std::string half = !vocab.empty()   ? " (vocab.json is there but merges.txt is not)"
                             : !merges.empty() ? " (merges.txt is there but vocab.json is not)"
                                               : "";
    throw FileError(directory, fmt::format("no tokenizer files{}: expected vocab.json and merges.txt (Hugging Face) or "
                                           "bpe_simple_vocab_16e6.txt.gz (OpenAI / open_clip); {}",
                                           half, listing(dir)));
  }
  return files;
}

LoadedClip load_clip_directory(const std::string& directory) {
  auto files = find_clip_files(directory);
  const auto checkpoint = read_openai_named(files.weights);
  const auto options = clip_options_from_checkpoint(checkpoint.tensors, files.weights);
  auto model = std::make_shared<ClipModel>(options);
  load_openai_named(*model, checkpoint.tensors, files.weights);

  ClipTokenizerOptions tokenizer_options;
  tokenizer_options.context_length = options.context_length;
  const bool hf = !files.vocab_json.empty();
  auto tokenizer = hf ? ClipTokenizer::from_hf_files(files.vocab_json, files.merges_txt, tokenizer_options)
                      : ClipTokenizer::from_openai_bpe(files.openai_bpe, tokenizer_options);
  const std::string tokenizer_files = hf ? files.vocab_json + " and " + files.merges_txt : files.openai_bpe;
  const auto tokenizer_vocab = static_cast<int64_t>(tokenizer.vocab_size());
  if (tokenizer_vocab > options.vocab_size)
    throw CheckpointError(fmt::format("{}: the tokenizer ({}) has {} ids but the weights ({}) embed only {} tokens "
                                      "(token_embedding.weight has {} rows); the tokenizer files do not belong to these "
                                      "weights",
                                      directory, tokenizer_files, tokenizer_vocab, files.weights, options.vocab_size,
                                      options.vocab_size));
  if (tokenizer.end_token() != tokenizer_vocab - 1)
    throw CheckpointError(fmt::format("{}: <|endoftext|> has id {} in the tokenizer ({}), but CLIP pools the text "
                                      "features at argmax(ids), so it must be the largest id ({})",
                                      directory, tokenizer.end_token(), tokenizer_files, tokenizer_vocab - 1));
  return LoadedClip{std::move(model), std::move(tokenizer), std::move(files), checkpoint.naming};
}

}  // namespace clprompt
