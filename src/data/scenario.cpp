// Compiled part of include/clprompt/data/scenario.hpp: the class-incremental split.
#include <algorithm>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <ATen/CPUGeneratorImpl.h>

#include "clprompt/core/seed.hpp"
#include "clprompt/data/class_order.hpp"
#include "clprompt/data/python_random.hpp"
#include "clprompt/data/scenario.hpp"

namespace clprompt {

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
  require_option(classes_per_task >= 0, path, "classes_per_task",
                 fmt::format("expected 0 (equal tasks) or a positive count, got {}", classes_per_task));
  require_option(order_seed >= -1, path, "order_seed", fmt::format("expected -1 (the run's seed) or >= 0, got {}", order_seed));
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
  } else {
    const uint64_t order_seed = options_.order_seed >= 0 ? static_cast<uint64_t>(options_.order_seed) : seed;
    const bool numpy = options_.order == ClassOrderRule::numpy || options_.order == ClassOrderRule::numpy_inverse;
    if (numpy && order_seed > std::numeric_limits<uint32_t>::max())
      throw ConfigError(options_.order_seed >= 0 ? field("order_seed") : std::string("seed"),
                        fmt::format("the numpy class order uses numpy's seeding, which needs a seed below 2^32; got {}",
                                    order_seed));
    switch (options_.order) {
      case ClassOrderRule::natural:
        class_order_.resize(static_cast<size_t>(classes));
        std::iota(class_order_.begin(), class_order_.end(), int64_t{0});
        break;
      case ClassOrderRule::numpy:
        class_order_ = numpy_permutation(classes, static_cast<uint32_t>(order_seed));
        break;
      case ClassOrderRule::numpy_inverse: {
        const auto permutation = numpy_permutation(classes, static_cast<uint32_t>(order_seed));
        class_order_.assign(static_cast<size_t>(classes), 0);
        for (int64_t c = 0; c < classes; ++c) class_order_[static_cast<size_t>(permutation[static_cast<size_t>(c)])] = c;
        break;
      }
      case ClassOrderRule::python_shuffle:
        class_order_ = python_shuffled_range(classes, order_seed);
        break;
    }
  }
  label_map_.assign(static_cast<size_t>(classes), -1);
  for (int64_t i = 0; i < classes; ++i) label_map_[static_cast<size_t>(class_order_[static_cast<size_t>(i)])] = i;

  // Task boundaries.
  const int64_t tasks = options_.num_tasks;
  int64_t first = 0, rest = 0, last = -1;  // last: the final task's size when it takes the remainder
  if (options_.classes_per_task > 0) {
    // SLCA's rule (utils/data_manager.py:15-20): tasks of classes_per_task, the remainder in the last.
    first = options_.initial_classes > 0 ? options_.initial_classes : options_.classes_per_task;
    rest = options_.classes_per_task;
    last = classes - first - rest * (tasks - 2);
    if (tasks == 1) last = classes;
    if (last <= 0 || last > rest || (tasks == 1 && first != classes && options_.initial_classes > 0))
      throw ConfigError(field("classes_per_task"),
                        fmt::format("{} tasks of {} classes{} do not cover the {} classes with a last task of 1 to {} "
                                    "classes",
                                    tasks, rest, options_.initial_classes > 0 ? " after the initial ones" : "", classes,
                                    rest));
  } else if (options_.initial_classes == 0) {
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
    task.class_end = begin + (t == tasks - 1 && last >= 0 ? last : t == 0 ? first : rest);
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
  // Every class must be in every split: a class without training images is never learnt and one
  // without test images leaves its task's accuracy undefined, both silently. Named here.
  const auto require_every_class = [&](const std::vector<int64_t>& labels, const std::vector<bool>& chosen,
                                       const Dataset& dataset, const char* split) {
    std::vector<int64_t> count(static_cast<size_t>(classes), 0);
    for (size_t i = 0; i < labels.size(); ++i)
      if (chosen[i]) ++count[static_cast<size_t>(labels[i])];
    const auto names = dataset.class_names();
    for (int64_t c = 0; c < classes; ++c) {
      if (count[static_cast<size_t>(c)] > 0) continue;
      const int64_t t = task_of_label[static_cast<size_t>(label_map_[static_cast<size_t>(c)])];
      throw ShapeError(fmt::format("{}: class {}{} (task {}) has no {} images, so task {} cannot be {}", dataset.description(),
                                   c, static_cast<size_t>(c) < names.size() ? fmt::format(" ('{}')", names[static_cast<size_t>(c)]) : "",
                                   t + 1, split, t + 1, std::string_view(split) == "training" ? "trained" : "evaluated"));
    }
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
    require_every_class(train_labels, assign(train_labels, &held, options_.train_per_class, train_subsample_stream,
                                             &Task::train_indices),
                        *train_, "training");
    test_ = train_;
    return;
  }
  require_every_class(train_labels,
                      assign(train_labels, nullptr, options_.train_per_class, train_subsample_stream, &Task::train_indices),
                      *train_, "training");
  const std::vector<int64_t> test_labels = checked_labels(*test_, classes);
  require_every_class(test_labels,
                      assign(test_labels, nullptr, options_.test_per_class, test_subsample_stream, &Task::test_indices),
                      *test_, "test");
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


}  // namespace clprompt
