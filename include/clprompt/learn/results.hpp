#pragma once
// Results of a continual-learning run: the accuracy matrix, the summary metrics and timings,
// serialised as results.json together with the resolved configuration.
#include <cstdint>
#include <string>
#include <vector>

#include "clprompt/core/options.hpp"
#include "clprompt/learn/metrics.hpp"

namespace clprompt {

struct TaskRecord {
  int64_t task = 0;
  std::vector<std::string> classes;        ///< class names of the task, in label order
  int64_t train_images = 0;                ///< images seen in training (all epochs)
  double train_seconds = 0;
  double eval_seconds = 0;
  int64_t eval_images = 0;
  std::vector<double> epoch_loss;          ///< mean training loss of each epoch
  double accuracy_seen_samples = 0;        ///< accuracy (%) over all seen test samples after this task
  int64_t train_steps = 0;                 ///< optimiser steps (all epochs)
  double allreduce_seconds = 0;            ///< of train_seconds, waiting for gradient all-reduces (data parallel)

  double train_images_per_second() const { return train_seconds > 0 ? train_images / train_seconds : 0.0; }
  double eval_images_per_second() const { return eval_seconds > 0 ? eval_images / eval_seconds : 0.0; }
};

inline Json task_record_json(const TaskRecord& r) {
  return {{"task", r.task},
          {"classes", r.classes},
          {"train_images", r.train_images},
          {"train_seconds", r.train_seconds},
          {"train_images_per_second", r.train_images_per_second()},
          {"eval_images", r.eval_images},
          {"eval_seconds", r.eval_seconds},
          {"eval_images_per_second", r.eval_images_per_second()},
          {"epoch_loss", r.epoch_loss},
          {"accuracy_seen_samples", r.accuracy_seen_samples},
          {"train_steps", r.train_steps},
          {"allreduce_seconds", r.allreduce_seconds}};
}

/// The record task_record_json wrote (resume checkpoints); throws nlohmann's errors when malformed.
inline TaskRecord task_record_from_json(const Json& j) {
  TaskRecord r;
  r.task = j.at("task").get<int64_t>();
  r.classes = j.at("classes").get<std::vector<std::string>>();
  r.train_images = j.at("train_images").get<int64_t>();
  r.train_seconds = j.at("train_seconds").get<double>();
  r.eval_images = j.at("eval_images").get<int64_t>();
  r.eval_seconds = j.at("eval_seconds").get<double>();
  r.epoch_loss = j.at("epoch_loss").get<std::vector<double>>();
  r.accuracy_seen_samples = j.at("accuracy_seen_samples").get<double>();
  r.train_steps = j.value("train_steps", int64_t{0});  // absent in results written before data parallelism
  r.allreduce_seconds = j.value("allreduce_seconds", 0.0);
  return r;
}

struct Results {
  std::string method;
  uint64_t seed = 0;
  int64_t num_tasks = 0;
  int threads = 0;
  int world_size = 1;                 ///< processes of a data-parallel run
  std::vector<int64_t> class_order;   ///< incremental label -> original class id
  AccuracyMatrix accuracy;            ///< a[t][j] in %, j <= t
  std::vector<TaskRecord> tasks;
  double total_seconds = 0;
  Json config;                         ///< the resolved configuration of the run
  std::vector<std::string> notes;      ///< e.g. "backbone randomly initialised"

  int64_t completed_tasks() const { return static_cast<int64_t>(accuracy.size()); }
  bool complete() const { return completed_tasks() == num_tasks; }

  Json to_json() const {
    Json j;
    j["method"] = method;
    j["seed"] = seed;
    j["num_tasks"] = num_tasks;
    j["completed_tasks"] = completed_tasks();
    j["threads"] = threads;
    j["world_size"] = world_size;
    j["class_order"] = class_order;
    j["accuracy_matrix"] = accuracy;
    if (!accuracy.empty()) {
      j["accuracy_after_task"] = average_accuracy_per_task(accuracy);
      j["final_average_accuracy"] = final_average_accuracy(accuracy);
      j["average_incremental_accuracy"] = average_incremental_accuracy(average_accuracy_per_task(accuracy));
      const double f = average_forgetting(accuracy);
      j["forgetting"] = std::isnan(f) ? Json(nullptr) : Json(f);
    }
    Json tasks_json = Json::array();
    for (const auto& r : tasks) tasks_json.push_back(task_record_json(r));
    j["tasks"] = tasks_json;
    j["total_seconds"] = total_seconds;
    j["notes"] = notes;
    j["config"] = config;
    return j;
  }

  /// What to_json wrote (results.json, resume checkpoints); throws nlohmann's errors when malformed.
  static Results from_json(const Json& j) {
    Results r;
    r.method = j.at("method").get<std::string>();
    r.seed = j.at("seed").get<uint64_t>();
    r.num_tasks = j.at("num_tasks").get<int64_t>();
    r.threads = j.at("threads").get<int>();
    r.world_size = j.value("world_size", 1);
    r.class_order = j.at("class_order").get<std::vector<int64_t>>();
    r.accuracy = j.at("accuracy_matrix").get<AccuracyMatrix>();
    for (const auto& t : j.at("tasks")) r.tasks.push_back(task_record_from_json(t));
    r.total_seconds = j.at("total_seconds").get<double>();
    r.notes = j.at("notes").get<std::vector<std::string>>();
    r.config = j.at("config");
    return r;
  }
};

}  // namespace clprompt
