#pragma once
// Helpers shared by the tests.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/core/error.hpp"
#include "clprompt/core/seed.hpp"
#include "clprompt/data/dataset.hpp"
#include "clprompt/io/file_bytes.hpp"
#include "clprompt/data/idx.hpp"
#include "clprompt/core/task_context.hpp"

namespace clprompt::test {

using Bytes = std::vector<uint8_t>;

/// Writes `bytes` to `path`, creating its directory; throws when it cannot.
inline void write_file(const std::string& path, const Bytes& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("test: cannot write " + path);
}

/// Writes the bytes of `bytes` to `path`, replacing it.
inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// Appends v big-endian (IDX headers, PNG chunks).
inline void put_be32(Bytes& b, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<uint8_t>(v >> shift));
}

/// A fresh directory under the system temp dir, removed with its contents at scope exit.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("clprompt-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string operator/(const std::string& name) const { return file(name); }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

/// The device of the device-aware tests ([device]): $CLPROMPT_TEST_DEVICE (cpu, cuda, cuda:N),
/// cpu by default. tests/main.cpp refuses a CUDA device this LibTorch does not see.
inline c10::Device device() {
  const char* name = std::getenv("CLPROMPT_TEST_DEVICE");
  return c10::Device(name != nullptr && *name != '\0' ? name : "cpu");
}

/// A ViT small enough for unit tests: 8x8 images, patch 4 (4 patches), D 16, 2 heads.
inline ViTOptions tiny_vit(int64_t depth = 2) {
  ViTOptions o;
  o.image_size = 8;
  o.patch_size = 4;
  o.embed_dim = 16;
  o.depth = depth;
  o.num_heads = 2;
  return o;
}

/// The context of task t in a sequence of `num_tasks` tasks of 2 classes each.
inline TaskContext task_ctx(int64_t t, bool training = true, int64_t num_tasks = 3) {
  return TaskContext::for_task(t, num_tasks, std::vector<int64_t>(static_cast<std::size_t>(num_tasks), 2), training);
}

/// The message of the `E` that `f` throws, or "no error".
template <class E, class F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "no error";
}

/// The message of the FileError f throws ("" when none).
inline std::string file_error(const std::function<void()>& f) { return error_message<FileError>(f); }

/// 8x8 grey images whose class is visible in every patch: class c is its own random texture
/// plus noise. (Neither position nor brightness alone would do: a randomly initialised ViT's
/// [CLS] averages over positions, and its final LayerNorm removes a global scale.)
inline std::shared_ptr<TensorDataset> texture_classes(int64_t classes, int64_t per_class, uint64_t seed) {
  auto textures = at::randint(0, 200, {classes, 1, 8, 8}, make_generator(99, 0), at::TensorOptions().dtype(at::kLong));
  auto noise = at::randint(0, 40, {classes * per_class, 1, 8, 8}, make_generator(seed, 0),
                           at::TensorOptions().dtype(at::kLong));
  auto labels = at::arange(classes, at::kLong).repeat_interleave(per_class);
  auto images = (textures.index_select(0, labels) + noise).to(at::kByte);
  return std::make_shared<TensorDataset>(images, labels);
}

/// Writes `d` as <directory>/<stem>-images-idx3-ubyte.gz and -labels-idx1-ubyte.gz, the
/// Fashion-MNIST file layout (stem "train" or "t10k").
inline void write_idx_files(const std::string& directory, const std::string& stem, const TensorDataset& d) {
  const auto images = d.all_images().squeeze(1).contiguous();
  const int64_t n = images.size(0);
  std::vector<uint8_t> img{0, 0, 8, 3}, lab{0, 0, 8, 1};
  auto be32 = [](std::vector<uint8_t>& v, uint32_t x) {
    for (int s = 24; s >= 0; s -= 8) v.push_back(static_cast<uint8_t>(x >> s));
  };
  be32(img, static_cast<uint32_t>(n));
  be32(img, static_cast<uint32_t>(images.size(1)));
  be32(img, static_cast<uint32_t>(images.size(2)));
  be32(lab, static_cast<uint32_t>(n));
  img.insert(img.end(), images.data_ptr<uint8_t>(), images.data_ptr<uint8_t>() + images.numel());
  const auto labels = d.all_labels().to(at::kByte).contiguous();
  lab.insert(lab.end(), labels.data_ptr<uint8_t>(), labels.data_ptr<uint8_t>() + labels.numel());
  for (auto& [suffix, bytes] : {std::pair{"images-idx3-ubyte.gz", img}, std::pair{"labels-idx1-ubyte.gz", lab}}) {
    auto gz = clprompt::detail::gzip_compress(bytes);
    std::ofstream((std::filesystem::path(directory) / (stem + "-" + suffix)).string(), std::ios::binary)
        .write(reinterpret_cast<const char*>(gz.data()), static_cast<std::streamsize>(gz.size()));
  }
}

}  // namespace clprompt::test
