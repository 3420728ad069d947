#pragma once
// Learner: runs a class-incremental scenario on a ContinualModel, task by task:
//   begin_task -> epochs of training (task identity known) -> end_task ->
//   evaluation on every seen task's test set without task identity.
//
//   clprompt::Learner learner(model, scenario, train_options, transform_options, seed);
//   clprompt::Results results = learner.run();
#include <chrono>
#include <cmath>
#include <functional>
#include <string>

#include <fmt/format.h>

#include "clprompt/core/error.hpp"
#include "clprompt/core/nvtx.hpp"
#include "clprompt/data/loader.hpp"
#include "clprompt/data/scenario.hpp"
#include "clprompt/data/transforms.hpp"
#include "clprompt/head/concepts.hpp"
#include "clprompt/optim/parameter_groups.hpp"
#include "clprompt/optim/precision.hpp"
#include "clprompt/optim/trainer.hpp"
#include "clprompt/core/progress.hpp"
#include "clprompt/learn/results.hpp"
#include "clprompt/optim/train_options.hpp"
#include "clprompt/core/task_context.hpp"

namespace clprompt {

struct LearnerHooks {
  std::function<void(const Results&)> on_task_end;  ///< e.g. write partial results after each task
  std::function<void(const std::string&)> log = [](const std::string& line) {
    fmt::print("{}\n", line);
    std::fflush(stdout);  // line by line also when piped (CI logs, tee)
  };
  bool progress_bar = true;  ///< drawn only when stderr is a terminal
};

template <class Model>
class Learner {
 public:
  Learner(Model& model, const Scenario& scenario, TrainOptions train, TransformOptions transform, uint64_t seed)
      : model_(model), scenario_(scenario), train_(std::move(train)), transform_(std::move(transform)), seed_(seed) {
    train_.validate("train");
    // Batches go where the model is (model.to(device) before constructing the learner).
    for (const auto& p : model_.parameters()) {
      device_ = p.device();
      break;
    }
    for (int64_t t = 0; t < scenario_.num_tasks(); ++t) classes_per_task_.push_back(scenario_.task(t).num_classes());
  }

  Results run(const LearnerHooks& hooks = {}) {
    const auto start = Clock::now();
    Results results;
    results.seed = seed_;
    results.num_tasks = scenario_.num_tasks();
    results.class_order = scenario_.class_order();
    std::unique_ptr<Trainer> trainer;
    const auto names = scenario_.class_names();
    for (int64_t t = 0; t < scenario_.num_tasks(); ++t) {
      const auto& task = scenario_.task(t);
      TaskRecord record;
      record.task = t;
      for (int64_t c = task.class_begin; c < task.class_end; ++c) record.classes.push_back(names.at(static_cast<std::size_t>(c)));

      const auto ctx = TaskContext::for_task(t, scenario_.num_tasks(), classes_per_task_, /*training=*/true);
      model_.begin_task(ctx);
      if constexpr (Model::selector_prepares) prepare_selector(ctx, task, hooks);
      if (!trainer || train_.reset_optimizer_each_task)
        trainer = std::make_unique<Trainer>("training", model_.parameter_groups().trainer_groups(train_.slow_lr_scale),
                                            train_.optim, train_.schedule,
                                            "lower train.lr or check the input normalisation");
      train_task(ctx, task, *trainer, record, hooks);
      if constexpr (Model::head_consolidates) model_.consolidate(task_features(task));
      model_.end_task();

      evaluate_seen(t, results, record, hooks);
      results.tasks.push_back(record);
      results.total_seconds = seconds_since(start);
      if (hooks.log) {
        const auto& row = results.accuracy.back();
        std::string cells;
        for (double a : row) cells += fmt::format(" {:5.1f}", a);
        hooks.log(fmt::format("task {}/{}: accuracy per seen task [{} ] average {:.2f}% | train {:.0f} img/s, eval {:.0f} img/s",
                              t + 1, scenario_.num_tasks(), cells, average_accuracy_per_task(results.accuracy).back(),
                              record.train_images_per_second(), record.eval_images_per_second()));
      }
      if (hooks.on_task_end) hooks.on_task_end(results);
    }
    return results;
  }

  /// Accuracy (%) on test indices of the scenario, without task identity; adds the counts.
  double evaluate(const std::vector<int64_t>& indices, int64_t& correct_out, int64_t& total_out) {
    NvtxRange range("evaluation");
    model_.eval();
    Transform transform(transform_);
    Loader loader(scenario_.test_set(), indices, scenario_.label_map(), transform,
                  {.batch_size = train_.eval_batch_size, .training = false, .seed = seed_, .pin_memory = device_.is_cuda()});
    // Counted on the device; one synchronisation per evaluated task, not per batch.
    auto correct_on_device = at::zeros({}, at::TensorOptions(at::kLong).device(device_));
    int64_t total = 0;
    for (const Batch& batch : loader.epoch(0)) {
      at::Tensor predicted;
      {
        AutocastScope autocast(train_.precision, device_);
        predicted = model_.predict(to_device(batch.images));
      }
      correct_on_device += predicted.eq(to_device(batch.labels)).sum();
      total += batch.labels.size(0);
    }
    const int64_t correct = correct_on_device.template item<int64_t>();
    correct_out += correct;
    total_out += total;
    return total > 0 ? 100.0 * static_cast<double>(correct) / static_cast<double>(total) : 0.0;
  }

 private:
  using Clock = std::chrono::steady_clock;
  static double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

  void train_task(const TaskContext& ctx, const Task& task, Trainer& trainer, TaskRecord& record,
                  const LearnerHooks& hooks) {
    Transform transform(transform_);
    // A stream per task keeps each task's data order independent of the others.
    Loader loader(scenario_.train_set(), task.train_indices, scenario_.label_map(), transform,
                  {.batch_size = train_.batch_size,
                   .training = true,
                   .seed = seed_ * 1000003ULL + static_cast<uint64_t>(ctx.task) + 1,
                   .drop_last = train_.drop_last,
                   .pin_memory = device_.is_cuda()});
    trainer.set_precision(train_.precision);
    const auto start = Clock::now();
    for (int64_t epoch = 0; epoch < train_.epochs; ++epoch) {
      trainer.begin_epoch(epoch, train_.epochs, fmt::format("task {}, epoch {}", ctx.task, epoch));
      model_.train();
      ProgressBar bar(fmt::format("task {}/{} epoch {}/{}", ctx.task + 1, ctx.num_tasks, epoch + 1, train_.epochs),
                      loader.size(), hooks.progress_bar && ::isatty(::fileno(stderr)) == 1);
      for (const Batch& batch : loader.epoch(epoch)) {
        at::Tensor loss;
        {
          AutocastScope autocast(train_.precision, device_);
          auto output = model_.forward(to_device(batch.images), ctx);
          loss = model_.loss(output, to_device(batch.labels), ctx);
        }
        trainer.step(loss);
        record.train_images += batch.labels.size(0);
        // The running loss only when it is drawn: reading it waits for the device.
        bar.advance(batch.labels.size(0), bar.enabled() ? fmt::format("loss {:.4f}", trainer.epoch_loss()) : "");
      }
      bar.finish();
      record.epoch_loss.push_back(trainer.epoch_loss());
    }
    record.train_seconds = seconds_since(start);
  }

  /// Hands the selector the queries of the task's training images (no augmentation), before
  /// training and before the optimiser is built (prototype keys: STAR-Prompt's first level).
  void prepare_selector(const TaskContext& ctx, const Task& task, const LearnerHooks& hooks) {
    const auto start = Clock::now();
    model_.prepare_task(task_stream(task, [this](const at::Tensor& images) { return model_.query(images); }));
    if (hooks.log)
      hooks.log(fmt::format("task {}/{}: selector prepared in {:.1f} s", ctx.task + 1, ctx.num_tasks, seconds_since(start)));
  }

  /// The task's training images without augmentation, through the trained model in eval mode.
  FeatureStream task_features(const Task& task) {
    return task_stream(task, [this](const at::Tensor& images) { return model_.extract_features(images); });
  }

  /// One pass over the task's training images without augmentation, the model in eval mode,
  /// handing encode(images) and the labels to the visitor.
  template <class Encode>
  FeatureStream task_stream(const Task& task, Encode encode) {
    return [this, &task, encode](const FeatureVisitor& visit) {
      model_.eval();
      Transform transform(transform_);
      Loader loader(scenario_.train_set(), task.train_indices, scenario_.label_map(), transform,
                    {.batch_size = train_.eval_batch_size, .training = false, .seed = seed_,
                     .pin_memory = device_.is_cuda()});
      for (const Batch& batch : loader.epoch(0)) {
        at::Tensor encoded;
        {
          AutocastScope autocast(train_.precision, device_);
          encoded = encode(to_device(batch.images));
        }
        visit(encoded, to_device(batch.labels));
      }
    };
  }

  void evaluate_seen(int64_t t, Results& results, TaskRecord& record, const LearnerHooks&) {
    const auto start = Clock::now();
    std::vector<double> row;
    int64_t correct = 0, total = 0;
    for (int64_t j = 0; j <= t; ++j) row.push_back(evaluate(scenario_.task(j).test_indices, correct, total));
    record.eval_seconds = seconds_since(start);
    record.eval_images = total;
    record.accuracy_seen_samples = total > 0 ? 100.0 * static_cast<double>(correct) / static_cast<double>(total) : 0.0;
    results.accuracy.push_back(std::move(row));
  }

  /// Host batches to the model's device, without waiting when they come from pinned memory.
  at::Tensor to_device(const at::Tensor& t) const { return t.to(device_, /*non_blocking=*/true); }

  Model& model_;
  const Scenario& scenario_;
  TrainOptions train_;
  TransformOptions transform_;
  uint64_t seed_;
  c10::Device device_{c10::kCPU};
  std::vector<int64_t> classes_per_task_;
};

}  // namespace clprompt
