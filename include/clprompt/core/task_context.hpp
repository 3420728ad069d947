#pragma once
// TaskContext: what every policy may know about where it is in the task sequence.
// Labels are incremental: the scenario maps the classes of task t to [class_begin, class_end),
// so "the classes seen so far" is always the prefix [0, class_end).
#include <cstdint>
#include <vector>

namespace clprompt {

class Collective;

struct TaskContext {
  int64_t task = 0;         ///< the task being learned, or the last one learned (evaluation)
  int64_t num_tasks = 1;    ///< length of the task sequence
  int64_t class_begin = 0;  ///< first label of `task`
  int64_t class_end = 0;    ///< one past its last label == number of classes seen so far
  std::vector<int64_t> task_class_ends;  ///< class_end of every task up to and including `task`
  bool training = false;    ///< true while learning `task` (task identity may be used);
                            ///< false at evaluation (class-incremental: no task identity)
  /// Data-parallel training (core/collective.hpp): this rank's shard of the global batch is what
  /// the policies see. A policy whose training step couples the samples of a batch beyond a mean
  /// of per-sample terms (e.g. batch-wise prompt selection) reduces that coupling across the
  /// ranks with it; null in a single process.
  Collective* collective = nullptr;
  /// True when this rank's shard of the (last, partial) global batch is empty and it steps on a
  /// stand-in row whose loss weighs zero: counts it contributes to a reduction must be zero.
  bool padding_shard = false;

  int64_t classes_seen() const { return class_end; }
  int64_t task_classes() const { return class_end - class_begin; }
  /// First label of task `t` (t <= task).
  int64_t class_begin_of(int64_t t) const { return t == 0 ? 0 : task_class_ends.at(static_cast<std::size_t>(t - 1)); }

  /// The context for learning task `t` after tasks with the given class counts.
  static TaskContext for_task(int64_t t, int64_t num_tasks, const std::vector<int64_t>& classes_per_task,
                              bool training) {
    TaskContext ctx;
    ctx.task = t;
    ctx.num_tasks = num_tasks;
    ctx.training = training;
    int64_t end = 0;
    for (int64_t i = 0; i <= t; ++i) {
      end += classes_per_task.at(static_cast<std::size_t>(i));
      ctx.task_class_ends.push_back(end);
    }
    ctx.class_end = end;
    ctx.class_begin = end - classes_per_task.at(static_cast<std::size_t>(t));
    return ctx;
  }
  TaskContext for_evaluation() const {
    TaskContext ctx = *this;
    ctx.training = false;
    return ctx;
  }
};

}  // namespace clprompt
