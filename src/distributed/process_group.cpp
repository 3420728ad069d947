// Compiled part of include/clprompt/distributed/process_group.hpp: c10d's stores and process
// groups behind the Collective interface. The only translation unit that includes c10d (its
// headers are heavy and their API moved between LibTorch 1.13 and 2.x: ProcessGroupGloo is a
// ProcessGroup there and a Backend here; the calls used below are the same in both).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef CLPROMPT_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "clprompt/core/error.hpp"
#include "clprompt/distributed/process_group.hpp"

namespace clprompt {

namespace {

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::string(value) : std::string();
}

long environment_integer(const char* name, long fallback, long min, long max) {
  const auto text = environment(name);
  if (text.empty()) return fallback;
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (errno != 0 || end == text.c_str() || *end != '\0' || value < min || value > max)
    throw ConfigError(name, fmt::format("expected an integer in [{}, {}], got '{}'", min, max, text));
  return value;
}

/// The first line of a c10d error (the rest is a C++ stack trace).
std::string first_line(const std::exception& e) {
  std::string cause = e.what();
  if (const auto nl = cause.find('\n'); nl != std::string::npos) cause.resize(nl);
  return cause;
}

/// The ranks' rows travel in a dtype every backend reduces and gathers (bf16/fp16 exactly as float).
at::ScalarType transport_dtype(at::ScalarType t) {
  return t == at::kBFloat16 || t == at::kHalf ? at::kFloat : t;
}

template <class Group>
class C10dCollective final : public Collective {
 public:
  C10dCollective(c10::intrusive_ptr<c10d::Store> store, c10::intrusive_ptr<Group> group, const DistributedOptions& options,
                 c10::Device device)
      : store_(std::move(store)), group_(std::move(group)), options_(options), device_(device) {}

  int rank() const override { return options_.rank; }
  int world_size() const override { return options_.world_size; }

  void all_reduce_sum(std::vector<at::Tensor>& tensors) override {
    guarded("all-reduce", [&] {
      std::vector<std::vector<at::Tensor>> staged(tensors.size());
      std::vector<c10::intrusive_ptr<c10d::Work>> works;
      for (std::size_t i = 0; i < tensors.size(); ++i) {
        staged[i] = {stage(tensors[i])};
        c10d::AllreduceOptions o;
        o.reduceOp = c10d::ReduceOp::SUM;
        works.push_back(group_->allreduce(staged[i], o));  // all in flight; waited below
      }
      for (std::size_t i = 0; i < tensors.size(); ++i) {
        works[i]->wait();
        unstage(staged[i].front(), tensors[i]);
      }
    });
  }

  void broadcast(std::vector<at::Tensor>& tensors, int root) override {
    guarded("broadcast", [&] {
      for (auto& t : tensors) {
        std::vector<at::Tensor> staged{stage(t)};
        c10d::BroadcastOptions o;
        o.rootRank = root;
        group_->broadcast(staged, o)->wait();
        unstage(staged.front(), t);
      }
    });
  }

  std::vector<at::Tensor> all_gather_rows(const at::Tensor& rows) override {
    std::vector<at::Tensor> out;
    guarded("all-gather", [&] {
      // 1. Every rank's shape and dtype (a rank without rows sends a zero header).
      constexpr int64_t kFields = 10, kMaxDims = 7;
      if (rows.defined() && rows.dim() > kMaxDims)
        throw ShapeError(fmt::format("all_gather_rows: at most {} dimensions, got {}", kMaxDims, rows.sizes()));
      auto headers = at::zeros({world_size(), kFields}, at::kLong);
      if (rows.defined()) {
        auto mine = headers[rank()];
        mine[0] = 1;
        mine[1] = static_cast<int64_t>(rows.scalar_type());
        mine[2] = rows.dim();
        for (int64_t d = 0; d < rows.dim(); ++d) mine[3 + d] = rows.size(d);
      }
      std::vector<at::Tensor> header_list{headers};
      all_reduce_sum(header_list);
      headers = header_list.front();
      int64_t source = -1, max_rows = 0;
      for (int64_t r = 0; r < world_size(); ++r)
        if (headers[r][0].template item<int64_t>() == 1) {
          if (source < 0) source = r;
          max_rows = std::max(max_rows, headers[r][3].template item<int64_t>());
        }
      if (source < 0) {  // nobody has rows: every rank gets W undefined tensors
        out.assign(static_cast<std::size_t>(world_size()), at::Tensor());
        return;
      }
      const auto dtype = static_cast<at::ScalarType>(headers[source][1].template item<int64_t>());
      std::vector<int64_t> shape;
      for (int64_t d = 0; d < headers[source][2].template item<int64_t>(); ++d) shape.push_back(headers[source][3 + d].template item<int64_t>());
      for (int64_t r = 0; r < world_size(); ++r)
        if (headers[r][0].template item<int64_t>() == 1) {
          bool same = headers[r][1].template item<int64_t>() == headers[source][1].template item<int64_t>() &&
                      headers[r][2].template item<int64_t>() == static_cast<int64_t>(shape.size());
          for (std::size_t d = 1; same && d < shape.size(); ++d) same = headers[r][3 + static_cast<int64_t>(d)].template item<int64_t>() == shape[d];
          if (!same)
            throw ShapeError(fmt::format("all_gather_rows: rank {} sends rows of another shape or dtype than rank {}", r, source));
        }
      // 2. The rows, padded to the longest.
      auto padded_shape = shape;
      padded_shape[0] = max_rows;
      auto padded = at::zeros(padded_shape, at::TensorOptions(transport_dtype(dtype)));
      if (rows.defined() && rows.size(0) > 0) padded.narrow(0, 0, rows.size(0)).copy_(rows.detach().to(at::kCPU));
      std::vector<at::Tensor> input{stage(padded)};
      std::vector<std::vector<at::Tensor>> output(1);
      for (int64_t r = 0; r < world_size(); ++r) output[0].push_back(at::empty_like(input.front()));
      group_->allgather(output, input)->wait();
      const auto where = rows.defined() ? rows.device() : device_;
      for (int64_t r = 0; r < world_size(); ++r) {
        const int64_t n = headers[r][0].template item<int64_t>() == 1 ? headers[r][3].template item<int64_t>() : 0;
        out.push_back(output[0][static_cast<std::size_t>(r)].narrow(0, 0, n).to(where, dtype).contiguous());
      }
    });
    return out;
  }

  void barrier() override {
    guarded("barrier", [&] { group_->barrier()->wait(); });
  }

 private:
  /// A contiguous copy on the backend's device (Gloo: CPU; NCCL: the run's GPU), or the tensor.
  at::Tensor stage(const at::Tensor& t) const {
    const auto target = backend_device();
    auto s = t.detach().to(target, transport_dtype(t.scalar_type())).contiguous();
    return s;
  }
  static void unstage(const at::Tensor& staged, at::Tensor& t) {
    if (!staged.is_same(t)) t.detach().copy_(staged);
  }
  c10::Device backend_device() const { return uses_nccl ? device_ : c10::Device(c10::kCPU); }

  template <class Fn>
  void guarded(const char* what, Fn&& fn) {
    try {
      fn();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      const auto cause = first_line(e);
      throw DistributedError(fmt::format(
          "data parallel: rank {} of {}: {} failed: {} (another rank stopped or the network failed; "
          "collectives wait at most {} s, CLPROMPT_DIST_TIMEOUT)",
          rank(), world_size(), what, cause, options_.timeout_seconds));
    }
  }

  static constexpr bool uses_nccl =
#ifdef CLPROMPT_WITH_NCCL
      std::is_same_v<Group, c10d::ProcessGroupNCCL>;
#else
      false;
#endif

  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<Group> group_;
  DistributedOptions options_;
  c10::Device device_;
};

}  // namespace

std::optional<DistributedOptions> DistributedOptions::from_environment() {
  if (environment("WORLD_SIZE").empty()) return std::nullopt;
  DistributedOptions o;
  o.world_size = static_cast<int>(environment_integer("WORLD_SIZE", 1, 1, 1 << 16));
  o.rank = static_cast<int>(environment_integer("RANK", -1, 0, o.world_size - 1));
  if (o.rank < 0) throw ConfigError("RANK", fmt::format("must be set with WORLD_SIZE={} (0 to {})", o.world_size, o.world_size - 1));
  o.local_rank = static_cast<int>(environment_integer("LOCAL_RANK", o.rank, 0, 1 << 16));
  if (const auto addr = environment("MASTER_ADDR"); !addr.empty()) o.master_addr = addr;
  o.master_port = static_cast<int>(environment_integer("MASTER_PORT", o.master_port, 1, 65535));
  o.file_store = environment("CLPROMPT_DIST_FILE_STORE");
  if (const auto t = environment("CLPROMPT_DIST_TIMEOUT"); !t.empty()) {
    char* end = nullptr;
    o.timeout_seconds = std::strtod(t.c_str(), &end);
    if (end == t.c_str() || *end != '\0' || !(o.timeout_seconds > 0))
      throw ConfigError("CLPROMPT_DIST_TIMEOUT", fmt::format("expected seconds > 0, got '{}'", t));
  }
  const auto backend = environment("CLPROMPT_DIST_BACKEND");
  if (backend.empty() || backend == "auto") o.backend = DistributedBackend::automatic;
  else if (backend == "gloo") o.backend = DistributedBackend::gloo;
  else if (backend == "nccl") o.backend = DistributedBackend::nccl;
  else throw ConfigError("CLPROMPT_DIST_BACKEND", fmt::format("expected auto, gloo or nccl, got '{}'", backend));
  o.socket_interface = environment("GLOO_SOCKET_IFNAME");
  o.validate();
  return o;
}

void DistributedOptions::validate() const {
  if (world_size < 1) throw ConfigError("WORLD_SIZE", fmt::format("expected >= 1, got {}", world_size));
  if (rank < 0 || rank >= world_size)
    throw ConfigError("RANK", fmt::format("expected 0 to {} (WORLD_SIZE {}), got {}", world_size - 1, world_size, rank));
  if (master_port < 1 || master_port > 65535)
    throw ConfigError("MASTER_PORT", fmt::format("expected 1 to 65535, got {}", master_port));
  if (!(timeout_seconds > 0)) throw ConfigError("CLPROMPT_DIST_TIMEOUT", fmt::format("expected > 0, got {}", timeout_seconds));
}

bool nccl_available() {
#ifdef CLPROMPT_WITH_NCCL
  return true;
#else
  return false;
#endif
}

std::shared_ptr<Collective> connect(const DistributedOptions& options, c10::Device device) {
  options.validate();
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeout_seconds * 1000));
  const bool nccl = options.backend == DistributedBackend::nccl ||
                    (options.backend == DistributedBackend::automatic && device.is_cuda() && nccl_available());
  if (nccl && !nccl_available())
    throw ConfigError("CLPROMPT_DIST_BACKEND", "nccl: this build of clprompt has no NCCL process group (a LibTorch "
                                               "with CUDA and NCCL is needed); use gloo");
  if (nccl && !device.is_cuda())
    throw ConfigError("CLPROMPT_DIST_BACKEND", "nccl needs the run on a CUDA device (device=cuda)");
  const auto where = options.file_store.empty() ? fmt::format("the TCP store at {}:{}", options.master_addr, options.master_port)
                                                : fmt::format("the file store {}", options.file_store);
  c10::intrusive_ptr<c10d::Store> store;
  try {
    if (!options.file_store.empty()) {
      store = c10::make_intrusive<c10d::FileStore>(options.file_store, options.world_size);
      store->setTimeout(timeout);
    } else {
      c10d::TCPStoreOptions o;
      o.port = static_cast<std::uint16_t>(options.master_port);
      o.isServer = options.rank == 0;
      o.numWorkers = static_cast<std::size_t>(options.world_size);
      o.waitWorkers = true;
      o.timeout = timeout;
      store = c10::make_intrusive<c10d::TCPStore>(options.master_addr, o);
    }
  } catch (const std::exception& e) {
    const auto cause = first_line(e);
    throw DistributedError(fmt::format("data parallel: rank {} of {} could not meet the others through {} within {} s: {}",
                                       options.rank, options.world_size, where, options.timeout_seconds, cause));
  }
  try {
#ifdef CLPROMPT_WITH_NCCL
    if (nccl) {
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = timeout;
      auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, options.rank, options.world_size, o);
      return std::make_shared<C10dCollective<c10d::ProcessGroupNCCL>>(store, group, options, device);
    }
#endif
    auto o = c10d::ProcessGroupGloo::Options::create(timeout);
    o->threads = 2;
    o->devices.push_back(options.socket_interface.empty()
                             ? c10d::ProcessGroupGloo::createDefaultDevice()
                             : c10d::ProcessGroupGloo::createDeviceForInterface(options.socket_interface));
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, options.rank, options.world_size, o);
    return std::make_shared<C10dCollective<c10d::ProcessGroupGloo>>(store, group, options, device);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    const auto cause = first_line(e);
    throw DistributedError(fmt::format("data parallel: rank {} of {} could not form the {} process group (rendezvous "
                                       "through {}): {}",
                                       options.rank, options.world_size, nccl ? "NCCL" : "Gloo", where, cause));
  }
}

}  // namespace clprompt
