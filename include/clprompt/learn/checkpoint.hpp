#pragma once
// Resume checkpoints: everything a Learner needs to continue a run bit-for-bit (on the CPU, with
// the same thread count) after it was stopped: the position in the scenario, the model's tensors,
// the optimiser's state, the global random generators, the results and the current task's record
// so far. One safetensors file, written atomically: the previous checkpoint stays whole until the
// new one has replaced it.
//
// What is not in it is rebuilt: the model is constructed again from the same seed and weights,
// the task history is replayed (begin_task / end_task, as ContinualModel::load does) so that grown
// heads and pools have the checkpoint's shapes, then every tensor is loaded by name. Data order and
// augmentation need no state: batch b of epoch e is a function of (seed, task, e, b) (Loader).
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "clprompt/io/safetensors.hpp"
#include "clprompt/learn/results.hpp"

namespace torch::optim {
class Optimizer;
}

namespace clprompt {

/// Where a run stands when its checkpoint is written.
struct RunPosition {
  int64_t task = 0;          ///< the task being learned (begin_task and the selector's preparation done)
  int64_t epoch = 0;         ///< epochs of it finished; == the number of epochs: training done
  int64_t batch = 0;         ///< batches of `epoch` finished (> 0 only for a checkpoint mid-epoch)
  int64_t trainer_task = 0;  ///< the task whose start (last) built the optimiser
  double epoch_loss_sum = 0;  ///< the running loss of `epoch` so far (its mean is reported)
  int64_t epoch_steps = 0;
};

/// The contents of a resume checkpoint.
struct ResumeState {
  RunPosition position;
  Results results;                        ///< the finished tasks
  TaskRecord record;                      ///< the current task's record so far
  std::vector<int64_t> classes_per_task;  ///< the scenario's, checked on resume
  std::string scenario_fingerprint;       ///< scenario_fingerprint() of the run, checked on resume
  std::string code_fingerprint;           ///< code_fingerprint() of the program that wrote it
  TensorMap model;                        ///< the model's parameters and buffers by name
  at::Tensor optimizer;                   ///< LibTorch's serialised optimiser state (U8); undefined when none
  at::Tensor cpu_generator;               ///< the global CPU generator's state
  std::vector<at::Tensor> cuda_generators;  ///< the global CUDA generators' states, one per device
  Metadata metadata;                      ///< the caller's (e.g. the resolved configuration)
};

/// Writes `state` to `path` atomically (a temporary file renamed over it).
void write_resume_checkpoint(const std::string& path, const ResumeState& state);
/// Reads a checkpoint written by write_resume_checkpoint; CheckpointError naming the file and
/// what is wrong otherwise (not a resume checkpoint, a missing or malformed entry).
ResumeState read_resume_checkpoint(const std::string& path);

/// The optimiser's state (moments, step counts, per-group options) as bytes in a U8 tensor.
at::Tensor save_optimizer_state(torch::optim::Optimizer& optimizer);
/// Restores what save_optimizer_state wrote into an optimiser over the same parameters, in the
/// same order; CheckpointError naming `source` when it does not fit.
void load_optimizer_state(torch::optim::Optimizer& optimizer, const at::Tensor& bytes, const std::string& source);

/// The global CPU and CUDA generators' states (parameter initialisation, dropout), into `state`.
void capture_global_generators(ResumeState& state);
/// Sets the global generators to the states in `state`.
void restore_global_generators(const ResumeState& state, const std::string& source);

/// A digest of what decides a scenario's data: class order and every task's train and test
/// indices. Two runs with equal fingerprints see the same images in the same tasks.
std::string scenario_fingerprint(const std::vector<int64_t>& class_order,
                                 const std::vector<std::vector<int64_t>>& index_lists);
/// The clprompt and LibTorch versions this program was built with: numbers are bit-identical
/// only on the same code.
std::string code_fingerprint();

}  // namespace clprompt
