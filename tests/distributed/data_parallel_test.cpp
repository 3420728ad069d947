// Data parallelism's pieces against independent computations: the row shards (closed form),
// c10d's collectives (ranks as threads of this process meeting through a file store: real Gloo
// process groups), the gradient all-reduce against the full batch's gradient, batch-wise prompt
// selection across ranks against the full batch's counts, the Loader's batch shards against the
// unsharded batches, and the environment's errors naming the variable.
#include <algorithm>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/modules/linear.h>

#include "clprompt/core/collective.hpp"
#include "clprompt/data/dataset.hpp"
#include "clprompt/data/loader.hpp"
#include "clprompt/distributed/process_group.hpp"
#include "clprompt/optim/gradient_all_reduce.hpp"
#include "clprompt/selector/prompt_pool.hpp"
#include "test_util.hpp"

#include <catch2/catch.hpp>

using namespace clprompt;
using clprompt::test::TempDir;

namespace {

/// Runs fn(collective) on `world` threads, each one rank of a Gloo group; rethrows a rank's error.
void on_ranks(int world, const std::function<void(Collective&)>& fn) {
  TempDir dir;
  const auto store = (dir.path() / "store").string();
  std::vector<std::thread> threads;
  std::vector<std::string> errors(static_cast<std::size_t>(world));
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        DistributedOptions o;
        o.rank = r;
        o.world_size = world;
        o.file_store = store;
        o.timeout_seconds = 60;
        o.socket_interface = "lo";
        auto collective = connect(o, c10::kCPU);
        fn(*collective);
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (const auto& e : errors) REQUIRE(e == "");
}

}  // namespace

TEST_CASE("row shards split a batch into consecutive balanced parts", "[distributed]") {
  for (int64_t n : {1, 2, 7, 8, 16, 17}) {
    for (int world : {1, 2, 3, 4}) {
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        const auto s = row_shard(n, r, world);
        CHECK(s.begin == next);
        CHECK(s.size == n / world + (r < n % world ? 1 : 0));
        next += s.size;
      }
      CHECK(next == n);
    }
  }
}

TEST_CASE("c10d collectives: sums, broadcast and gathers of uneven rows", "[distributed]") {
  constexpr int world = 3;
  std::vector<std::vector<at::Tensor>> gathered(world);
  std::vector<at::Tensor> sums(world), broadcasts(world);
  on_ranks(world, [&](Collective& c) {
    const int r = c.rank();
    auto x = at::full({4}, static_cast<double>(r + 1), at::kDouble);
    auto y = at::arange(3, at::kLong) * (r + 1);
    std::vector<at::Tensor> both{x, y};
    c.all_reduce_sum(both);
    sums[static_cast<std::size_t>(r)] = at::cat({x, y.to(at::kDouble)});
    std::vector<at::Tensor> b{at::full({2, 2}, static_cast<float>(r), at::kFloat)};
    c.broadcast(b, 1);
    broadcasts[static_cast<std::size_t>(r)] = b.front();
    // Rank 0: 2 rows, rank 1: none, rank 2: 1 row (bf16, as an autocast encoding would be).
    at::Tensor rows;
    if (r == 0) rows = at::arange(6, at::kFloat).view({2, 3}).to(at::kBFloat16);
    if (r == 2) rows = at::full({1, 3}, 7.0f).to(at::kBFloat16);
    gathered[static_cast<std::size_t>(r)] = c.all_gather_rows(rows);
    c.barrier();
  });
  for (int r = 0; r < world; ++r) {
    const auto& s = sums[static_cast<std::size_t>(r)];
    CHECK(at::equal(s.narrow(0, 0, 4), at::full({4}, 6.0, at::kDouble)));                 // 1 + 2 + 3
    CHECK(at::equal(s.narrow(0, 4, 3), at::arange(3, at::kDouble) * 6));                  // (1 + 2 + 3) · i
    CHECK(at::equal(broadcasts[static_cast<std::size_t>(r)], at::full({2, 2}, 1.0f)));   // rank 1's
    const auto& g = gathered[static_cast<std::size_t>(r)];
    REQUIRE(g.size() == 3);
    CHECK(g[0].scalar_type() == at::kBFloat16);
    CHECK(at::equal(g[0].to(at::kFloat), at::arange(6, at::kFloat).view({2, 3})));
    CHECK(g[1].size(0) == 0);
    CHECK(g[1].size(1) == 3);
    CHECK(at::equal(g[2].to(at::kFloat), at::full({1, 3}, 7.0f)));
  }
}

TEST_CASE("summed weighted shard gradients are the full batch's gradient", "[distributed]") {
  // loss = mean over the batch of (w·x - y)² + 0.1 |w|² (a parameter-only term); one parameter
  // unused by everyone (no gradient on any rank stays without one).
  const auto x = at::randn({7, 5}, at::kDouble), y = at::randn({7}, at::kDouble);
  auto full_w = at::randn({5}, at::kDouble).set_requires_grad(true);
  const auto w0 = full_w.detach().clone();
  ((at::mv(x, full_w) - y).pow(2).mean() + 0.1 * full_w.pow(2).sum()).backward();
  const auto expected = full_w.grad().clone();
  const double expected_loss = ((at::mv(x, w0) - y).pow(2).mean() + 0.1 * w0.pow(2).sum()).item<double>();

  constexpr int world = 3;
  std::vector<at::Tensor> grads(world);
  std::vector<double> losses(world);
  std::vector<bool> unused_has_grad(world);
  on_ranks(world, [&](Collective& c) {
    auto w = w0.clone().set_requires_grad(true);
    auto unused = at::zeros({3}, at::kFloat).set_requires_grad(true);
    const auto s = row_shard(7, c.rank(), c.world_size());
    const auto xs = x.narrow(0, s.begin, s.size), ys = y.narrow(0, s.begin, s.size);
    const auto loss = ((at::mv(xs, w) - ys).pow(2).mean() + 0.1 * w.pow(2).sum()) * (static_cast<double>(s.size) / 7.0);
    loss.backward();
    auto value = loss.detach().reshape({1});
    all_reduce_gradients({w, unused}, value, c, /*bucket_bytes=*/16);  // tiny buckets: one per parameter
    grads[static_cast<std::size_t>(c.rank())] = w.grad().clone();
    losses[static_cast<std::size_t>(c.rank())] = value.item<double>();
    unused_has_grad[static_cast<std::size_t>(c.rank())] = unused.grad().defined();
  });
  for (int r = 0; r < world; ++r) {
    CHECK(at::allclose(grads[static_cast<std::size_t>(r)], expected, 1e-12, 1e-12));
    CHECK(losses[static_cast<std::size_t>(r)] == Approx(expected_loss).epsilon(1e-12));
    CHECK_FALSE(unused_has_grad[static_cast<std::size_t>(r)]);
    CHECK(at::equal(grads[static_cast<std::size_t>(r)], grads[0]));  // identical on every rank
  }
}

TEST_CASE("batch-wise prompt selection counts the whole global batch", "[distributed]") {
  // 6 samples' top-2 indices into a pool of 5; the global batch's most frequent two are 3 and 1.
  const auto indices = at::tensor(std::vector<int64_t>{3, 1, 3, 0, 1, 3, 4, 2, 4, 0, 4, 2}, at::kLong).view({6, 2});
  const auto expected = clprompt::detail::batchwise_top_k(indices, 5, 2);
  constexpr int world = 2;
  std::vector<at::Tensor> picked(world), alone(world);
  on_ranks(world, [&](Collective& c) {
    TaskContext ctx;
    ctx.collective = &c;
    const auto s = row_shard(6, c.rank(), c.world_size());
    picked[static_cast<std::size_t>(c.rank())] = clprompt::detail::batchwise_top_k(indices.narrow(0, s.begin, s.size), 5, 2, ctx);
    alone[static_cast<std::size_t>(c.rank())] = clprompt::detail::batchwise_top_k(indices.narrow(0, s.begin, s.size), 5, 2);
  });
  CHECK(at::equal(expected, at::tensor(std::vector<int64_t>{3, 4}, at::kLong)));
  for (int r = 0; r < world; ++r) CHECK(at::equal(picked[static_cast<std::size_t>(r)], expected));
  CHECK_FALSE(at::equal(alone[1], expected));  // rank 1's rows alone would pick {4, 2}
}

TEST_CASE("a loader's batch shard visits every count-th batch, each as built unsharded", "[distributed][data]") {
  TensorDataset data(at::randint(0, 255, {23, 1, 4, 4}, at::kByte), at::arange(23, at::kLong) % 2, {}, "tiny");
  std::vector<int64_t> indices(23);
  std::iota(indices.begin(), indices.end(), 0);
  Transform transform(TransformOptions{.size = 0});
  const std::vector<int64_t> label_map{0, 1};
  Loader whole(data, indices, label_map, transform, {.batch_size = 5});
  std::vector<Batch> expected;
  for (const Batch& b : whole.epoch(0)) expected.push_back(b);
  REQUIRE(expected.size() == 5);
  for (int64_t count : {2, 3}) {
    std::vector<int64_t> seen;
    for (int64_t index = 0; index < count; ++index) {
      Loader shard(data, indices, label_map, transform, {.batch_size = 5, .shard_index = index, .shard_count = count});
      int64_t b = index;
      for (const Batch& batch : shard.epoch(0)) {
        CHECK(batch.indices == expected[static_cast<std::size_t>(b)].indices);
        CHECK(at::equal(batch.images, expected[static_cast<std::size_t>(b)].images));
        seen.push_back(b);
        b += count;
      }
    }
    std::sort(seen.begin(), seen.end());
    CHECK(seen == std::vector<int64_t>{0, 1, 2, 3, 4});
  }
  CHECK_THROWS_WITH(Loader(data, indices, label_map, transform, {.shard_index = 2, .shard_count = 2}),
                    Catch::Contains("shard_index") && Catch::Contains("2 of 2"));
}

TEST_CASE("torchrun's environment: parsed, and each bad value named", "[distributed]") {
  struct Env {
    std::vector<std::string> names;
    void set(const char* name, const char* value) {
      ::setenv(name, value, 1);
      names.emplace_back(name);
    }
    ~Env() {
      for (const auto& n : names) ::unsetenv(n.c_str());
    }
  };
  {
    Env env;
    ::unsetenv("WORLD_SIZE");
    CHECK_FALSE(DistributedOptions::from_environment().has_value());
    env.set("WORLD_SIZE", "4");
    env.set("RANK", "3");
    env.set("LOCAL_RANK", "1");
    env.set("MASTER_ADDR", "10.1.2.3");
    env.set("MASTER_PORT", "29400");
    env.set("CLPROMPT_DIST_TIMEOUT", "12.5");
    const auto o = DistributedOptions::from_environment();
    REQUIRE(o.has_value());
    CHECK(o->world_size == 4);
    CHECK(o->rank == 3);
    CHECK(o->local_rank == 1);
    CHECK(o->master_addr == "10.1.2.3");
    CHECK(o->master_port == 29400);
    CHECK(o->timeout_seconds == 12.5);
    env.set("RANK", "4");
    CHECK_THROWS_WITH(DistributedOptions::from_environment(), Catch::Contains("RANK") && Catch::Contains("[0, 3]"));
    env.set("RANK", "1");
    env.set("MASTER_PORT", "http");
    CHECK_THROWS_WITH(DistributedOptions::from_environment(), Catch::Contains("MASTER_PORT") && Catch::Contains("'http'"));
    env.set("MASTER_PORT", "29400");
    env.set("CLPROMPT_DIST_BACKEND", "mpi");
    CHECK_THROWS_WITH(DistributedOptions::from_environment(), Catch::Contains("CLPROMPT_DIST_BACKEND") && Catch::Contains("gloo"));
  }
  // Nobody else joins: the rendezvous gives up after the timeout with a message naming the store.
  DistributedOptions lonely;
  lonely.world_size = 2;
  lonely.rank = 1;
  lonely.master_port = 1;  // nobody listens on port 1
  lonely.timeout_seconds = 1;
  CHECK_THROWS_WITH(connect(lonely, c10::kCPU), Catch::Contains("rank 1 of 2") && Catch::Contains("127.0.0.1:1"));
}
