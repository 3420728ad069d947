// Compiled part of include/clprompt/data: dataset readers and image decoding.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <zlib.h>

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

#include "clprompt/core/seed.hpp"
#include "clprompt/data/cifar.hpp"
#include "clprompt/data/class_order.hpp"
#include "clprompt/data/dataset.hpp"
#include "clprompt/data/idx.hpp"
#include "clprompt/data/image_folder.hpp"
#include "clprompt/data/loader.hpp"
#include "clprompt/data/scenario.hpp"
#include "clprompt/data/transforms.hpp"

namespace fs = std::filesystem;

namespace clprompt {

// ---- Dataset, TensorDataset -----------------------------------------------------------------

std::vector<int64_t> Dataset::labels() const {
  std::vector<int64_t> out(static_cast<size_t>(size()));
  for (int64_t i = 0; i < size(); ++i) out[static_cast<size_t>(i)] = label(i);
  return out;
}

std::array<int64_t, 3> Dataset::image_shape() const {
  if (size() == 0) throw ShapeError(fmt::format("{}: no images, so no image shape", description()));
  const at::Tensor first = images({0});
  return {first.size(1), first.size(2), first.size(3)};
}

std::vector<std::string> Dataset::class_names() const { return detail::numbered_class_names(num_classes()); }

namespace detail {

std::vector<std::string> numbered_class_names(int64_t n) {
  std::vector<std::string> names;
  names.reserve(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) names.push_back(std::to_string(i));
  return names;
}

void check_indices(const std::vector<int64_t>& indices, int64_t dataset_size, const std::string& what) {
  for (size_t k = 0; k < indices.size(); ++k)
    if (indices[k] < 0 || indices[k] >= dataset_size)
      throw ShapeError(fmt::format("{}: index {} (position {}) is outside [0, {})", what, indices[k], k,
                                   dataset_size));
}

}  // namespace detail

TensorDataset::TensorDataset(at::Tensor images, at::Tensor labels, std::vector<std::string> class_names,
                             std::string description)
    : class_names_(std::move(class_names)), description_(std::move(description)) {
  if (!images.defined() || images.scalar_type() != at::kByte || images.dim() != 4 ||
      (images.size(1) != 1 && images.size(1) != 3))
    throw ShapeError(fmt::format("TensorDataset: images must be uint8 [N, C, H, W] with C = 1 or 3, got {} {}",
                                 images.defined() ? std::string(c10::toString(images.scalar_type())) : "undefined",
                                 images.defined() ? c10::str(images.sizes()) : "[]"));
  if (!labels.defined() || labels.scalar_type() != at::kLong || labels.dim() != 1 ||
      labels.size(0) != images.size(0))
    throw ShapeError(fmt::format("TensorDataset: labels must be int64 [{}] (one per image), got {} {}",
                                 images.size(0),
                                 labels.defined() ? std::string(c10::toString(labels.scalar_type())) : "undefined",
                                 labels.defined() ? c10::str(labels.sizes()) : "[]"));
  images_ = images.cpu().contiguous();
  labels_ = labels.cpu().contiguous();
  labels_vector_.assign(labels_.data_ptr<int64_t>(), labels_.data_ptr<int64_t>() + labels_.numel());
  int64_t max_label = -1;
  for (size_t i = 0; i < labels_vector_.size(); ++i) {
    const int64_t l = labels_vector_[i];
    if (l < 0 || (!class_names_.empty() && l >= static_cast<int64_t>(class_names_.size())))
      throw ShapeError(fmt::format("TensorDataset: label {} at index {} is outside [0, {})", l, i,
                                   class_names_.empty() ? std::string("inf") : std::to_string(class_names_.size())));
    max_label = std::max(max_label, l);
  }
  num_classes_ = class_names_.empty() ? max_label + 1 : static_cast<int64_t>(class_names_.size());
  if (class_names_.empty()) class_names_ = detail::numbered_class_names(num_classes_);
  if (description_.empty())
    description_ = fmt::format("tensor dataset ({} images, {}x{}x{})", images_.size(0), images_.size(2),
                               images_.size(3), images_.size(1));
}

int64_t TensorDataset::label(int64_t index) const {
  if (index < 0 || index >= size())
    throw ShapeError(fmt::format("{}: index {} is outside [0, {})", description_, index, size()));
  return labels_vector_[static_cast<size_t>(index)];
}

at::Tensor TensorDataset::images(const std::vector<int64_t>& indices) const {
  detail::check_indices(indices, size(), description_);
  // index_select only reads the index tensor, so it may alias the vector.
  const at::Tensor index = at::from_blob(const_cast<int64_t*>(indices.data()),
                                         {static_cast<int64_t>(indices.size())}, at::kLong);
  return images_.index_select(0, index);
}

std::array<int64_t, 3> TensorDataset::image_shape() const {
  return {images_.size(1), images_.size(2), images_.size(3)};
}

// ---- files and gzip -------------------------------------------------------------------------

namespace detail {

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw FileError(path, "not found");
  if (fs::is_directory(path, ec)) throw FileError(path, "is a directory; expected a file");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw FileError(path, "cannot be opened for reading");
  const std::streamoff size = in.tellg();
  std::vector<uint8_t> bytes(static_cast<size_t>(std::max<std::streamoff>(size, 0)));
  in.seekg(0);
  if (!bytes.empty() && !in.read(reinterpret_cast<char*>(bytes.data()), size))
    throw FileError(path, fmt::format("read failed after {} of {} bytes", in.gcount(), size));
  return bytes;
}

namespace {

struct InflateGuard {
  z_stream* stream;
  ~InflateGuard() { inflateEnd(stream); }
};

bool has_gzip_magic(const uint8_t* data, size_t size) { return size >= 2 && data[0] == 0x1f && data[1] == 0x8b; }

}  // namespace

std::vector<uint8_t> gunzip(const std::vector<uint8_t>& compressed, const std::string& path) {
  if (compressed.size() > std::numeric_limits<uInt>::max())
    throw FileError(path, "gzip files over 4 GiB are not supported");
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw FileError(path, "zlib could not start decompression");
  InflateGuard guard{&zs};
  std::vector<uint8_t> out;
  // The gzip trailer stores the uncompressed size modulo 2^32: a good first guess, capped by
  // deflate's best ratio (about 1032:1) so a corrupt trailer cannot reserve gigabytes.
  if (compressed.size() >= 18) {
    const uint8_t* t = compressed.data() + compressed.size() - 4;
    const size_t isize = static_cast<size_t>(t[0]) | static_cast<size_t>(t[1]) << 8 |
                         static_cast<size_t>(t[2]) << 16 | static_cast<size_t>(t[3]) << 24;
    out.reserve(std::min(isize, compressed.size() * 1032) + (1u << 16));
  }
  zs.next_in = const_cast<Bytef*>(compressed.data());
  zs.avail_in = static_cast<uInt>(compressed.size());
  size_t produced = 0;
  for (;;) {
    if (out.size() - produced < (1u << 16)) out.resize(std::max<size_t>(out.capacity(), produced + (1u << 20)));
    const size_t room = std::min<size_t>(out.size() - produced, std::numeric_limits<uInt>::max());
    zs.next_out = out.data() + produced;
    zs.avail_out = static_cast<uInt>(room);
    const int ret = inflate(&zs, Z_NO_FLUSH);
    produced += room - zs.avail_out;
    if (ret == Z_STREAM_END) {
      // Concatenated members (as `cat a.gz b.gz` makes) decompress to the concatenation.
      if (zs.avail_in >= 2 && has_gzip_magic(zs.next_in, zs.avail_in)) {
        inflateReset(&zs);
        continue;
      }
      break;
    }
    if (ret == Z_OK || ret == Z_BUF_ERROR) {
      if (zs.avail_in == 0 && zs.avail_out != 0)
        throw FileError(path, fmt::format("truncated gzip data: the stream ends after {} compressed bytes "
                                          "({} decompressed) without its end marker",
                                          compressed.size(), produced));
      continue;
    }
    throw FileError(path, fmt::format("corrupt gzip data ({})", zs.msg != nullptr ? zs.msg : zError(ret)));
  }
  out.resize(produced);
  return out;
}

std::vector<uint8_t> read_file_maybe_gzip(const std::string& path, bool* was_gzip) {
  std::vector<uint8_t> bytes = read_file_bytes(path);
  const bool gz = has_gzip_magic(bytes.data(), bytes.size());
  if (was_gzip != nullptr) *was_gzip = gz;
  return gz ? gunzip(bytes, path) : bytes;
}

std::vector<uint8_t> gzip_compress(const std::vector<uint8_t>& bytes) {
  if (bytes.size() > std::numeric_limits<uInt>::max()) throw Error("gzip_compress: inputs over 4 GiB are not supported");
  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw Error("gzip_compress: zlib could not start compression");
  std::vector<uint8_t> out(deflateBound(&zs, static_cast<uLong>(bytes.size())) + 64);
  zs.next_in = const_cast<Bytef*>(bytes.data());
  zs.avail_in = static_cast<uInt>(bytes.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  const int ret = deflate(&zs, Z_FINISH);
  const size_t produced = zs.total_out;
  deflateEnd(&zs);
  if (ret != Z_STREAM_END) throw Error(fmt::format("gzip_compress: zlib failed ({})", zError(ret)));
  out.resize(produced);
  return out;
}

}  // namespace detail

// ---- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------------

namespace {

uint32_t read_be32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 |
         static_cast<uint32_t>(p[3]);
}

// Checks an IDX file of unsigned bytes with `ndims` dimensions and returns its dimensions.
std::vector<int64_t> parse_idx_header(const std::vector<uint8_t>& bytes, const std::string& path, uint32_t ndims,
                                      bool gz, const char* items) {
  const char* after = gz ? " after decompression" : "";
  const uint32_t expected_magic = 0x0800u | ndims;
  if (bytes.size() < 4)
    throw FileError(path, fmt::format("truncated: {} bytes{}, shorter than the 4-byte IDX magic number",
                                      bytes.size(), after));
  const uint32_t magic = read_be32(bytes.data());
  if (magic != expected_magic)
    throw FileError(path, fmt::format("wrong magic number 0x{:08x}; expected 0x{:08x} (IDX file of unsigned "
                                      "bytes with {} dimensions, i.e. {})",
                                      magic, expected_magic, ndims, items));
  const size_t header = 4 + 4 * static_cast<size_t>(ndims);
  if (bytes.size() < header)
    throw FileError(path, fmt::format("truncated: {} bytes{}, shorter than the {}-byte IDX header", bytes.size(),
                                      after, header));
  std::vector<int64_t> dims(ndims);
  uint64_t payload = 1;
  for (uint32_t d = 0; d < ndims; ++d) {
    dims[d] = read_be32(bytes.data() + 4 + 4 * d);
    payload *= static_cast<uint64_t>(dims[d]);
  }
  const uint64_t expected = header + payload;
  if (bytes.size() != expected) {
    const std::string shape = ndims == 3 ? fmt::format("{} images of {}x{}", dims[0], dims[1], dims[2])
                                         : fmt::format("{} labels", dims[0]);
    throw FileError(path, fmt::format("{}: header says {} ({} bytes) but the file has {} bytes{}",
                                      bytes.size() < expected ? "truncated" : "size mismatch", shape, expected,
                                      bytes.size(), after));
  }
  return dims;
}

std::string find_idx_file(const std::string& directory, const std::string& prefix, const std::string& kind,
                          const std::string& dataset) {
  // The official names, gzipped or not, and the dotted variant some mirrors use.
  const std::string base = fmt::format("{}-{}-ubyte", prefix, kind);
  std::string dotted = base;
  dotted[prefix.size() + kind.find('-') + 1] = '.';
  for (const std::string& name : {base, base + ".gz", dotted, dotted + ".gz"}) {
    const fs::path p = fs::path(directory) / name;
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  throw FileError((fs::path(directory) / base).string(),
                  fmt::format("not found (nor with .gz); expected the {} IDX files "
                              "{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz] in {}",
                              dataset, directory));
}

TensorDataset load_idx_dataset(const std::string& directory, Split split, const std::string& dataset,
                               std::vector<std::string> class_names) {
  const std::string prefix = split == Split::train ? "train" : "t10k";
  const std::string images = find_idx_file(directory, prefix, "images-idx3", dataset);
  const std::string labels = find_idx_file(directory, prefix, "labels-idx1", dataset);
  TensorDataset raw = read_idx(images, labels, std::move(class_names));
  const auto shape = raw.image_shape();
  return TensorDataset(raw.all_images(), raw.all_labels(), raw.class_names(),
                       fmt::format("{} {} ({} images, {}x{}x{}) from {}", dataset, to_string(split), raw.size(),
                                   shape[1], shape[2], shape[0], directory));
}

}  // namespace

TensorDataset read_idx(const std::string& images_path, const std::string& labels_path,
                       std::vector<std::string> class_names) {
  bool images_gz = false, labels_gz = false;
  const std::vector<uint8_t> image_bytes = detail::read_file_maybe_gzip(images_path, &images_gz);
  const std::vector<int64_t> dims = parse_idx_header(image_bytes, images_path, 3, images_gz, "N x H x W images");
  const std::vector<uint8_t> label_bytes = detail::read_file_maybe_gzip(labels_path, &labels_gz);
  const std::vector<int64_t> ldims = parse_idx_header(label_bytes, labels_path, 1, labels_gz, "N labels");
  if (ldims[0] != dims[0])
    throw FileError(labels_path, fmt::format("has {} labels but {} has {} images", ldims[0], images_path, dims[0]));

  const int64_t n = dims[0];
  at::Tensor images = at::empty({n, 1, dims[1], dims[2]}, at::kByte);
  if (images.numel() > 0) std::memcpy(images.data_ptr<uint8_t>(), image_bytes.data() + 16, images.numel());
  at::Tensor labels = at::empty({n}, at::kLong);
  int64_t* l = labels.data_ptr<int64_t>();
  const int64_t limit = class_names.empty() ? 256 : static_cast<int64_t>(class_names.size());
  for (int64_t i = 0; i < n; ++i) {
    l[i] = label_bytes[static_cast<size_t>(8 + i)];
    if (l[i] >= limit)
      throw FileError(labels_path, fmt::format("label {} at index {} is outside [0, {}) ({} classes)", l[i], i,
                                               limit, limit));
  }
  return TensorDataset(std::move(images), std::move(labels), std::move(class_names),
                       fmt::format("IDX {} ({} images, {}x{}x1)", images_path, n, dims[1], dims[2]));
}

std::vector<std::string> fashion_mnist_class_names() {
  return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
}

TensorDataset load_fashion_mnist(const std::string& directory, Split split) {
  return load_idx_dataset(directory, split, "Fashion-MNIST", fashion_mnist_class_names());
}

TensorDataset load_mnist(const std::string& directory, Split split) {
  return load_idx_dataset(directory, split, "MNIST", detail::numbered_class_names(10));
}

// ---- CIFAR ----------------------------------------------------------------------------------

namespace {

constexpr int64_t kCifarPixels = 3 * 32 * 32;

struct CifarRecords {
  std::vector<uint8_t> pixels;
  std::vector<int64_t> labels;
};

// Appends the records of one file: `label_bytes` label bytes (the label used is at
// `label_offset`, and must be below `num_classes`) followed by 3072 pixel bytes.
void append_cifar_file(const std::string& path, int64_t label_bytes, int64_t label_offset, int64_t num_classes,
                       const char* format, CifarRecords& out) {
  const std::vector<uint8_t> bytes = detail::read_file_bytes(path);
  const int64_t record = label_bytes + kCifarPixels;
  const auto size = static_cast<int64_t>(bytes.size());
  if (size == 0) throw FileError(path, fmt::format("is empty; expected {} records of {} bytes", format, record));
  if (size % record != 0)
    throw FileError(path, fmt::format("truncated or not {}: {} bytes is not a whole number of {}-byte records "
                                      "({} records and {} bytes left over)",
                                      format, size, record, size / record, size % record));
  const int64_t n = size / record;
  const size_t first_pixel = out.pixels.size();
  out.pixels.resize(first_pixel + static_cast<size_t>(n * kCifarPixels));
  out.labels.reserve(out.labels.size() + static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* r = bytes.data() + i * record;
    const int64_t label = r[label_offset];
    if (label >= num_classes)
      throw FileError(path, fmt::format("record {} has label {}; expected a label in [0, {}) for {}", i, label,
                                        num_classes, format));
    out.labels.push_back(label);
    std::memcpy(out.pixels.data() + first_pixel + i * kCifarPixels, r + label_bytes, kCifarPixels);
  }
}

TensorDataset to_dataset(CifarRecords&& records, std::vector<std::string> class_names, std::string description) {
  const auto n = static_cast<int64_t>(records.labels.size());
  at::Tensor images = at::empty({n, 3, 32, 32}, at::kByte);
  if (n > 0) std::memcpy(images.data_ptr<uint8_t>(), records.pixels.data(), records.pixels.size());
  at::Tensor labels = at::empty({n}, at::kLong);
  if (n > 0) std::memcpy(labels.data_ptr<int64_t>(), records.labels.data(), sizeof(int64_t) * n);
  return TensorDataset(std::move(images), std::move(labels), std::move(class_names), std::move(description));
}

// Names one per line, blank lines skipped; empty when the file is absent.
std::vector<std::string> read_class_names(const fs::path& path, int64_t expected) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return {};
  std::ifstream in(path);
  if (!in) throw FileError(path.string(), "cannot be opened for reading");
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  if (static_cast<int64_t>(names.size()) != expected)
    throw FileError(path.string(), fmt::format("has {} class names; expected {} (one per line)", names.size(),
                                               expected));
  return names;
}

// `directory`, or its sub-folder as the archive unpacks, whichever holds `probe`.
fs::path cifar_directory(const std::string& directory, const char* probe, const char* archive_folder) {
  std::error_code ec;
  const fs::path nested = fs::path(directory) / archive_folder;
  if (!fs::exists(fs::path(directory) / probe, ec) && fs::exists(nested / probe, ec)) return nested;
  return directory;
}

void require_file(const fs::path& path, const char* expected) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw FileError(path.string(), fmt::format("not found; expected {}", expected));
}

const char* cifar100_format(CifarLabel label) {
  return label == CifarLabel::fine ? "CIFAR-100 binary (fine labels)" : "CIFAR-100 binary (coarse labels)";
}

}  // namespace

TensorDataset read_cifar100_binary(const std::string& path, CifarLabel label) {
  const int64_t classes = label == CifarLabel::fine ? 100 : 20;
  CifarRecords records;
  append_cifar_file(path, 2, label == CifarLabel::fine ? 1 : 0, classes, cifar100_format(label), records);
  const auto n = records.labels.size();
  return to_dataset(std::move(records), detail::numbered_class_names(classes),
                    fmt::format("CIFAR-100 {} ({} images, 32x32x3, {} labels)", path, n, to_string(label)));
}

TensorDataset load_cifar100(const std::string& directory, Split split, CifarLabel label) {
  const fs::path dir = cifar_directory(directory, "train.bin", "cifar-100-binary");
  const fs::path file = dir / (split == Split::train ? "train.bin" : "test.bin");
  require_file(file, "the CIFAR-100 binary version (train.bin, test.bin)");
  const int64_t classes = label == CifarLabel::fine ? 100 : 20;
  CifarRecords records;
  append_cifar_file(file.string(), 2, label == CifarLabel::fine ? 1 : 0, classes, cifar100_format(label), records);
  std::vector<std::string> names =
      read_class_names(dir / (label == CifarLabel::fine ? "fine_label_names.txt" : "coarse_label_names.txt"), classes);
  if (names.empty()) names = detail::numbered_class_names(classes);
  const auto n = records.labels.size();
  return to_dataset(std::move(records), std::move(names),
                    fmt::format("CIFAR-100 {} ({} images, 32x32x3, {} labels) from {}", to_string(split), n,
                                to_string(label), dir.string()));
}

TensorDataset read_cifar10_binary(const std::string& path) {
  CifarRecords records;
  append_cifar_file(path, 1, 0, 10, "CIFAR-10 binary", records);
  const auto n = records.labels.size();
  return to_dataset(std::move(records), detail::numbered_class_names(10),
                    fmt::format("CIFAR-10 {} ({} images, 32x32x3)", path, n));
}

TensorDataset load_cifar10(const std::string& directory, Split split) {
  const fs::path dir = cifar_directory(directory, "test_batch.bin", "cifar-10-batches-bin");
  std::vector<fs::path> files;
  if (split == Split::train)
    for (int b = 1; b <= 5; ++b) files.push_back(dir / fmt::format("data_batch_{}.bin", b));
  else
    files.push_back(dir / "test_batch.bin");
  CifarRecords records;
  for (const fs::path& file : files) {
    require_file(file, "the CIFAR-10 binary version (data_batch_1.bin ... data_batch_5.bin, test_batch.bin)");
    append_cifar_file(file.string(), 1, 0, 10, "CIFAR-10 binary", records);
  }
  std::vector<std::string> names = read_class_names(dir / "batches.meta.txt", 10);
  if (names.empty()) names = detail::numbered_class_names(10);
  const auto n = records.labels.size();
  return to_dataset(std::move(records), std::move(names),
                    fmt::format("CIFAR-10 {} ({} images, 32x32x3) from {}", to_string(split), n, dir.string()));
}

// ---- image folders --------------------------------------------------------------------------

namespace detail {

at::Tensor decode_image(const std::string& path) {
  int width = 0, height = 0, channels = 0;
  // stb_image keeps its failure reason per thread, so decoding in parallel is safe.
  stbi_uc* pixels = stbi_load(path.c_str(), &width, &height, &channels, 3);
  if (pixels == nullptr) {
    std::error_code ec;
    if (!fs::exists(path, ec)) throw FileError(path, "not found");
    throw FileError(path, fmt::format("cannot decode image ({}); expected a JPEG, PNG or BMP file",
                                      stbi_failure_reason()));
  }
  at::Tensor hwc = at::empty({height, width, 3}, at::kByte);
  std::memcpy(hwc.data_ptr<uint8_t>(), pixels, static_cast<size_t>(width) * height * 3);
  stbi_image_free(pixels);
  return hwc.permute({2, 0, 1}).contiguous();
}

at::Tensor resize_u8(const at::Tensor& images, int64_t height, int64_t width) {
  const bool single = images.dim() == 3;
  if (images.size(-2) == height && images.size(-1) == width) return images;
  at::Tensor x = (single ? images.unsqueeze(0) : images).to(at::kFloat);
  x = at::upsample_bilinear2d(x, {height, width}, /*align_corners=*/false);
  x = x.round_().clamp_(0, 255).to(at::kByte);
  return single ? x.squeeze(0) : x;
}

}  // namespace detail

namespace {

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp";
}

bool is_hidden(const fs::path& p) { return p.filename().string().rfind('.', 0) == 0; }

}  // namespace

ImageFolderDataset::ImageFolderDataset(const std::string& root, ImageFolderOptions options)
    : root_(root), options_(options) {
  options_.validate("");
  std::error_code ec;
  if (!fs::exists(root, ec)) throw FileError(root, "not found; expected a directory with one sub-folder per class");
  if (!fs::is_directory(root, ec))
    throw FileError(root, "is not a directory; expected a directory with one sub-folder per class");
  try {
    scan();
  } catch (const fs::filesystem_error& e) {
    throw FileError(e.path1().empty() ? root : e.path1().string(),
                    fmt::format("cannot be listed ({})", e.code().message()));
  }
  if (options_.decode_size > 0) {
    height_ = width_ = options_.decode_size;
  } else {
    // Only the header is read: listing stays cheap.
    int w = 0, h = 0, ch = 0;
    if (stbi_info(files_.front().c_str(), &w, &h, &ch) == 0)
      throw FileError(files_.front(), fmt::format("cannot read image header ({}); expected a JPEG, PNG or BMP file",
                                                  stbi_failure_reason()));
    height_ = h;
    width_ = w;
  }
}

void ImageFolderDataset::scan() {
  std::vector<fs::path> class_dirs;
  for (const auto& entry : fs::directory_iterator(root_))
    if (entry.is_directory() && !is_hidden(entry.path())) class_dirs.push_back(entry.path());
  std::sort(class_dirs.begin(), class_dirs.end());
  if (class_dirs.empty()) throw FileError(root_, "has no class sub-folders; expected one sub-folder per class");
  for (size_t c = 0; c < class_dirs.size(); ++c) {
    std::vector<std::string> found;
    for (const auto& entry : fs::recursive_directory_iterator(class_dirs[c], fs::directory_options::follow_directory_symlink))
      if (entry.is_regular_file() && is_image_file(entry.path()) && !is_hidden(entry.path()))
        found.push_back(entry.path().string());
    if (found.empty())
      throw FileError(class_dirs[c].string(), "class folder has no images; expected .jpg, .jpeg, .png or .bmp files");
    std::sort(found.begin(), found.end());
    class_names_.push_back(class_dirs[c].filename().string());
    for (auto& f : found) {
      files_.push_back(std::move(f));
      labels_.push_back(static_cast<int64_t>(c));
    }
  }
}

int64_t ImageFolderDataset::label(int64_t index) const {
  if (index < 0 || index >= size())
    throw ShapeError(fmt::format("{}: index {} is outside [0, {})", description(), index, size()));
  return labels_[static_cast<size_t>(index)];
}

at::Tensor ImageFolderDataset::images(const std::vector<int64_t>& indices) const {
  detail::check_indices(indices, size(), description());
  const auto batch = static_cast<int64_t>(indices.size());
  at::Tensor out = at::empty({batch, 3, height_, width_}, at::kByte);
  uint8_t* dst = out.data_ptr<uint8_t>();
  const int64_t image_bytes = 3 * height_ * width_;
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const std::string& file = files_[static_cast<size_t>(indices[static_cast<size_t>(i)])];
      at::Tensor image = detail::decode_image(file);
      if (options_.decode_size > 0) {
        image = detail::resize_u8(image, height_, width_).contiguous();
      } else if (image.size(1) != height_ || image.size(2) != width_) {
        throw FileError(file, fmt::format("is {}x{} but decode_size = 0 needs every image to be {}x{} like {}",
                                          image.size(2), image.size(1), width_, height_, files_.front()));
      }
      std::memcpy(dst + i * image_bytes, image.data_ptr<uint8_t>(), static_cast<size_t>(image_bytes));
    }
  });
  return out;
}

std::string ImageFolderDataset::description() const {
  return fmt::format("image folder {} ({} images, {} classes, {} {}x{}x3)", root_, files_.size(), class_names_.size(),
                     options_.decode_size > 0 ? "decoded to" : "all", width_, height_);
}

// ---- transforms -----------------------------------------------------------------------------

void TransformOptions::validate(const std::string& path) const {
  require_option(resize >= 0, path, "resize", fmt::format("expected 0 (keep) or a positive size, got {}", resize));
  require_option(crop_size >= 0, path, "crop_size", fmt::format("expected 0 (no crop) or a positive size, got {}", crop_size));
  require_option(crop_padding >= 0, path, "crop_padding", fmt::format("expected >= 0, got {}", crop_padding));
  require_option(!random_crop || crop_size > 0, path, "random_crop", "needs crop_size > 0");
  require_option(crop_padding == 0 || random_crop, path, "crop_padding",
                 "only pads before a random crop; set random_crop = true or crop_padding = 0");
  require_option(mean.empty() || mean.size() == 3, path, "mean",
                 fmt::format("expected 3 values (R, G, B) or none, got {}", mean.size()));
  require_option(std.size() == mean.size(), path, "std",
                 fmt::format("expected as many values as mean ({}), got {}", mean.size(), std.size()));
  for (size_t i = 0; i < std.size(); ++i)
    require_option(std[i] > 0, path, fmt::format("std[{}]", i), fmt::format("expected > 0, got {}", std[i]));
}

namespace detail {

int64_t uniform_index(at::Generator& generator, int64_t n) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  auto* impl = at::check_generator<at::CPUGeneratorImpl>(generator);
  // Modulo bias is below 2^-40 for any image-sized n.
  return static_cast<int64_t>(impl->random64() % static_cast<uint64_t>(n));
}

}  // namespace detail

Transform::Transform(TransformOptions options) : options_(std::move(options)) { options_.validate(""); }

int64_t Transform::output_size(int64_t input_size) const {
  const int64_t resized = options_.resize > 0 ? options_.resize : input_size;
  return options_.crop_size > 0 ? options_.crop_size : resized;
}

at::Tensor Transform::operator()(const at::Tensor& images_u8, bool train, at::Generator& generator) const {
  if (!images_u8.defined() || images_u8.scalar_type() != at::kByte || images_u8.dim() != 4 ||
      (images_u8.size(1) != 1 && images_u8.size(1) != 3))
    throw ShapeError(fmt::format("Transform: expected uint8 [B, C, H, W] images with C = 1 or 3, got {} {}",
                                 images_u8.defined() ? std::string(c10::toString(images_u8.scalar_type())) : "undefined",
                                 images_u8.defined() ? c10::str(images_u8.sizes()) : "[]"));
  const int64_t batch = images_u8.size(0);
  at::Tensor x = images_u8;
  // Resizing needs floats; cropping and flipping only move bytes, so they stay uint8 otherwise.
  if (options_.resize > 0 && (x.size(2) != options_.resize || x.size(3) != options_.resize))
    x = at::upsample_bilinear2d(x.to(at::kFloat).div_(255.0), {options_.resize, options_.resize}, false);

  const int64_t crop = options_.crop_size;
  if (crop > 0) {
    const bool random = train && options_.random_crop;
    const int64_t pad = random ? options_.crop_padding : 0;
    if (pad > 0) x = at::constant_pad_nd(x, {pad, pad, pad, pad}, 0);
    const int64_t h = x.size(2), w = x.size(3);
    if (crop > h || crop > w)
      throw ShapeError(fmt::format("Transform: crop_size {} is larger than the {}x{} image{}", crop, w, h,
                                   options_.resize > 0 || pad > 0 ? " (after resize and padding)" : ""));
    if (random) {
      std::vector<at::Tensor> crops;
      crops.reserve(static_cast<size_t>(batch));
      for (int64_t b = 0; b < batch; ++b) {
        const int64_t top = detail::uniform_index(generator, h - crop + 1);
        const int64_t left = detail::uniform_index(generator, w - crop + 1);
        crops.push_back(x[b].narrow(1, top, crop).narrow(2, left, crop));
      }
      x = batch > 0 ? at::stack(crops) : x.narrow(2, 0, crop).narrow(3, 0, crop);
    } else {
      // Same rounding as torchvision's center_crop: round((h - crop) / 2), half to even.
      const auto top = static_cast<int64_t>(std::nearbyint(static_cast<double>(h - crop) / 2.0));
      const auto left = static_cast<int64_t>(std::nearbyint(static_cast<double>(w - crop) / 2.0));
      x = x.narrow(2, top, crop).narrow(3, left, crop);
    }
  }

  if (train && options_.horizontal_flip) {
    std::vector<int64_t> flipped;
    for (int64_t b = 0; b < batch; ++b)
      if (detail::uniform_index(generator, 2) == 1) flipped.push_back(b);
    if (!flipped.empty()) {
      const at::Tensor index = at::tensor(flipped, at::kLong);
      // Out of place: x may still be the caller's tensor.
      x = x.index_copy(0, index, x.index_select(0, index).flip({3}));
    }
  }

  if (x.scalar_type() == at::kByte) x = x.to(at::kFloat).div_(255.0);
  if (x.size(1) == 1) x = x.expand({x.size(0), 3, x.size(2), x.size(3)});
  if (!options_.mean.empty()) {
    const at::Tensor mean = at::tensor(options_.mean, at::kDouble).to(at::kFloat).view({1, 3, 1, 1});
    const at::Tensor std = at::tensor(options_.std, at::kDouble).to(at::kFloat).view({1, 3, 1, 1});
    x = (x - mean).div_(std);
  }
  return x.contiguous();
}

// ---- class order ----------------------------------------------------------------------------

namespace {

// numpy's random_interval: a uniform value in [0, max] by masked rejection sampling.
uint64_t numpy_random_interval(std::mt19937& mt, uint64_t max) {
  if (max == 0) return 0;
  uint64_t mask = max;
  for (int shift = 1; shift <= 32; shift *= 2) mask |= mask >> shift;
  uint64_t value = 0;
  if (max <= 0xffffffffULL) {
    do value = mt() & mask;
    while (value > max);
  } else {
    do {
      const uint64_t high = mt();
      value = ((high << 32) | mt()) & mask;
    } while (value > max);
  }
  return value;
}

}  // namespace

std::vector<int64_t> numpy_permutation(int64_t n, uint32_t seed) {
  if (n < 0) throw Error(fmt::format("numpy_permutation: expected n >= 0, got {}", n));
  // RandomState(int) seeds MT19937 with init_genrand(seed), exactly what std::mt19937(seed) does,
  // and both return the same tempered 32-bit outputs.
  std::mt19937 mt(seed);
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  for (int64_t i = n - 1; i >= 1; --i) {
    const auto j = static_cast<int64_t>(numpy_random_interval(mt, static_cast<uint64_t>(i)));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

// ---- scenario -------------------------------------------------------------------------------

void ScenarioOptions::validate(const std::string& path) const {
  require_option(num_tasks >= 1, path, "num_tasks", fmt::format("expected >= 1, got {}", num_tasks));
  require_option(initial_classes >= 0, path, "initial_classes",
                 fmt::format("expected 0 (equal tasks) or a positive count, got {}", initial_classes));
  require_option(train_per_class >= 0, path, "train_per_class",
                 fmt::format("expected 0 (all) or a positive count, got {}", train_per_class));
  require_option(test_per_class >= 0, path, "test_per_class",
                 fmt::format("expected 0 (all) or a positive count, got {}", test_per_class));
  require_option(validation_per_class >= 0, path, "validation_per_class",
                 fmt::format("expected 0 (evaluate on the test split) or a positive count, got {}",
                             validation_per_class));
  for (size_t i = 0; i < class_order.size(); ++i)
    require_option(class_order[i] >= 0, path, fmt::format("class_order[{}]", i),
                   fmt::format("expected a class id >= 0, got {}", class_order[i]));
}

namespace {

// Per dataset index, whether a per-class subsample keeps it (all when per_class == 0).
std::vector<bool> subsample_per_class(const std::vector<int64_t>& labels, int64_t num_classes, int64_t per_class,
                                      uint64_t seed, uint64_t stream) {
  std::vector<bool> keep(labels.size(), per_class == 0);
  if (per_class == 0) return keep;
  std::vector<std::vector<int64_t>> by_class(static_cast<size_t>(num_classes));
  for (size_t i = 0; i < labels.size(); ++i) by_class[static_cast<size_t>(labels[i])].push_back(static_cast<int64_t>(i));
  at::Generator generator = make_generator(seed, stream);
  for (const auto& members : by_class) {
    const auto count = static_cast<int64_t>(members.size());
    if (count <= per_class) {
      for (int64_t i : members) keep[static_cast<size_t>(i)] = true;
      continue;
    }
    const at::Tensor perm = at::randperm(count, generator);
    const int64_t* p = perm.data_ptr<int64_t>();
    for (int64_t k = 0; k < per_class; ++k) keep[static_cast<size_t>(members[static_cast<size_t>(p[k])])] = true;
  }
  return keep;
}

std::vector<int64_t> checked_labels(const Dataset& dataset, int64_t num_classes) {
  std::vector<int64_t> labels = dataset.labels();
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] < 0 || labels[i] >= num_classes)
      throw ShapeError(fmt::format("{}: label {} at index {} is outside [0, {})", dataset.description(), labels[i], i,
                                   num_classes));
  return labels;
}

}  // namespace

Scenario::Scenario(std::shared_ptr<const Dataset> train, std::shared_ptr<const Dataset> test,
                   const ScenarioOptions& options, uint64_t seed, const std::string& options_path)
    : train_(std::move(train)), test_(std::move(test)), options_(options), seed_(seed) {
  if (!train_ || !test_) throw Error("Scenario: the train and test datasets must not be null");
  options_.validate(options_path);
  const int64_t classes = train_->num_classes();
  if (classes < 1) throw ShapeError(fmt::format("Scenario: {} has no classes", train_->description()));
  if (test_->num_classes() != classes)
    throw ShapeError(fmt::format("Scenario: the train set has {} classes but the test set has {} ({} vs {})", classes,
                                 test_->num_classes(), train_->description(), test_->description()));
  const auto field = [&](std::string_view key) { return detail::join_path(options_path, key); };

  // Class order.
  if (!options_.class_order.empty()) {
    if (static_cast<int64_t>(options_.class_order.size()) != classes)
      throw ConfigError(field("class_order"), fmt::format("expected a permutation of the {} class ids, got {} entries",
                                                          classes, options_.class_order.size()));
    std::vector<bool> seen(static_cast<size_t>(classes), false);
    for (size_t i = 0; i < options_.class_order.size(); ++i) {
      const int64_t c = options_.class_order[i];
      if (c < 0 || c >= classes || seen[static_cast<size_t>(c)])
        throw ConfigError(fmt::format("{}[{}]", field("class_order"), i),
                          fmt::format("expected a permutation of [0, {}), got {} {}", classes, c,
                                      c < 0 || c >= classes ? "(out of range)" : "(repeated)"));
      seen[static_cast<size_t>(c)] = true;
    }
    class_order_ = options_.class_order;
  } else if (options_.shuffle_classes) {
    if (seed > std::numeric_limits<uint32_t>::max())
      throw ConfigError("seed", fmt::format("shuffle_classes uses numpy's seeding, which needs a seed below 2^32; got {}",
                                            seed));
    class_order_ = numpy_permutation(classes, static_cast<uint32_t>(seed));
  } else {
    class_order_.resize(static_cast<size_t>(classes));
    std::iota(class_order_.begin(), class_order_.end(), int64_t{0});
  }
  label_map_.assign(static_cast<size_t>(classes), -1);
  for (int64_t i = 0; i < classes; ++i) label_map_[static_cast<size_t>(class_order_[static_cast<size_t>(i)])] = i;

  // Task boundaries.
  const int64_t tasks = options_.num_tasks;
  int64_t first = 0, rest = 0;
  if (options_.initial_classes == 0) {
    if (classes % tasks != 0)
      throw ConfigError(field("num_tasks"), fmt::format("{} classes do not split into {} equal tasks; choose a "
                                                        "divisor of {} or set initial_classes",
                                                        classes, tasks, classes));
    first = rest = classes / tasks;
  } else {
    first = options_.initial_classes;
    const int64_t remaining = classes - first;
    const bool fits = tasks == 1 ? remaining == 0 : remaining > 0 && remaining % (tasks - 1) == 0;
    if (!fits)
      throw ConfigError(field("initial_classes"),
                        fmt::format("{} initial classes leave {} of the {} classes, which do not split into {} equal "
                                    "tasks",
                                    first, remaining, classes, tasks - 1));
    rest = tasks == 1 ? 0 : remaining / (tasks - 1);
  }
  std::vector<int64_t> task_of_label(static_cast<size_t>(classes));
  tasks_.resize(static_cast<size_t>(tasks));
  for (int64_t t = 0, begin = 0; t < tasks; ++t) {
    Task& task = tasks_[static_cast<size_t>(t)];
    task.index = t;
    task.class_begin = begin;
    task.class_end = begin + (t == 0 ? first : rest);
    for (int64_t l = task.class_begin; l < task.class_end; ++l) task_of_label[static_cast<size_t>(l)] = t;
    begin = task.class_end;
  }

  // Samples, by dataset order within each task.
  // `eligible` (when not null) restricts the candidates, e.g. to the images not held out.
  const auto assign = [&](const std::vector<int64_t>& labels, const std::vector<bool>* eligible, int64_t per_class,
                          uint64_t stream, auto member) {
    std::vector<int64_t> candidates, candidate_labels;
    for (size_t i = 0; i < labels.size(); ++i)
      if (eligible == nullptr || (*eligible)[i]) {
        candidates.push_back(static_cast<int64_t>(i));
        candidate_labels.push_back(labels[i]);
      }
    const std::vector<bool> keep = subsample_per_class(candidate_labels, classes, per_class, seed_, stream);
    std::vector<bool> chosen(labels.size(), false);
    for (size_t k = 0; k < candidates.size(); ++k) {
      if (!keep[k]) continue;
      const int64_t t = task_of_label[static_cast<size_t>(label_map_[static_cast<size_t>(candidate_labels[k])])];
      (tasks_[static_cast<size_t>(t)].*member).push_back(candidates[k]);
      chosen[static_cast<size_t>(candidates[k])] = true;
    }
    return chosen;
  };
  const std::vector<int64_t> train_labels = checked_labels(*train_, classes);
  if (options_.validation_per_class > 0) {
    // Model selection without the test split: validation images are carved out of the training
    // set first and evaluated in place of the test set; training draws from the rest.
    std::vector<int64_t> per_class_count(static_cast<size_t>(classes), 0);
    for (int64_t l : train_labels) ++per_class_count[static_cast<size_t>(l)];
    for (int64_t c = 0; c < classes; ++c)
      if (per_class_count[static_cast<size_t>(c)] <= options_.validation_per_class)
        throw ConfigError(field("validation_per_class"),
                          fmt::format("class {} has {} training images; holding out {} leaves none to train on", c,
                                      per_class_count[static_cast<size_t>(c)], options_.validation_per_class));
    auto held = assign(train_labels, nullptr, options_.validation_per_class, validation_subsample_stream,
                       &Task::test_indices);
    held.flip();
    assign(train_labels, &held, options_.train_per_class, train_subsample_stream, &Task::train_indices);
    test_ = train_;
    return;
  }
  assign(train_labels, nullptr, options_.train_per_class, train_subsample_stream, &Task::train_indices);
  assign(checked_labels(*test_, classes), nullptr, options_.test_per_class, test_subsample_stream,
         &Task::test_indices);
}

const Task& Scenario::task(int64_t t) const {
  if (t < 0 || t >= num_tasks())
    throw Error(fmt::format("Scenario::task: task {} is outside [0, {})", t, num_tasks()));
  return tasks_[static_cast<size_t>(t)];
}

std::vector<std::string> Scenario::class_names() const {
  const std::vector<std::string> original = train_->class_names();
  std::vector<std::string> names;
  names.reserve(class_order_.size());
  for (int64_t c : class_order_)
    names.push_back(c < static_cast<int64_t>(original.size()) ? original[static_cast<size_t>(c)] : std::to_string(c));
  return names;
}

std::vector<int64_t> Scenario::seen_test_indices(int64_t t) const {
  (void)task(t);
  std::vector<int64_t> out;
  for (int64_t k = 0; k <= t; ++k) {
    const auto& ind = tasks_[static_cast<size_t>(k)].test_indices;
    out.insert(out.end(), ind.begin(), ind.end());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ---- loader ---------------------------------------------------------------------------------

namespace {

// Augmentation streams are derived from the epoch's shuffle seed so they never coincide with
// another epoch's shuffle stream.
constexpr uint64_t kAugmentSalt = 0xA0761D6478BD642FULL;

}  // namespace

Loader::Loader(const Dataset& dataset, std::vector<int64_t> indices, const std::vector<int64_t>& label_map,
               const Transform& transform, int64_t batch_size, bool train, uint64_t shuffle_seed)
    : dataset_(&dataset),
      indices_(std::move(indices)),
      transform_(transform),
      batch_size_(batch_size),
      train_(train),
      shuffle_seed_(shuffle_seed) {
  if (batch_size_ < 1) throw ConfigError("batch_size", fmt::format("expected >= 1, got {}", batch_size_));
  detail::check_indices(indices_, dataset.size(), fmt::format("Loader over {}", dataset.description()));
  labels_.reserve(indices_.size());
  for (int64_t i : indices_) {
    const int64_t original = dataset.label(i);
    if (original < 0 || original >= static_cast<int64_t>(label_map.size()) ||
        label_map[static_cast<size_t>(original)] < 0)
      throw ShapeError(fmt::format("Loader: label_map ({} entries) has no incremental label for class {} of {}",
                                   label_map.size(), original, dataset.description()));
    labels_.push_back(label_map[static_cast<size_t>(original)]);
  }
}

std::vector<int64_t> Loader::positions(int64_t epoch) const {
  std::vector<int64_t> positions(indices_.size());
  if (train_ && !positions.empty()) {
    const at::Tensor perm = at::randperm(size(), make_generator(shuffle_seed_, static_cast<uint64_t>(epoch)));
    std::memcpy(positions.data(), perm.data_ptr<int64_t>(), sizeof(int64_t) * positions.size());
  } else {
    std::iota(positions.begin(), positions.end(), int64_t{0});
  }
  return positions;
}

std::vector<int64_t> Loader::order(int64_t epoch) const {
  std::vector<int64_t> out = positions(epoch);
  for (auto& p : out) p = indices_[static_cast<size_t>(p)];
  return out;
}

Batch Loader::batch(int64_t epoch, int64_t b) const {
  if (b < 0 || b >= num_batches())
    throw Error(fmt::format("Loader::batch: batch {} is outside [0, {})", b, num_batches()));
  return make_batch(epoch, positions(epoch), b);
}

Batch Loader::make_batch(int64_t epoch, const std::vector<int64_t>& positions, int64_t b) const {
  const int64_t begin = b * batch_size_;
  const int64_t end = std::min(size(), begin + batch_size_);
  Batch batch;
  batch.indices.reserve(static_cast<size_t>(end - begin));
  batch.labels = at::empty({end - begin}, at::kLong);
  int64_t* labels = batch.labels.data_ptr<int64_t>();
  for (int64_t k = begin; k < end; ++k) {
    const auto p = static_cast<size_t>(positions[static_cast<size_t>(k)]);
    batch.indices.push_back(indices_[p]);
    labels[k - begin] = labels_[p];
  }
  const at::Tensor raw = dataset_->images(batch.indices);
  at::Generator generator = make_generator(
      make_generator(shuffle_seed_, static_cast<uint64_t>(epoch)).current_seed() ^ kAugmentSalt,
      static_cast<uint64_t>(b));
  batch.images = transform_(raw, train_, generator);
  return batch;
}

Loader::Epoch Loader::epoch(int64_t epoch) const { return Epoch(*this, epoch); }

Loader::Epoch::Epoch(const Loader& loader, int64_t epoch)
    : loader_(&loader),
      epoch_(epoch),
      num_batches_(loader.num_batches()),
      order_(std::make_shared<const std::vector<int64_t>>(loader.positions(epoch))) {}

void Loader::Epoch::start(int64_t b) {
  next_ = std::async(std::launch::async,
                     [loader = loader_, epoch = epoch_, order = order_, b] { return loader->make_batch(epoch, *order, b); });
}

Loader::Epoch::iterator Loader::Epoch::begin() {
  if (started_) throw Error("Loader::Epoch: an epoch is an input range and can be iterated only once");
  started_ = true;
  position_ = -1;
  if (num_batches_ > 0) start(0);
  advance();
  return iterator(this);
}

void Loader::Epoch::advance() {
  ++position_;
  if (position_ >= num_batches_) return;
  try {
    current_ = next_.get();
  } catch (...) {
    position_ = num_batches_;  // the pass ends here
    throw;
  }
  if (position_ + 1 < num_batches_) start(position_ + 1);
}

}  // namespace clprompt
