#pragma once
// Local launcher of a data-parallel run (`clprompt run --nproc N`, as `torchrun --nproc-per-node N`
// would start it): N copies of a program, each with torchrun's environment (WORLD_SIZE, RANK,
// LOCAL_RANK, MASTER_ADDR, MASTER_PORT; OMP_NUM_THREADS = cores / N unless set). The launcher
// waits for all of them; when one fails (a non-zero exit or a signal) it says which rank and
// how, stops the others (SIGTERM, SIGKILL after a grace period) and exits with that rank's
// status. SIGINT/SIGTERM sent to the launcher are passed on to every worker.
#include <string>
#include <vector>

namespace clprompt {

struct LaunchResult {
  int exit_code = 0;     ///< 0, the failed rank's exit code, or 128 + its signal
  std::string message;   ///< which rank failed and how ("" when all succeeded)
};

struct LaunchOptions {
  int nproc = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;               ///< 0: MASTER_PORT from the environment, else a free port
  double grace_seconds = 10;         ///< after a failure, how long the others get before SIGKILL
};

/// Runs `program` with `args` as options.nproc workers and waits for them (see the file comment).
/// Throws Error when a worker cannot be started.
LaunchResult launch_local_workers(const std::string& program, const std::vector<std::string>& args,
                                  const LaunchOptions& options);

/// The path of the running executable (/proc/self/exe), for launching copies of it.
std::string current_executable();

}  // namespace clprompt
