#pragma once
// Helpers shared by the tests.
#include <atomic>
#include <filesystem>
#include <string>

#include <unistd.h>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/model/task_context.hpp"

namespace clprompt::test {

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

}  // namespace clprompt::test
