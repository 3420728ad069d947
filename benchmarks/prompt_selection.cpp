// Prompt selection + assembly, `select(q, ctx)` at evaluation after task 4 of 10, for each
// shipped key-query selector with its default options and BackboneDims{D, 12, D / 64}:
//   l2p   KeyQueryPool: cosine to 10 keys, top-5, gather 5 prompts of 5 tokens -> [B, 25, D] input tokens
//   dual  DualPrompt:   cosine to 10 E-keys, top-1, gather the E-prompt of layers 2-4 (key and
//                       value, 5 tokens each); G-prompt of layers 0-1 broadcast (a view)
//   coda  AttentionDecomposed: 50 active components (task 4: [0, 50) of 100), per layer 0-4
//                       weights [B, 50] and the weighted sum of [50, 8, D] components
//   star  PrototypeKeys (STAR-Prompt's second level): 50 seen classes, CLIP query and keys of
//                       width 512 (ViT-B/16 CLIP), in all 12 layers w [B, 50] = 5 cos(q ⊙
//                       softmax(a_c), key_c), arg-max, residual w · p [B, D]
// against the same operation written naively, one sample at a time (`naive`), and for CODA and
// STAR the batched form of the reference's einsum that materialises q ⊙ A as [B, f, D] or
// q ⊙ softmax(a) as [B, 50, 512] (`einsum`).
// Batch sizes {1, 8, 32, 128, 256} x D {192, 768}.
//
// Counters, as rates (GFLOP = GFLOP/s, GB = GB/s; useful work per call, the same for every variant):
//   GFLOP/s  flops: cosine similarity 2·B·M·D (+ normalisations); CODA per layer
//            2·B·f·D·(L + 2) (two [B, D] x [D, f] products for α and one [B, f] x [f, L·D] for the prompt).
//   GB/s     bytes (float32) that must move: query, keys, and for L2P/DualPrompt the gathered
//            prompts read once and written once (their selection is memory-bound: ~0.1 flop/byte);
//            for CODA the active P, K, A read once and the [B, L, D] prompt written once.
//            STAR per layer 4·B·C·K (two [B, K] x [K, C] products; softmax(a) ⊙ keys is cached at
//            evaluation); bytes: the cached [K, C] matrices and the chosen prompts read, the
//            [B, D] residual written, per layer.
// Run:  build/bin/bench_prompt_selection --benchmark_min_time=0.2
//       (benchmarks/compare_prompt_selection.sh puts it next to a PyTorch implementation.)
#include <benchmark/benchmark.h>

#include <functional>
#include <map>
#include <string>

#include "clprompt/core/memory.hpp"
#include "clprompt/core/threads.hpp"
#include "clprompt/selector/attention_decomposed.hpp"
#include "clprompt/selector/dualprompt.hpp"
#include "clprompt/selector/key_query_pool.hpp"
#include "clprompt/selector/prototype_keys.hpp"

namespace {

using namespace clprompt;

constexpr int64_t kTask = 4, kTasks = 10;

TaskContext eval_context() {
  return TaskContext::for_task(kTask, kTasks, std::vector<int64_t>(kTasks, 10), /*training=*/false);
}
BackboneDims dims_for(int64_t D) { return {D, 12, D / 64}; }

/// Runs begin_task for tasks 0..kTask so that the selector is in the state it has after task 4.
template <class S>
void enter_task(S& selector) {
  for (int64_t t = 0; t <= kTask; ++t)
    selector.begin_task(TaskContext::for_task(t, kTasks, std::vector<int64_t>(kTasks, 10), true));
}

struct Work {
  double flops = 0, bytes = 0;
};

void report(benchmark::State& state, const Work& w) {
  state.counters["GFLOP"] = benchmark::Counter(w.flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB"] = benchmark::Counter(w.bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

/// Cosine similarity of B queries to M keys of width D: normalise both (3 flops per element), then 2·B·M·D.
double cosine_flops(double B, double M, double D) { return 3 * B * D + 3 * M * D + 2 * B * M * D; }

// ---- L2P (KeyQueryPool) -------------------------------------------------------------------

Work l2p_work(const KeyQueryPool::Options& o, double B, double D) {
  const double M = o.pool_size, k = o.top_k, L = o.length;
  return {cosine_flops(B, M, D), 4 * (B * D + M * D + 2 * B * k * L * D)};
}

/// A straightforward port: per sample, cosine to every key, top-k, gather, stack.
Prompts l2p_naive(KeyQueryPool& s, const at::Tensor& q) {
  const auto& o = s.options();
  const auto& keys = s.pool->keys;
  const auto& prompts = s.pool->prompts;  // [M, L, D]
  std::vector<at::Tensor> rows;
  for (int64_t b = 0; b < q.size(0); ++b) {
    auto qb = q[b] / q[b].norm().clamp_min(1e-6);
    auto sim = at::mv(keys / keys.norm(2, {1}, true).clamp_min(1e-6), qb);
    auto idx = std::get<1>(at::topk(sim, o.top_k));
    rows.push_back(prompts.index_select(0, idx).reshape({-1, prompts.size(2)}));
  }
  Prompts p;
  p.input_tokens = at::stack(rows);
  p.readout = o.readout;
  return p;
}

// ---- DualPrompt -------------------------------------------------------------------------

Work dual_work(const DualPrompt::Options& o, double B, double D) {
  const double M = o.e_pool_size, k = o.top_k, L = o.e_length, layers = static_cast<double>(o.e_layers.size());
  const double kv = o.prefix_style == PrefixStyle::key_value ? 2 : 1;
  return {cosine_flops(B, M, D), 4 * (B * D + M * D + 2 * B * k * layers * kv * L * D)};
}

/// A straightforward port: per sample, cosine, top-1, its E-prompt for every E-layer; the
/// G-prompt repeated per sample; per layer the samples stacked.
Prompts dual_naive(DualPrompt& s, const at::Tensor& q) {
  const auto& o = s.options();
  const auto& keys = s.e_pool->keys;
  const auto& e = s.e_pool->prompts;  // [M, |e_layers|, 2, L, D] (key_value)
  const int64_t B = q.size(0);
  std::map<int64_t, std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>>> per_layer;
  for (int64_t b = 0; b < B; ++b) {
    auto qb = q[b] / q[b].norm().clamp_min(1e-6);
    auto sim = at::mv(keys / keys.norm(2, {1}, true).clamp_min(1e-6), qb);
    const int64_t idx = sim.argmax().item<int64_t>();
    for (std::size_t j = 0; j < o.e_layers.size(); ++j) {
      auto p = e[idx][static_cast<int64_t>(j)];  // [2, L, D]
      auto& slot = per_layer[o.e_layers[j]];
      slot.first.push_back(p[0]);
      slot.second.push_back(p[1]);
    }
    for (std::size_t j = 0; j < o.g_layers.size(); ++j) {
      auto g = s.g_prompt[static_cast<int64_t>(j)];
      auto& slot = per_layer[o.g_layers[j]];
      slot.first.push_back(g[0]);
      slot.second.push_back(g[1]);
    }
  }
  Prompts p;
  for (auto& [layer, kv] : per_layer) {
    if (kv.first.size() == static_cast<std::size_t>(B)) {
      p.add_prefix(layer, at::stack(kv.first), at::stack(kv.second));
    } else {  // E and G in one layer: per sample [E, G] along the tokens
      std::vector<at::Tensor> k, v;
      for (int64_t b = 0; b < B; ++b) {
        k.push_back(at::cat({kv.first[2 * b], kv.first[2 * b + 1]}));
        v.push_back(at::cat({kv.second[2 * b], kv.second[2 * b + 1]}));
      }
      p.add_prefix(layer, at::stack(k), at::stack(v));
    }
  }
  p.readout = Readout::class_token;
  return p;
}

// ---- CODA-Prompt (AttentionDecomposed) ---------------------------------------------------

Work coda_work(const AttentionDecomposed::Options& o, double B, double D) {
  const double f = static_cast<double>((kTask + 1) * o.components_per_task()), L = o.length;
  const double layers = static_cast<double>(o.layers.size());
  return {layers * 2 * B * f * D * (L + 2), layers * 4 * (f * L * D + 2 * f * D + B * D + B * L * D)};
}

/// A straightforward port of the reference's einsums, one sample at a time.
Prompts coda_naive(AttentionDecomposed& s, const at::Tensor& q) {
  const auto& o = s.options();
  const int64_t f = (kTask + 1) * o.components_per_task(), half = o.length / 2;
  Prompts p;
  for (std::size_t i = 0; i < o.layers.size(); ++i) {
    const auto slot = static_cast<int64_t>(i);
    auto K = s.keys(slot).narrow(0, 0, f), A = s.attention(slot).narrow(0, 0, f);
    auto P = s.components(slot).narrow(0, 0, f);
    std::vector<at::Tensor> keys, values;
    for (int64_t b = 0; b < q.size(0); ++b) {
      auto a = q[b].unsqueeze(0) * A;                                  // [f, D]
      a = a / a.norm(2, {1}, true).clamp_min(1e-12);
      auto alpha = (a * (K / K.norm(2, {1}, true).clamp_min(1e-12))).sum(1);  // [f]
      auto prompt = (alpha.view({f, 1, 1}) * P).sum(0);                // [L, D]
      keys.push_back(prompt.narrow(0, 0, half));
      values.push_back(prompt.narrow(0, half, half));
    }
    p.add_prefix(o.layers[i], at::stack(keys), at::stack(values));
  }
  return p;
}

/// The reference's einsums batched: q ⊙ A materialised as [B, f, D].
Prompts coda_einsum(AttentionDecomposed& s, const at::Tensor& q) {
  const auto& o = s.options();
  const int64_t f = (kTask + 1) * o.components_per_task(), half = o.length / 2;
  Prompts p;
  for (std::size_t i = 0; i < o.layers.size(); ++i) {
    const auto slot = static_cast<int64_t>(i);
    auto K = s.keys(slot).narrow(0, 0, f), A = s.attention(slot).narrow(0, 0, f);
    auto P = s.components(slot).narrow(0, 0, f);
    auto a = at::einsum("bd,kd->bkd", {q, A});
    a = a / a.norm(2, {2}, true).clamp_min(1e-12);
    auto alpha = at::einsum("bkd,kd->bk", {a, K / K.norm(2, {1}, true).clamp_min(1e-12)});
    auto prompt = at::einsum("bk,kld->bld", {alpha, P});
    p.add_prefix(o.layers[i], prompt.narrow(1, 0, half), prompt.narrow(1, half, half));
  }
  return p;
}

// ---- STAR-Prompt (PrototypeKeys) ---------------------------------------------------------

constexpr int64_t kClipDim = 512;

/// Fixed random unit keys, matched against a [B, 512] query (a stand-in for CLIP).
struct RandomKeys : torch::nn::Module {
  static constexpr clprompt::QuerySource query_source = clprompt::QuerySource::own;
  int64_t key_dim() const { return kClipDim; }
  void begin_task(const TaskContext&) {}
  at::Tensor prototypes(const TaskContext& ctx, const FeatureStream&) {
    auto k = at::randn({ctx.task_classes(), kClipDim});
    return k / k.norm(2, {1}, true);
  }
  std::string description() const { return "random keys"; }
  at::Tensor query(const at::Tensor& images) { return images; }
};
using StarSelector = PrototypeKeys<RandomKeys>;

Work star_work(double B, double D) {
  const double C = (kTask + 1) * 10, K = kClipDim, layers = 12;
  return {layers * 4 * B * C * K, layers * 4 * (2 * C * K + 2 * B * D) + 4 * B * K};
}

/// The reference's computation batched (second_stage_model.py compute_maps): q ⊙ softmax(a)
/// materialised as [B, C, K], normalised, dotted with the keys; then the arg-max's w · p.
Prompts star_einsum(StarSelector& s, const at::Tensor& q) {
  const auto ctx = eval_context();
  const auto keys = s.keys(ctx);
  auto params = s.named_parameters();
  Prompts p;
  for (int64_t l = 0; l < 12; ++l) {
    std::vector<at::Tensor> P, A;
    for (int64_t t = 0; t <= kTask; ++t) {
      P.push_back(params[fmt::format("p_{}", t)][l]);
      A.push_back(params[fmt::format("a_{}", t)][l]);
    }
    auto qa = at::einsum("bk,ck->bck", {q, at::cat(A).softmax(1)});
    qa = qa / qa.norm(2, {2}, true).clamp_min(1e-12);
    auto w = 5.0 * at::einsum("bck,ck->bc", {qa, keys});
    auto [value, index] = w.max(1);
    p.add_value_residual(l, value.unsqueeze(1) * at::cat(P).index_select(0, index));
  }
  return p;
}

// ---- the benchmark loop -------------------------------------------------------------------

/// The naive variants must compute what select() does (checked once before timing).
bool same(const Prompts& a, const Prompts& b) {
  auto close = [](const at::Tensor& x, const at::Tensor& y) {
    if (x.defined() != y.defined()) return false;
    return !x.defined() || (x.sizes() == y.sizes() && at::allclose(x, y, 1e-4, 1e-5));
  };
  if (!close(a.input_tokens, b.input_tokens) || a.layers.size() != b.layers.size() || a.readout != b.readout)
    return false;
  for (std::size_t i = 0; i < a.layers.size(); ++i)
    if (!close(a.layers[i].key_prefix, b.layers[i].key_prefix) ||
        !close(a.layers[i].value_prefix, b.layers[i].value_prefix) ||
        !close(a.layers[i].value_residual, b.layers[i].value_residual))
      return false;
  return true;
}

template <class S>
void run(benchmark::State& state, const std::function<Work(const typename S::Options&, double, double)>& work,
         const std::function<Prompts(S&, const at::Tensor&)>& variant) {
  configure_threads();
  keep_freed_memory();
  at::manual_seed(0);
  const int64_t B = state.range(0), D = state.range(1);
  typename S::Options options{};
  S selector(options, dims_for(D));
  enter_task(selector);
  selector.eval();
  auto q = at::randn({B, D});
  const auto ctx = eval_context();
  at::NoGradGuard no_grad;
  if (variant && !same(variant(selector, q), selector.select(q, ctx).prompts)) {
    state.SkipWithError("the variant's prompts differ from select()'s");
    return;
  }
  for (auto _ : state) {
    if (variant) {
      benchmark::DoNotOptimize(variant(selector, q));
    } else {
      benchmark::DoNotOptimize(selector.select(q, ctx));
    }
  }
  report(state, work(options, static_cast<double>(B), static_cast<double>(D)));
  state.counters["threads"] = at::get_num_threads();
}

void run_star(benchmark::State& state, bool einsum) {
  configure_threads();
  keep_freed_memory();
  at::manual_seed(0);
  const int64_t B = state.range(0), D = state.range(1);
  StarSelector selector({}, dims_for(D), std::make_shared<RandomKeys>());
  for (int64_t t = 0; t <= kTask; ++t) {
    const auto ctx = TaskContext::for_task(t, kTasks, std::vector<int64_t>(kTasks, 10), true);
    selector.begin_task(ctx);
    selector.prepare_task(ctx, [](const FeatureVisitor&) {});
    selector.end_task(ctx);
  }
  auto q = at::randn({B, kClipDim});
  const auto ctx = eval_context();
  at::NoGradGuard no_grad;
  if (einsum && !same(star_einsum(selector, q), selector.select(q, ctx).prompts)) {
    state.SkipWithError("the einsum variant's residuals differ from select()'s");
    return;
  }
  for (auto _ : state) {
    if (einsum) benchmark::DoNotOptimize(star_einsum(selector, q));
    else benchmark::DoNotOptimize(selector.select(q, ctx));
  }
  report(state, star_work(static_cast<double>(B), static_cast<double>(D)));
  state.counters["threads"] = at::get_num_threads();
}

void register_all() {
  const std::vector<std::vector<int64_t>> sizes{{1, 8, 32, 128, 256}, {192, 768}};
  auto add = [&](const std::string& name, auto fn) {
    benchmark::RegisterBenchmark(name.c_str(), fn)->ArgsProduct(sizes)->ArgNames({"B", "D"})->UseRealTime()->Unit(
        benchmark::kMicrosecond);
  };
  add("l2p/impl", [](benchmark::State& st) { run<KeyQueryPool>(st, l2p_work, {}); });
  add("l2p/naive", [](benchmark::State& st) { run<KeyQueryPool>(st, l2p_work, l2p_naive); });
  add("dual/impl", [](benchmark::State& st) { run<DualPrompt>(st, dual_work, {}); });
  add("dual/naive", [](benchmark::State& st) { run<DualPrompt>(st, dual_work, dual_naive); });
  add("coda/impl", [](benchmark::State& st) { run<AttentionDecomposed>(st, coda_work, {}); });
  add("coda/einsum", [](benchmark::State& st) { run<AttentionDecomposed>(st, coda_work, coda_einsum); });
  add("coda/naive", [](benchmark::State& st) { run<AttentionDecomposed>(st, coda_work, coda_naive); });
  add("star/impl", [](benchmark::State& st) { run_star(st, false); });
  add("star/einsum", [](benchmark::State& st) { run_star(st, true); });
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
