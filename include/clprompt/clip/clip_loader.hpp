#pragma once
// Loading and saving CLIP weights (safetensors) in both published naming schemes:
//  - OpenAI / open_clip: the names ClipModel registers (visual.conv1.weight,
//    transformer.resblocks.0.attn.in_proj_weight, text_projection [width, embed], ...);
//  - Hugging Face CLIPModel: text_model.* / vision_model.*, separate q/k/v projections,
//    text_projection.weight and visual_projection.weight stored transposed ([embed, width]).
// docs/star-prompt-reference.md section 5 has the full table. Model sizes are inferred from the
// tensor shapes, so no config.json is needed; attention heads follow OpenAI's rule width / 64.
//
//   auto clip = clprompt::load_clip_directory("clip-vit-base-patch16");  // HF or open_clip dir
//   auto ids = at::tensor(clip.tokenizer.tokenize("a photo of a cat"), at::kLong).unsqueeze(0);
//   at::Tensor f = clip.model->encode_text(ids);                          // [1, 512]
#include <memory>
#include <string>

#include "clprompt/clip/clip_model.hpp"
#include "clprompt/io/safetensors.hpp"
#include "clprompt/io/state_dict.hpp"
#include "clprompt/clip/clip_tokenizer.hpp"

namespace clprompt {

/// The two naming schemes of published CLIP checkpoints.
enum class ClipNaming {
  openai,       ///< OpenAI's clip / open_clip: ClipModel's own names
  huggingface,  ///< transformers' CLIPModel (text_model.*, vision_model.*)
};
constexpr auto enum_names(ClipNaming) {
  return std::array{std::pair{ClipNaming::openai, "openai"}, std::pair{ClipNaming::huggingface, "huggingface"}};
}

/// The naming scheme of `tensors`: Hugging Face when names start with "text_model." or
/// "vision_model.", OpenAI when they start with "visual." or "transformer.resblocks." or
/// include "token_embedding.weight". Neither, or both at once, throws CheckpointError naming
/// `source`, what was expected and a few of the names found.
ClipNaming detect_clip_naming(const TensorMap& tensors, const std::string& source);

/// Hugging Face names -> OpenAI names: q/k/v projections concatenated into in_proj (rows q, k,
/// v), text_projection / visual_projection transposed, the rest renamed one to one; the
/// `*.position_ids` buffers of older HF files are dropped. Names it does not know are passed
/// through unchanged (a strict load then reports them as unexpected). A q/k/v group with a
/// missing or mis-shaped part throws CheckpointError naming `source` and the tensor.
TensorMap clip_openai_from_hf(const TensorMap& hf, const std::string& source);

/// OpenAI names -> Hugging Face names (the inverse of clip_openai_from_hf); unknown names pass
/// through. The tensors are views or copies of the inputs, made contiguous.
TensorMap clip_hf_from_openai(const TensorMap& openai);

/// Every ClipOptions size inferred from OpenAI-named shapes: vision width = conv1 output
/// channels, patch = its kernel, image size = sqrt(visual positions - 1) * patch, layers = the
/// number of consecutive resblocks indices from 0, heads = width / 64 (OpenAI's build_model rule;
/// a width that is not a multiple of 64 is an error), context length and vocabulary = rows of
/// positional_embedding and token_embedding.weight, embed_dim = text_projection's columns.
/// layer_norm_eps keeps its default. A missing or mis-ranked tensor, or sizes whose model would
/// hold more values than `openai_named` (so it could never load), throws CheckpointError naming
/// `source` and the tensor or the sizes.
ClipOptions clip_options_from_checkpoint(const TensorMap& openai_named, const std::string& source);

/// Loads a CLIP safetensors file of either naming into `model` (strict: every model tensor
/// must be present with its shape). OpenAI's extra entries (input_resolution, context_length,
/// vocab_size) and HF's position_ids are ignored. A mismatch throws CheckpointError starting
/// with `path` and listing every missing, unexpected (in the file's own naming where it could
/// not be converted) and mis-shaped name.
LoadReport load_clip(ClipModel& model, const std::string& path);

/// A ClipModel with the sizes of the file at `path` (clip_options_from_checkpoint), loaded.
std::shared_ptr<ClipModel> load_clip_model(const std::string& path);

/// Writes the model's weights to `path` (safetensors, atomically) in the given naming.
void save_clip(const ClipModel& model, const std::string& path, ClipNaming naming);

/// The files of a CLIP model directory as distributed. Tokenizer: either vocab_json and
/// merges_txt (Hugging Face) or openai_bpe; the other members are empty.
struct ClipFiles {
  std::string weights;
  std::string vocab_json, merges_txt;
  std::string openai_bpe;
};

/// Finds the files of a CLIP directory: weights = model.safetensors (Hugging Face, e.g. the
/// openai/clip-vit-base-patch16 repository), else open_clip_model.safetensors (open_clip on the
/// HF hub), else the only *.safetensors file; tokenizer = vocab.json + merges.txt, else
/// bpe_simple_vocab_16e6.txt.gz or .txt (OpenAI / open_clip). A missing directory, no weights,
/// several candidate weight files or no tokenizer throws FileError naming the directory,
/// what was expected and what was found.
ClipFiles find_clip_files(const std::string& directory);

struct LoadedClip {
  std::shared_ptr<ClipModel> model;
  ClipTokenizer tokenizer;  ///< context_length = the model's
  ClipFiles files;
  ClipNaming naming;  ///< of the weights file
};

/// find_clip_files, then load_clip_model and the tokenizer. The tokenizer's ids must fit the
/// model's vocabulary and <|endoftext|> must be its largest id (pooling uses argmax of the
/// ids); otherwise CheckpointError naming the files.
LoadedClip load_clip_directory(const std::string& directory);

}  // namespace clprompt
