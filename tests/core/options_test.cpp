#include "clprompt/core/device.hpp"
#include "clprompt/core/options.hpp"
#include "clprompt/core/threads.hpp"

// Last: glog (pulled in by ATen) defines its own CHECK, which Catch's must override.
#include <catch2/catch.hpp>

namespace {

enum class Mode { fast, exact };
constexpr auto enum_names(Mode) {
  return std::array{std::pair{Mode::fast, "fast"}, std::pair{Mode::exact, "exact"}};
}

struct Inner {
  double lr = 0.1;
  static constexpr auto fields() { return std::tuple{clprompt::field("lr", &Inner::lr)}; }
  void validate(const std::string& path) const {
    clprompt::require_option(lr > 0, path, "lr", "must be positive");
  }
};

struct Outer {
  int64_t depth = 2;
  bool flag = false;
  std::string name = "x";
  std::vector<int64_t> layers{0, 1};
  Mode mode = Mode::fast;
  Inner inner;
  static constexpr auto fields() {
    return std::tuple{clprompt::field("depth", &Outer::depth), clprompt::field("flag", &Outer::flag),
                      clprompt::field("name", &Outer::name), clprompt::field("layers", &Outer::layers),
                      clprompt::field("mode", &Outer::mode), clprompt::field("inner", &Outer::inner)};
  }
};

}  // namespace

TEST_CASE("options read JSON over defaults and write it back", "[core][options]") {
  auto o = clprompt::options_from_json<Outer>(
      clprompt::Json::parse(R"({"depth": 4, "mode": "exact", "inner": {"lr": 0.5}})"));
  CHECK(o.depth == 4);
  CHECK(o.mode == Mode::exact);
  CHECK(o.inner.lr == 0.5);
  CHECK(o.name == "x");
  const auto j = clprompt::write_options(o);
  CHECK(j.at("mode") == "exact");
  CHECK(j.at("layers") == clprompt::Json::array({0, 1}));
  CHECK(clprompt::write_options(clprompt::options_from_json<Outer>(j)) == j);
}

TEST_CASE("invalid options name the field", "[core][options]") {
  using clprompt::Json;
  auto message = [](const char* text) {
    try {
      (void)clprompt::options_from_json<Outer>(Json::parse(text));
    } catch (const clprompt::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(message(R"({"depht": 4})"), Catch::Contains("'depht'") && Catch::Contains("depth"));
  CHECK_THAT(message(R"({"depth": "4"})"), Catch::Contains("'depth'") && Catch::Contains("integer"));
  CHECK_THAT(message(R"({"mode": "slow"})"), Catch::Contains("'mode'") && Catch::Contains("fast, exact"));
  CHECK_THAT(message(R"({"inner": {"lr": -1}})"), Catch::Contains("'inner.lr'") && Catch::Contains("positive"));
  CHECK_THAT(message(R"({"layers": [0, "a"]})"), Catch::Contains("'layers[1]'"));
}

TEST_CASE("thread count honours the request, then OMP_NUM_THREADS", "[core][threads]") {
  CHECK(clprompt::resolve_thread_count(3) == 3);
  ::setenv("OMP_NUM_THREADS", "5", 1);
  CHECK(clprompt::resolve_thread_count() == 5);
  ::setenv("OMP_NUM_THREADS", "zero", 1);
  CHECK_THROWS_AS(clprompt::resolve_thread_count(), clprompt::ConfigError);
  ::setenv("OMP_NUM_THREADS", "2", 1);
  CHECK(clprompt::configure_threads() == 2);
  CHECK(at::get_num_threads() == 2);
}

TEST_CASE("devices resolve by name and unknown or unavailable ones name the field", "[core][device]") {
  CHECK(clprompt::resolve_device("cpu").is_cpu());
  CHECK((clprompt::resolve_device("auto").is_cpu() || at::hasCUDA()));
  CHECK_THROWS_WITH(clprompt::resolve_device("tpu", "run.device"), Catch::Contains("'run.device'") && Catch::Contains("tpu"));
  if (!at::hasCUDA()) CHECK_THROWS_WITH(clprompt::resolve_device("cuda:0"), Catch::Contains("without CUDA"));
}

namespace {
struct Shared {
  double lr = 0.1;
  int64_t steps = 3;
  static constexpr auto fields() {
    return std::tuple{clprompt::field("lr", &Shared::lr), clprompt::field("steps", &Shared::steps)};
  }
  void validate(const std::string& path) const { clprompt::require_option(lr > 0, path, "lr", "must be positive"); }
};
struct WithInline {
  int64_t epochs = 1;
  Shared shared;
  static constexpr auto fields() {
    return std::tuple{clprompt::field("epochs", &WithInline::epochs), clprompt::inline_fields(&WithInline::shared)};
  }
};
struct Sized {
  int64_t layer = 0;
  static constexpr auto fields() { return std::tuple{clprompt::field("layer", &Sized::layer)}; }
  void validate(const std::string& path, int64_t depth) const {
    clprompt::require_option(layer < depth, path, "layer", "outside the model");
  }
};
struct HoldsSized {
  Sized inner;
  std::vector<Sized> list{Sized{}, Sized{}};
  static constexpr auto fields() {
    return std::tuple{clprompt::field("inner", &HoldsSized::inner), clprompt::field("list", &HoldsSized::list)};
  }
};
}  // namespace

TEST_CASE("inline field groups read and write flat and validate under the owner's path", "[core][options]") {
  using clprompt::Json;
  const auto o = clprompt::options_from_json<WithInline>(Json::parse(R"({"epochs": 2, "lr": 0.5})"), "train");
  CHECK(o.epochs == 2);
  CHECK(o.shared.lr == 0.5);
  CHECK(o.shared.steps == 3);
  CHECK(clprompt::write_options(o) == Json::parse(R"({"epochs": 2, "lr": 0.5, "steps": 3})"));
  CHECK_THROWS_WITH(clprompt::options_from_json<WithInline>(Json::parse(R"({"lr": -1})"), "train"),
                    Catch::Contains("'train.lr'") && Catch::Contains("positive"));
  CHECK_THROWS_WITH(clprompt::options_from_json<WithInline>(Json::parse(R"({"shared": {}})"), "train"),
                    Catch::Contains("'train.shared'") && Catch::Contains("epochs, lr, steps"));
}

TEST_CASE("validate_in_context reaches every nested struct with its path", "[core][options]") {
  HoldsSized h;
  CHECK_NOTHROW(clprompt::validate_in_context(h, "m", int64_t{2}));
  h.list[1].layer = 5;
  CHECK_THROWS_WITH(clprompt::validate_in_context(h, "m", int64_t{2}), Catch::Contains("'m.list[1].layer'"));
  h.list[1].layer = 0;
  h.inner.layer = 2;
  CHECK_THROWS_WITH(clprompt::validate_in_context(h, "m", int64_t{2}), Catch::Contains("'m.inner.layer'"));
}
