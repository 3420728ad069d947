#pragma once
// Learner: runs a class-incremental scenario on a ContinualModel, task by task:
//   begin_task -> epochs of training (task identity known) -> end_task ->
//   evaluation on every seen task's test set without task identity.
//
//   clprompt::Learner learner(model, scenario, train_options, transform_options, seed);
//   clprompt::Results results = learner.run();
//
// With hooks.checkpoint.path set, the learner writes a resume checkpoint (learn/checkpoint.hpp)
// when a task's training starts, at every epoch end (and every checkpoint.every_steps steps),
// and when SIGINT/SIGTERM arrive under an InterruptHandler (then it throws Interrupted). A run
// stopped in any way continues bit-for-bit with resume() on a model constructed as the first was:
//
//   clprompt::Results results = learner.resume(clprompt::read_resume_checkpoint(path), hooks);
//
// Data parallel (distribute(), one Learner per process, each given the same scenario, seed and
// model): every rank builds each global batch and trains on its rows (core/collective.hpp
// row_shard), the gradients and losses are summed across the ranks before every step, and the
// passes without gradients are split by whole batches: evaluation counts are summed, and the
// encoded features of a feature pass (class statistics, prototypes) are gathered so that every
// rank's policies see the single-process stream, in its order. Only rank 0 writes checkpoints.
#include <chrono>
#include <cmath>
#include <functional>
#include <string>

#include <fmt/format.h>

#include "clprompt/core/collective.hpp"
#include "clprompt/core/error.hpp"
#include "clprompt/core/fault_injection.hpp"
#include "clprompt/core/interrupt.hpp"
#include "clprompt/core/nvtx.hpp"
#include "clprompt/data/loader.hpp"
#include "clprompt/data/scenario.hpp"
#include "clprompt/data/transforms.hpp"
#include "clprompt/head/concepts.hpp"
#include "clprompt/optim/parameter_groups.hpp"
#include "clprompt/optim/precision.hpp"
#include "clprompt/optim/trainer.hpp"
#include "clprompt/core/progress.hpp"
#include "clprompt/io/state_dict.hpp"
#include "clprompt/learn/checkpoint.hpp"
#include "clprompt/learn/results.hpp"
#include "clprompt/optim/train_options.hpp"
#include "clprompt/core/task_context.hpp"

namespace clprompt {

/// Resume checkpoints of a run (learn/checkpoint.hpp).
struct CheckpointSettings {
  std::string path;         ///< where the checkpoint is written ("" = none)
  int64_t every_steps = 0;  ///< also every N training steps of a task (0: at epoch ends only)
  Metadata metadata;        ///< stored with it, e.g. the resolved configuration
};

struct LearnerHooks {
  std::function<void(const Results&)> on_task_end;  ///< e.g. write partial results after each task
  std::function<void(const std::string&)> log = [](const std::string& line) {
    fmt::print("{}\n", line);
    std::fflush(stdout);  // line by line also when piped (CI logs, tee)
  };
  bool progress_bar = true;  ///< drawn only when stderr is a terminal
  CheckpointSettings checkpoint;
};

/// What makes a Learner one of the processes of a data-parallel run.
struct DataParallel {
  std::shared_ptr<Collective> collective;  ///< null: a single process
  /// After every training step, compare every rank's trainable parameters with rank 0's, bit for
  /// bit, and stop with an Error naming the rank and step when they differ (a test of the
  /// all-reduce; costs one broadcast of the trainable parameters per step).
  bool check_replicas = false;
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
    scenario_fingerprint_ = scenario_fingerprint(scenario_.class_order(), index_lists());
  }

  Results run(const LearnerHooks& hooks = {}) { return run_from(nullptr, hooks); }

  /// Makes this learner rank collective->rank() of a data-parallel run (see the file comment).
  void distribute(DataParallel data_parallel) {
    data_parallel_ = std::move(data_parallel);
    if (collective() != nullptr && train_.batch_size < collective()->world_size())
      throw ConfigError("train.batch_size", fmt::format("{} is smaller than the {} processes of the data-parallel run; "
                                                        "every process needs at least one sample per batch",
                                                        train_.batch_size, collective()->world_size()));
  }
  Collective* collective() const { return data_parallel_.collective.get(); }
  int rank() const { return collective() != nullptr ? collective()->rank() : 0; }
  int world_size() const { return collective() != nullptr ? collective()->world_size() : 1; }

  /// Continues the run that wrote `state`, to the same results as an uninterrupted run. The model
  /// must be constructed exactly as for run() (same type, options, seed and weights) and not have
  /// started a task; CheckpointError when the scenario or the code differ from the checkpoint's.
  Results resume(const ResumeState& state, const LearnerHooks& hooks = {}) { return run_from(&state, hooks); }

  /// Accuracy (%) on test indices of the scenario  /// Accuracy (%) on test indices of the scenario, without task identity; adds the counts.
  double evaluate(const std::vector<int64_t>& indices, int64_t& correct_out, int64_t& total_out) {
    NvtxRange range("evaluation");
    model_.eval();
    Transform transform(transform_);
    Loader loader(scenario_.test_set(), indices, scenario_.label_map(), transform,
                  {.batch_size = train_.eval_batch_size, .training = false, .seed = seed_, .pin_memory = device_.is_cuda(),
                   .shard_index = rank(), .shard_count = world_size()});
    // Counted on the device; one synchronisation per evaluated task, not per batch.
    auto correct_on_device = at::zeros({}, at::TensorOptions(at::kLong).device(device_));
    int64_t total = 0;
    for (const Batch& batch : loader.epoch(0)) {
      fault_point("evaluation-batch");
      throw_if_interrupted("evaluation");
      at::Tensor predicted;
      {
        AutocastScope autocast(train_.precision, device_);
        predicted = model_.predict(to_device(batch.images));
      }
      correct_on_device += predicted.eq(to_device(batch.labels)).sum();
      total += batch.labels.size(0);
    }
    int64_t correct = correct_on_device.template item<int64_t>();
    if (collective() != nullptr) {  // the ranks evaluated disjoint batches: sum the counts
      auto counts = at::tensor(std::vector<int64_t>{correct, total}, at::kLong);
      collective()->all_reduce_sum(counts);
      correct = counts[0].template item<int64_t>();
      total = counts[1].template item<int64_t>();
    }
    correct_out += correct;
    total_out += total;
    return total > 0 ? 100.0 * static_cast<double>(correct) / static_cast<double>(total) : 0.0;
  }

 private:
  using Clock = std::chrono::steady_clock;
  static double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

  Results run_from(const ResumeState* resume, const LearnerHooks& hooks) {
    const auto start = Clock::now();
    results_ = Results();
    results_.seed = seed_;
    results_.num_tasks = scenario_.num_tasks();
    results_.world_size = world_size();
    results_.class_order = scenario_.class_order();
    trainer_.reset();
    trainer_task_ = -1;
    double seconds_before = 0.0;
    RunPosition from;
    if (resume) {
      restore(*resume, hooks);
      seconds_before = resume->results.total_seconds;
      from = resume->position;
    }
    const auto names = scenario_.class_names();
    for (int64_t t = from.task; t < scenario_.num_tasks(); ++t) {
      const auto& task = scenario_.task(t);
      const auto ctx = context_for(t);
      const bool resumed = resume != nullptr && t == from.task;
      if (resumed) {
        record_ = resume->record;
      } else {
        record_ = TaskRecord();
        record_.task = t;
        for (int64_t c = task.class_begin; c < task.class_end; ++c) record_.classes.push_back(names.at(static_cast<std::size_t>(c)));
        model_.begin_task(ctx);
        if constexpr (Model::selector_prepares) prepare_selector(ctx, task, hooks);
        if (!trainer_ || train_.reset_optimizer_each_task) make_trainer(t);
        from = RunPosition{.task = t, .trainer_task = trainer_task_};
        save_checkpoint(from, hooks);  // the task's preparation is not repeated after a stop
      }
      train_task(ctx, task, from, hooks);
      if constexpr (Model::head_consolidates) model_.consolidate(task_features(task));
      model_.end_task();

      evaluate_seen(t, hooks);
      results_.tasks.push_back(record_);
      results_.total_seconds = seconds_before + seconds_since(start);
      if (hooks.log) {
        const auto& row = results_.accuracy.back();
        std::string cells;
        for (double a : row) cells += fmt::format(" {:5.1f}", a);
        const auto trained = record_.train_images > 0
                                 ? fmt::format("train {:.0f} img/s", record_.train_images_per_second())
                                 : std::string("not trained");
        hooks.log(fmt::format("task {}/{}: accuracy per seen task [{} ] average {:.2f}% | {}, eval {:.0f} img/s", t + 1,
                              scenario_.num_tasks(), cells, average_accuracy_per_task(results_.accuracy).back(), trained,
                              record_.eval_images_per_second()));
      }
      if (hooks.on_task_end) hooks.on_task_end(results_);
    }
    return results_;
  }

  TaskContext context_for(int64_t t) const {
    return TaskContext::for_task(t, scenario_.num_tasks(), classes_per_task_, /*training=*/true);
  }

  void make_trainer(int64_t t) {
    trainer_ = std::make_unique<Trainer>("training", model_.parameter_groups().trainer_groups(train_.slow_lr_scale),
                                         train_.optim, train_.schedule, "lower train.lr or check the input normalisation");
    trainer_->set_collective(collective());
    trainer_task_ = t;
  }

  /// Rebuilds the state of a stopped run: the task history replayed (the optimiser built where it
  /// was), then every tensor, the optimiser's state and the global generators loaded.
  void restore(const ResumeState& state, const LearnerHooks& hooks) {
    const auto& where = hooks.checkpoint.path.empty() ? std::string("resume checkpoint") : hooks.checkpoint.path;
    const auto& p = state.position;
    if (state.classes_per_task != classes_per_task_ ||
        state.scenario_fingerprint != scenario_fingerprint_)
      throw CheckpointError(fmt::format("{}: written for another scenario (tasks of {} classes, class order or split "
                                        "differ); resume with the same data, scenario and seed",
                                        where, Json(state.classes_per_task).dump()));
    if (state.code_fingerprint != code_fingerprint())
      throw CheckpointError(fmt::format("{}: written by {}, this is {}; a continuation would not be the same run",
                                        where, state.code_fingerprint, code_fingerprint()));
    if (p.task >= scenario_.num_tasks() || p.epoch > train_.epochs || p.trainer_task > p.task || p.trainer_task < 0)
      throw CheckpointError(fmt::format("{}: position (task {}, epoch {}) outside this run ({} tasks of {} epochs)",
                                        where, p.task, p.epoch, scenario_.num_tasks(), train_.epochs));
    if (model_.tasks_started() != 0)
      throw CheckpointError(fmt::format("{}: resume() needs a freshly constructed model, this one has started {} tasks",
                                        where, model_.tasks_started()));
    for (int64_t j = 0; j <= p.task; ++j) {
      model_.begin_task(context_for(j));
      if (j == p.trainer_task) make_trainer(j);
      if (j < p.task) model_.end_task();
    }
    LoadOptions options;
    options.source = where;
    load_state_dict(model_, state.model, options);
    if (trainer_->has_parameters()) load_optimizer_state(trainer_->optimizer(), state.optimizer, where);
    restore_global_generators(state, where);
    results_.accuracy = state.results.accuracy;
    results_.tasks = state.results.tasks;
    if (hooks.log)
      hooks.log(fmt::format("resumed from {} at task {}/{}, epoch {}/{}, batch {}", where, p.task + 1,
                            scenario_.num_tasks(), std::min(p.epoch + 1, train_.epochs), train_.epochs, p.batch));
  }

  /// Every task's train and test indices, for the scenario's fingerprint.
  std::vector<std::vector<int64_t>> index_lists() const {
    std::vector<std::vector<int64_t>> lists;
    for (int64_t t = 0; t < scenario_.num_tasks(); ++t) {
      lists.push_back(scenario_.task(t).train_indices);
      lists.push_back(scenario_.task(t).test_indices);
    }
    return lists;
  }

  /// Writes the resume checkpoint for `position` (nothing when no path is set).
  void save_checkpoint(const RunPosition& position, const LearnerHooks& hooks) {
    if (hooks.checkpoint.path.empty()) return;
    if (rank() != 0) return;  // every rank holds the same state; rank 0 writes it
    NvtxRange range("checkpoint");
    ResumeState state;
    state.position = position;
    state.results = results_;
    state.record = record_;
    state.classes_per_task = classes_per_task_;
    state.scenario_fingerprint = scenario_fingerprint_;
    state.code_fingerprint = code_fingerprint();
    state.model = state_dict(model_);
    if (trainer_ && trainer_->has_parameters()) state.optimizer = save_optimizer_state(trainer_->optimizer());
    capture_global_generators(state);
    state.metadata = hooks.checkpoint.metadata;
    write_resume_checkpoint(hooks.checkpoint.path, state);
  }

  void train_task(const TaskContext& ctx, const Task& task, const RunPosition& from, const LearnerHooks& hooks) {
    Trainer& trainer = *trainer_;
    TaskRecord& record = record_;
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
    const double seconds_before = record.train_seconds;
    auto checkpoint = [&](int64_t epoch, int64_t batch) {
      record.train_seconds = seconds_before + seconds_since(start);
      const auto progress = batch > 0 ? trainer.epoch_progress() : Trainer::EpochProgress{};
      save_checkpoint({.task = ctx.task, .epoch = epoch, .batch = batch, .trainer_task = trainer_task_,
                       .epoch_loss_sum = progress.loss_sum, .epoch_steps = progress.steps},
                      hooks);
    };
    const int64_t every = hooks.checkpoint.every_steps;
    TaskContext step_ctx = ctx;
    step_ctx.collective = collective();
    const double allreduce_before = trainer.allreduce_seconds();
    const int64_t epochs = train_.epochs_of_task(ctx.task);
    for (int64_t epoch = from.epoch; epoch < epochs; ++epoch) {
      trainer.begin_epoch(epoch, epochs, fmt::format("task {}, epoch {}", ctx.task, epoch));
      const int64_t first = epoch == from.epoch ? from.batch : 0;
      if (first > 0) trainer.resume_epoch({first, from.epoch_loss_sum, from.epoch_steps});
      model_.train();
      ProgressBar bar(fmt::format("task {}/{} epoch {}/{}", ctx.task + 1, ctx.num_tasks, epoch + 1, epochs),
                      loader.size(), hooks.progress_bar && ::isatty(::fileno(stderr)) == 1);
      int64_t b = first;
      for (const Batch& batch : loader.epoch(epoch, first)) {
        at::Tensor loss;
        {
          AutocastScope autocast(train_.precision, device_);
          const auto shard = shard_of(batch, step_ctx);
          auto output = model_.forward(to_device(shard.images), step_ctx);
          loss = model_.loss(output, to_device(shard.labels), step_ctx);
          if (shard.weight != 1.0) loss = loss * shard.weight;
        }
        trainer.step(loss);
        check_replicas(ctx, epoch, b);
        ++b;
        ++record.train_steps;
        record.train_images += batch.labels.size(0);
        // The running loss only when it is drawn: reading it waits for the device.
        bar.advance(batch.labels.size(0), bar.enabled() ? fmt::format("loss {:.4f}", trainer.epoch_loss()) : "");
        fault_point("train-step");
        if (const int signal = interrupt_requested_by_any()) {
          checkpoint(epoch, b);
          throw Interrupted(signal, fmt::format("stopped by signal {} at task {}, epoch {}, batch {}; checkpoint written",
                                                signal, ctx.task + 1, epoch + 1, b));
        }
        if (every > 0 && b < loader.num_batches() && (epoch * loader.num_batches() + b) % every == 0) checkpoint(epoch, b);
      }
      bar.finish();
      record.epoch_loss.push_back(trainer.epoch_loss());
      checkpoint(epoch + 1, 0);
    }
    record.train_seconds = seconds_before + seconds_since(start);
    record.allreduce_seconds += trainer.allreduce_seconds() - allreduce_before;
  }

  /// This rank's rows of a global batch and their share of it (1 in a single process). A rank
  /// whose share of a short last batch is empty steps on one stand-in row weighted 0, so that
  /// every rank takes part in every collective of the step.
  struct Shard {
    at::Tensor images, labels;
    double weight = 1.0;
  };
  Shard shard_of(const Batch& batch, TaskContext& step_ctx) const {
    step_ctx.padding_shard = false;
    if (collective() == nullptr) return {batch.images, batch.labels, 1.0};
    const int64_t n = batch.labels.size(0);
    const auto rows = row_shard(n, rank(), world_size());
    if (rows.size == 0) {
      step_ctx.padding_shard = true;
      return {batch.images.narrow(0, 0, 1), batch.labels.narrow(0, 0, 1), 0.0};
    }
    return {batch.images.narrow(0, rows.begin, rows.size), batch.labels.narrow(0, rows.begin, rows.size),
            static_cast<double>(rows.size) / static_cast<double>(n)};
  }

  /// A signal on any rank stops every rank at the same step (so that rank 0's checkpoint is the
  /// position every rank stopped at).
  int interrupt_requested_by_any() const {
    const int local = interrupt_requested();
    if (collective() == nullptr) return local;
    auto signals = at::zeros({world_size()}, at::kLong);
    signals[rank()] = local;
    collective()->all_reduce_sum(signals);
    for (int64_t r = 0; r < signals.size(0); ++r)
      if (const auto s = signals[r].template item<int64_t>(); s != 0) return static_cast<int>(s);
    return 0;
  }

  /// With check_replicas: rank 0's trainable parameters broadcast and compared bit for bit.
  void check_replicas(const TaskContext& ctx, int64_t epoch, int64_t b) {
    if (collective() == nullptr || !data_parallel_.check_replicas || trainer_->parameters().empty()) return;
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> flat;
    for (const auto& p : trainer_->parameters()) flat.push_back(p.detach().reshape({-1}).to(at::kCPU, at::kFloat));
    const auto mine = at::cat(flat);
    std::vector<at::Tensor> reference{mine.clone()};
    collective()->broadcast(reference, 0);
    auto differs = at::zeros({world_size()}, at::kLong);
    differs[rank()] = at::equal(mine, reference.front()) ? 0 : 1;
    collective()->all_reduce_sum(differs);
    for (int64_t r = 0; r < differs.size(0); ++r)
      if (differs[r].template item<int64_t>() != 0)
        throw Error(fmt::format("data parallel: the trainable parameters of rank {} differ from rank 0's after the "
                                "step at task {}, epoch {}, batch {}",
                                r, ctx.task + 1, epoch + 1, b + 1));
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
                     .pin_memory = device_.is_cuda(), .shard_index = rank(), .shard_count = world_size()});
      // Data parallel: in round k, rank r encodes batch k·W + r; the round's batches are gathered
      // and visited in batch order on every rank.
      const int64_t rounds = (loader.num_batches() + world_size() - 1) / world_size();
      int64_t round = 0;
      auto gather_and_visit = [&](const at::Tensor& encoded, const at::Tensor& labels) {
        const auto all_encoded = collective()->all_gather_rows(encoded);
        const auto all_labels = collective()->all_gather_rows(labels);
        for (std::size_t r = 0; r < all_encoded.size(); ++r)
          if (all_labels[r].size(0) > 0) visit(all_encoded[r], all_labels[r]);
        ++round;
      };
      for (const Batch& batch : loader.epoch(0)) {
        fault_point("feature-batch");
        throw_if_interrupted("a pass over the task's features");
        at::Tensor encoded;
        {
          AutocastScope autocast(train_.precision, device_);
          encoded = encode(to_device(batch.images));
        }
        if (collective() == nullptr) visit(encoded, to_device(batch.labels));
        else gather_and_visit(encoded, to_device(batch.labels));
      }
      while (collective() != nullptr && round < rounds) gather_and_visit(at::Tensor(), at::Tensor());  // no batch left here
    };
  }

  void evaluate_seen(int64_t t, const LearnerHooks&) {
    const auto start = Clock::now();
    std::vector<double> row;
    int64_t correct = 0, total = 0;
    for (int64_t j = 0; j <= t; ++j) row.push_back(evaluate(scenario_.task(j).test_indices, correct, total));
    record_.eval_seconds = seconds_since(start);
    record_.eval_images = total;
    record_.accuracy_seen_samples = total > 0 ? 100.0 * static_cast<double>(correct) / static_cast<double>(total) : 0.0;
    results_.accuracy.push_back(std::move(row));
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
  // The run in progress (what a checkpoint saves).
  DataParallel data_parallel_;
  std::string scenario_fingerprint_;
  Results results_;
  TaskRecord record_;
  std::unique_ptr<Trainer> trainer_;
  int64_t trainer_task_ = -1;
};

}  // namespace clprompt
