// Writes the seed corpus of every fuzz target: small valid inputs made with the library's own
// writers (and the tests' pickle, tokenizer and image writers), so that fuzzing starts from
// inputs that reach deep into each reader. Run by the build: make_corpus OUTPUT_DIR writes
// OUTPUT_DIR/<target>/<seed>. Nothing binary is kept in the repository.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "clip/tiny_vocab.hpp"
#include "clprompt/backbone/vit.hpp"
#include "clprompt/clip/clip_loader.hpp"
#include "clprompt/clip/clip_model.hpp"
#include "clprompt/io/file_bytes.hpp"
#include "clprompt/io/safetensors.hpp"
#include "clprompt/io/state_dict.hpp"
#include "clprompt/methods/registry.hpp"
#include "clprompt/run/run_config.hpp"
#include "data/py2_pickle_writer.hpp"
#include "fuzz_input.hpp"
#include "stb_write.hpp"

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

namespace {

fs::path output_root;

void write_seed(const std::string& target, const std::string& name, const std::string& bytes) {
  fs::create_directories(output_root / target);
  std::ofstream out(output_root / target / name, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write seed " + (output_root / target / name).string());
}
std::string text_of(const Bytes& bytes) { return std::string(bytes.begin(), bytes.end()); }
std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
/// Several files as one input, the way the multi-file targets split them.
std::string joined(const std::vector<std::string>& files) {
  std::string input;
  for (std::size_t i = 0; i < files.size(); ++i)
    input += (i ? std::string(clprompt::fuzz::kFileSeparator) : "") + files[i];
  return input;
}
/// The bytes write_safetensors writes for `tensors` (through a scratch file).
std::string safetensors_bytes(const clprompt::TensorMap& tensors, const clprompt::Metadata& metadata = {}) {
  const auto path = clprompt::fuzz::scratch().path() / "seed.safetensors";
  clprompt::write_safetensors(path.string(), tensors, metadata);
  return read_text(path);
}

void safetensors_seeds() {
  const auto values = at::arange(12, at::kFloat).reshape({3, 4});
  clprompt::TensorMap every_dtype;
  for (const auto dtype : {at::kDouble, at::kFloat, at::kHalf, at::kBFloat16, at::kLong, at::kInt, at::kShort,
                           at::kChar, at::kByte, at::kBool})
    every_dtype[std::string("t_") + c10::toString(dtype)] = values.to(dtype);
  every_dtype["scalar"] = at::tensor(3.5);
  every_dtype["empty"] = at::zeros({0, 5});
  write_seed("safetensors", "every_dtype", safetensors_bytes(every_dtype, {{"format", "pt"}, {"note", "seed"}}));
  write_seed("safetensors", "one_tensor", safetensors_bytes({{"w", values}}));
  write_seed("safetensors", "no_tensors", safetensors_bytes({}));
}

Bytes idx_file(uint32_t magic, const std::vector<uint32_t>& dims, const Bytes& payload) {
  Bytes b;
  auto be32 = [&](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<uint8_t>(v >> shift));
  };
  be32(magic);
  for (const auto d : dims) be32(d);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

void idx_seeds() {
  Bytes pixels(3 * 4 * 5);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 37);
  const Bytes images = idx_file(0x803, {3, 4, 5}, pixels), labels = idx_file(0x801, {3}, {0, 9, 4});
  write_seed("idx", "raw", joined({text_of(images), text_of(labels)}));
  write_seed("idx", "gzip", joined({text_of(clprompt::detail::gzip_compress(images)),
                                    text_of(clprompt::detail::gzip_compress(labels))}));
  // Two gzip members, as `cat a.gz b.gz` makes.
  const Bytes first(images.begin(), images.begin() + 20), rest(images.begin() + 20, images.end());
  write_seed("idx", "two_members", joined({text_of(clprompt::detail::gzip_compress(first)) +
                                               text_of(clprompt::detail::gzip_compress(rest)),
                                           text_of(labels)}));
}

Bytes cifar_records(int label_bytes, int records) {
  Bytes b;
  for (int r = 0; r < records; ++r) {
    for (int l = 0; l < label_bytes; ++l) b.push_back(static_cast<uint8_t>(r * 3 + l));
    for (int p = 0; p < 3072; ++p) b.push_back(static_cast<uint8_t>(p * 7 + r));
  }
  return b;
}

void cifar_seeds() {
  write_seed("cifar", "cifar10", text_of(cifar_records(1, 2)));
  write_seed("cifar", "cifar100", text_of(cifar_records(2, 2)));
}

void python_pickle_seeds() {
  // A data file that is both a CIFAR-10 batch and a CIFAR-100 split (torchvision's keys), and a
  // meta file with the names of both.
  const int64_t n = 3;
  Bytes pixels(static_cast<std::size_t>(n * 3072));
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 13);
  clprompt::test::Py2PickleWriter data;
  data.dict([&] {
    data.str("data");
    data.array({n, 3072}, pixels);
    data.str("labels");
    data.int_list({1, 9, 0});
    data.str("fine_labels");
    data.int_list({99, 5, 0});
    data.str("coarse_labels");
    data.int_list({19, 0, 7});
    data.str("batch_label");
    data.str("training batch 1 of 5");
  });
  data.stop();
  auto names = [](int count) {
    std::vector<std::string> v;
    for (int i = 0; i < count; ++i) v.push_back("class_" + std::to_string(i));
    return v;
  };
  clprompt::test::Py2PickleWriter meta;
  meta.dict([&] {
    meta.str("fine_label_names");
    meta.str_list(names(100));
    meta.str("coarse_label_names");
    meta.str_list(names(20));
    meta.str("label_names");
    meta.str_list(names(10));
  });
  meta.stop();
  write_seed("python_pickle", "cifar_with_meta", joined({text_of(data.bytes), text_of(meta.bytes)}));
  clprompt::test::Py2PickleWriter fortran;  // a Fortran-ordered int64 array in a list
  fortran.list(2, [&](int64_t i) {
    if (i == 0) fortran.array({2, 2}, Bytes(32, 1), /*fortran_order=*/true, "<i8");
    else fortran.none();
  });
  fortran.stop();
  write_seed("python_pickle", "fortran_array", text_of(fortran.bytes));
}

void image_decode_seeds() {
  auto append = [](void* context, void* data, int size) {
    auto* out = static_cast<std::string*>(context);
    out->append(static_cast<const char*>(data), static_cast<std::size_t>(size));
  };
  const int width = 7, height = 5;
  for (const int channels : {1, 2, 3, 4}) {
    std::vector<uint8_t> pixels(static_cast<std::size_t>(width * height * channels));
    for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 29);
    const auto suffix = std::to_string(channels) + "ch";
    std::string png, bmp, jpeg;
    if (!stbi_write_png_to_func(append, &png, width, height, channels, pixels.data(), width * channels) ||
        !stbi_write_bmp_to_func(append, &bmp, width, height, channels, pixels.data()) ||
        !stbi_write_jpg_to_func(append, &jpeg, width, height, channels, pixels.data(), 90))
      throw std::runtime_error("stb_image_write failed");
    write_seed("image_decode", "png_" + suffix, png);
    write_seed("image_decode", "bmp_" + suffix, bmp);
    write_seed("image_decode", "jpeg_" + suffix, jpeg);
  }
}

void configuration_seeds() {
  write_seed("json_options", "embedded_default", clprompt::write_options(clprompt::embedded_default()).dump(2));
  const auto registry = clprompt::builtin_methods();
  for (const auto& entry : registry.entries())
    write_seed("json_options", "method_" + entry.name,
               clprompt::Json{{"method", entry.name}, {"train", {{"epochs", 2}}}, {"scenario", {{"num_tasks", 5}}}}.dump());
  write_seed("json_options", "benchmark", R"({"method": "coda-prompt", "benchmark": "split-cifar100", "seed": 3})");
  const std::vector<std::string> overrides = {
      "train.lr=0.01", "method=coda-prompt", "scenario.num_tasks=5", "data.root=/data/fmnist",
      "benchmark=split-imagenet-r", "head=slca", "method_options.selector.pool_size=20",
      R"(transform={"size": 32, "train_resize": 36})", "threads=2", "backbone.depth=3"};
  for (std::size_t i = 0; i < overrides.size(); ++i) write_seed("override", "set_" + std::to_string(i), overrides[i]);
}

void clip_tokenizer_seeds() {
  const auto vocab = clprompt::test::clip_vocab(clprompt::test::kTinyMerges);
  nlohmann::json vocab_json = nlohmann::json::object();
  for (std::size_t i = 0; i < vocab.size(); ++i) vocab_json[vocab[i]] = i;
  const auto merges = clprompt::test::merges_text(clprompt::test::kTinyMerges);
  write_seed("clip_tokenizer", "hf_files", joined({vocab_json.dump(), merges, "Hello, CAFÉ abc &amp; don't!!!! 42"}));
  write_seed("clip_tokenizer", "openai_bpe_gz", text_of(clprompt::detail::gzip_compress(Bytes(merges.begin(), merges.end()))));
  write_seed("clip_tokenizer", "openai_bpe_plain", merges);
}

/// Half precision keeps the seeds small; the loaders convert to the model's dtype.
clprompt::TensorMap in_half(clprompt::TensorMap tensors) {
  for (auto& [name, tensor] : tensors) tensor = tensor.to(at::kHalf);
  return tensors;
}

void clip_loader_seeds() {
  clprompt::ClipOptions o;  // the smallest CLIP the loader infers: widths 64 (one head), 1 layer
  o.embed_dim = 8;
  o.image_size = 8;
  o.patch_size = 4;
  o.vision_width = o.text_width = 64;
  o.vision_layers = o.text_layers = 1;
  o.vision_heads = o.text_heads = 1;
  o.context_length = 4;
  o.vocab_size = 8;
  const clprompt::ClipModel model(o);
  const auto openai = clprompt::state_dict(model);
  write_seed("clip_loader", "openai_names", safetensors_bytes(in_half(openai)));
  write_seed("clip_loader", "huggingface_names",
             safetensors_bytes(in_half(clprompt::clip_hf_from_openai(openai)), {{"format", "pt"}}));
}

void timm_loader_seeds() {
  clprompt::ViTOptions o;
  o.image_size = 8;
  o.patch_size = 4;
  o.embed_dim = 8;
  o.depth = 2;
  o.num_heads = 2;
  const clprompt::VisionTransformer vit(o);
  auto tensors = clprompt::state_dict(vit);
  tensors["head.weight"] = at::zeros({3, o.embed_dim});  // timm's classifier, which the loader skips
  tensors["head.bias"] = at::zeros({3});
  write_seed("timm_loader", "vit_tiny", safetensors_bytes(in_half(tensors)));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  output_root = argv[1];
  at::NoGradGuard no_grad;  // the seeds are parameters copied, not computed
  try {
    safetensors_seeds();
    idx_seeds();
    cifar_seeds();
    python_pickle_seeds();
    image_decode_seeds();
    configuration_seeds();
    clip_tokenizer_seeds();
    clip_loader_seeds();
    timm_loader_seeds();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_corpus: %s\n", e.what());
    return 1;
  }
  return 0;
}
