#pragma once
// The benchmarks of the published protocols (`clprompt run --benchmark NAME --method M --data DIR
// --pretrained FILE`): the data set, its task split and the backbone geometry every published
// method uses on it (ViT-B/16 at 224). The method's preset (Method::preset, methods/*.hpp) adds
// the rest of its reference's recipe; `clprompt config --benchmark NAME --method M` prints it all.
#include <string>
#include <vector>

#include "clprompt/backbone/vit.hpp"
#include "clprompt/data/data_options.hpp"
#include "clprompt/data/scenario.hpp"

namespace clprompt {

struct Benchmark {
  std::string name;
  std::string description;
  DataOptions data;          ///< root empty: the user's --data
  ScenarioOptions scenario;  ///< tasks and split; the method's preset sets the class order
  ViTOptions backbone;       ///< the geometry the published runs use
};

/// Every benchmark, in the order `clprompt methods` lists them.
const std::vector<Benchmark>& benchmarks();

/// The benchmark named `name`; ConfigError(field) listing the names otherwise.
const Benchmark& find_benchmark(const std::string& name, const std::string& field = "benchmark");

}  // namespace clprompt
