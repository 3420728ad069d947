// Compiled part of include/clprompt/distributed/launcher.hpp: fork/exec of the workers, their
// environment, and the watch that stops all of them when one fails. POSIX only; no LibTorch.
#include "clprompt/distributed/launcher.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "clprompt/core/error.hpp"

extern char** environ;

namespace clprompt {

namespace {

// The workers, for the signal handler that passes SIGINT/SIGTERM on (async-signal-safe: a fixed
// array of pids and kill()).
constexpr int kMaxWorkers = 1024;
std::atomic<pid_t> g_workers[kMaxWorkers];
std::atomic<int> g_worker_count{0};

extern "C" void forward_signal(int signal) {
  const int n = g_worker_count.load();
  for (int i = 0; i < n; ++i)
    if (const pid_t pid = g_workers[i].load(); pid > 0) ::kill(pid, signal);
}

/// A port nobody listens on now (the kernel's choice for port 0), for rank 0's TCP store.
int free_port(const std::string& address) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(fmt::format("--nproc: cannot open a socket to find a free port: {}", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    const std::string cause = std::strerror(errno);
    ::close(fd);
    throw Error(fmt::format("--nproc: cannot find a free port on {}: {}", address, cause));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string describe(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int s = WTERMSIG(status);
    const char* name = ::sigabbrev_np(s);
    return fmt::format("was killed by signal {}{}", s, name != nullptr ? fmt::format(" (SIG{})", name) : "");
  }
  return fmt::format("stopped (status {})", status);
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

std::string current_executable() {
  std::vector<char> buffer(4096);
  const auto n = ::readlink("/proc/self/exe", buffer.data(), buffer.size() - 1);
  if (n <= 0) throw Error("--nproc: cannot find this program's path (/proc/self/exe)");
  return std::string(buffer.data(), static_cast<std::size_t>(n));
}

LaunchResult launch_local_workers(const std::string& program, const std::vector<std::string>& args,
                                  const LaunchOptions& options) {
  if (options.nproc < 1 || options.nproc > kMaxWorkers)
    throw ConfigError("--nproc", fmt::format("expected 1 to {} processes, got {}", kMaxWorkers, options.nproc));
  int port = options.master_port;
  if (port == 0) {
    const char* from_env = std::getenv("MASTER_PORT");
    port = from_env != nullptr ? std::atoi(from_env) : free_port(options.master_addr);
  }
  const long cores = std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN));
  const bool threads_set = std::getenv("OMP_NUM_THREADS") != nullptr;

  // Each worker's environment: this one, without torchrun's variables, plus its own.
  std::vector<std::string> inherited;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    const auto name = entry.substr(0, entry.find('='));
    if (name == "WORLD_SIZE" || name == "RANK" || name == "LOCAL_RANK" || name == "LOCAL_WORLD_SIZE" ||
        name == "MASTER_ADDR" || name == "MASTER_PORT")
      continue;
    inherited.push_back(entry);
  }

  struct sigaction forward {}, old_int {}, old_term {};
  forward.sa_handler = forward_signal;
  sigemptyset(&forward.sa_mask);
  ::sigaction(SIGINT, &forward, &old_int);
  ::sigaction(SIGTERM, &forward, &old_term);

  std::vector<pid_t> pids;
  auto stop_all = [&](int signal) {
    for (pid_t pid : pids)
      if (pid > 0) ::kill(pid, signal);
  };
  for (int rank = 0; rank < options.nproc; ++rank) {
    auto env = inherited;
    env.push_back(fmt::format("WORLD_SIZE={}", options.nproc));
    env.push_back(fmt::format("RANK={}", rank));
    env.push_back(fmt::format("LOCAL_RANK={}", rank));
    env.push_back(fmt::format("LOCAL_WORLD_SIZE={}", options.nproc));
    env.push_back(fmt::format("MASTER_ADDR={}", options.master_addr));
    env.push_back(fmt::format("MASTER_PORT={}", port));
    if (!threads_set) env.push_back(fmt::format("OMP_NUM_THREADS={}", std::max(1L, cores / options.nproc)));
    std::vector<char*> envp, argv;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> arguments{program};
    arguments.insert(arguments.end(), args.begin(), args.end());
    for (auto& a : arguments) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      stop_all(SIGKILL);
      throw Error(fmt::format("--nproc: cannot start worker {}: {}", rank, std::strerror(errno)));
    }
    if (pid == 0) {
      ::sigaction(SIGINT, &old_int, nullptr);
      ::sigaction(SIGTERM, &old_term, nullptr);
      ::execve(program.c_str(), argv.data(), envp.data());
      std::fprintf(stderr, "--nproc: cannot run %s: %s\n", program.c_str(), std::strerror(errno));
      std::_Exit(127);
    }
    pids.push_back(pid);
    g_workers[rank].store(pid);
    g_worker_count.store(rank + 1);
  }

  LaunchResult result;
  int running = options.nproc;
  auto failed_at = std::chrono::steady_clock::time_point::max();
  bool killed = false;
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid < 0 && errno != EINTR) break;
    if (pid <= 0) {
      if (!killed && std::chrono::steady_clock::now() - failed_at > std::chrono::duration<double>(options.grace_seconds)) {
        stop_all(SIGKILL);  // still blocked after the grace period (e.g. in a collective)
        killed = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    int rank = 0;
    while (rank < options.nproc && pids[static_cast<std::size_t>(rank)] != pid) ++rank;
    if (rank == options.nproc) continue;
    pids[static_cast<std::size_t>(rank)] = -1;
    g_workers[rank].store(-1);
    --running;
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok && result.message.empty()) {
      result.exit_code = exit_code_of(status);
      result.message = fmt::format("rank {} of {} {}; stopping the other {}", rank, options.nproc, describe(status),
                                   running == 1 ? "rank" : "ranks");
      if (running == 0) result.message = fmt::format("rank {} of {} {}", rank, options.nproc, describe(status));
      stop_all(SIGTERM);
      failed_at = std::chrono::steady_clock::now();
    }
  }
  g_worker_count.store(0);
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace clprompt
