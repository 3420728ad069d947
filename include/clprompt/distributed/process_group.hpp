#pragma once
// Process groups for data-parallel runs: c10d, the engine torch.distributed runs on (Gloo on
// CPUs, NCCL on GPUs when this LibTorch has it), set up from torchrun's environment variables.
//
//   if (auto options = clprompt::DistributedOptions::from_environment()) {
//     auto collective = clprompt::connect(*options, device);   // every rank, at the same time
//     learner.distribute({.collective = collective});
//   }
//
// Environment (torchrun's names): WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. And
// clprompt's: CLPROMPT_DIST_BACKEND (auto | gloo | nccl), CLPROMPT_DIST_TIMEOUT (seconds a
// collective or the rendezvous may wait for a rank, default 300), CLPROMPT_DIST_FILE_STORE (a path
// on a filesystem every rank sees: rendezvous through that file instead of rank 0's TCP store).
// GLOO_SOCKET_IFNAME (torch's) picks the network interface Gloo uses.
#include <memory>
#include <optional>
#include <string>

#include <c10/core/Device.h>

#include "clprompt/core/collective.hpp"

namespace clprompt {

enum class DistributedBackend { automatic, gloo, nccl };

struct DistributedOptions {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;                       ///< the rank among this machine's processes (its GPU)
  std::string master_addr = "127.0.0.1";    ///< where rank 0's TCP store listens
  int master_port = 29500;
  std::string file_store;                   ///< rendezvous through this file instead ("" = TCP store)
  double timeout_seconds = 300;             ///< longest wait for another rank before an error
  DistributedBackend backend = DistributedBackend::automatic;  ///< automatic: NCCL for CUDA, else Gloo
  std::string socket_interface;             ///< GLOO_SOCKET_IFNAME ("" = the address of this host's name)

  /// From torchrun's variables; nullopt when WORLD_SIZE is not set (a single-process run).
  /// ConfigError naming the variable for a value that is not a valid number or rank.
  static std::optional<DistributedOptions> from_environment();
  void validate() const;
};

/// Joins the process group (blocks until every rank has joined, up to the timeout) and returns
/// its collectives. `device` is where the run's tensors live (NCCL needs them on the GPU of
/// local_rank; Gloo takes CPU tensors, others are copied). DistributedError when the rendezvous
/// fails or times out, naming the address and the ranks.
std::shared_ptr<Collective> connect(const DistributedOptions& options, c10::Device device);

/// Whether this LibTorch was built with NCCL (and clprompt with its process group).
bool nccl_available();

}  // namespace clprompt
