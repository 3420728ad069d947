#pragma once
// The class-incremental split: classes are put in one order (the rule of a reference
// implementation, or an explicit order), cut into tasks, and relabelled so that class i of the
// order gets incremental label i; task t owns labels [class_begin, class_end). One seed fixes the
// order and the per-class subsamples.
//
// Class-order rules (ClassOrderRule), as the references order classes:
//   natural            0, 1, ..., n-1 (l2p-pytorch and dualprompt-pytorch: --shuffle False;
//                      CODA-Prompt's trial 0)
//   numpy              order = numpy.random.RandomState(s).permutation(n): label i is class
//                      order[i] (SLCA utils/data_manager.py:122-129, seeds 1993, 1996, 1997)
//   numpy_inverse      the same permutation read the other way: class c gets label order[c]
//                      (mammoth datasets/utils/continual_dataset.py:229-232)
//   python_shuffle     random.seed(s); order = list(range(n)); random.shuffle(order): label i is
//                      class order[i] (CODA-Prompt trainer.py:59-68 for trials s > 0)
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "clprompt/core/options.hpp"
#include "clprompt/data/dataset.hpp"

namespace clprompt {

enum class ClassOrderRule { natural, numpy, numpy_inverse, python_shuffle };
constexpr auto enum_names(ClassOrderRule) {
  return std::array{std::pair{ClassOrderRule::natural, "natural"}, std::pair{ClassOrderRule::numpy, "numpy"},
                    std::pair{ClassOrderRule::numpy_inverse, "numpy_inverse"},
                    std::pair{ClassOrderRule::python_shuffle, "python_shuffle"}};
}

struct ScenarioOptions {
  int64_t num_tasks = 5;
  int64_t initial_classes = 0;        ///< classes of the first task; 0 = all tasks equal
  /// > 0: tasks of this many classes and the remainder in the last task (SLCA's rule: Cars-196
  /// is 9 x 20 + 16); 0: num_tasks equal tasks.
  int64_t classes_per_task = 0;
  ClassOrderRule order = ClassOrderRule::numpy;  ///< see the file comment
  int64_t order_seed = -1;            ///< the seed of the order rule; -1: the run's seed
  std::vector<int64_t> class_order{};  ///< an explicit order (original class ids) overrides
  int64_t train_per_class = 0;        ///< 0 = all; else a seeded subsample per class
  int64_t test_per_class = 0;
  /// > 0: hold out this many training images per class as a validation split and evaluate on it
  /// instead of the test split (for tuning); training then draws from the remaining images.
  int64_t validation_per_class = 0;

  static constexpr auto fields() {
    return std::tuple{field("num_tasks", &ScenarioOptions::num_tasks),
                      field("initial_classes", &ScenarioOptions::initial_classes),
                      field("classes_per_task", &ScenarioOptions::classes_per_task),
                      field("order", &ScenarioOptions::order), field("order_seed", &ScenarioOptions::order_seed),
                      field("class_order", &ScenarioOptions::class_order),
                      field("train_per_class", &ScenarioOptions::train_per_class),
                      field("test_per_class", &ScenarioOptions::test_per_class),
                      field("validation_per_class", &ScenarioOptions::validation_per_class)};
  }
  /// Checks what can be checked without the dataset; Scenario checks the rest.
  void validate(const std::string& path) const;
};

struct Task {
  int64_t index = 0;
  int64_t class_begin = 0;  ///< first incremental label of the task
  int64_t class_end = 0;    ///< one past the last
  std::vector<int64_t> train_indices;  ///< into the train set, ascending
  std::vector<int64_t> test_indices;   ///< into the test set, ascending
  int64_t num_classes() const { return class_end - class_begin; }
};

class Scenario {
 public:
  /// Streams of make_generator(seed, stream) used for the per-class subsamples.
  static constexpr uint64_t train_subsample_stream = 0x5C0001;
  static constexpr uint64_t test_subsample_stream = 0x5C0002;
  static constexpr uint64_t validation_subsample_stream = 0x5C0003;

  /// Throws ConfigError (fields named under `options_path`) when the options do not fit the
  /// datasets, e.g. classes that do not split into equal tasks or a class_order that is not a
  /// permutation; ShapeError when train and test disagree on the number of classes.
  /// With the numpy rules the order seed must be below 2^32, as numpy requires.
  Scenario(std::shared_ptr<const Dataset> train, std::shared_ptr<const Dataset> test,
           const ScenarioOptions& options, uint64_t seed, const std::string& options_path = "");

  int64_t num_tasks() const { return static_cast<int64_t>(tasks_.size()); }
  int64_t num_classes() const { return static_cast<int64_t>(class_order_.size()); }
  /// Throws Error when t is outside [0, num_tasks()).
  const Task& task(int64_t t) const;
  const std::vector<Task>& tasks() const { return tasks_; }
  /// Incremental label -> original class id.
  const std::vector<int64_t>& class_order() const { return class_order_; }
  /// Original class id -> incremental label.
  const std::vector<int64_t>& label_map() const { return label_map_; }
  /// Class names in incremental-label order.
  std::vector<std::string> class_names() const;
  /// Test indices of tasks 0..t (what is evaluated after learning task t), ascending. With
  /// validation_per_class they index the validation images in the train set (= test_set()).
  std::vector<int64_t> seen_test_indices(int64_t t) const;

  const Dataset& train_set() const { return *train_; }
  const Dataset& test_set() const { return *test_; }
  std::shared_ptr<const Dataset> train_ptr() const { return train_; }
  std::shared_ptr<const Dataset> test_ptr() const { return test_; }
  const ScenarioOptions& options() const { return options_; }
  uint64_t seed() const { return seed_; }

 private:
  std::shared_ptr<const Dataset> train_, test_;
  ScenarioOptions options_;
  uint64_t seed_;
  std::vector<int64_t> class_order_, label_map_;
  std::vector<Task> tasks_;
};

}  // namespace clprompt
