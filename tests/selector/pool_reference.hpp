#pragma once
// Direct, loop-by-loop computations of key-query selection, used as the reference in the
// selector tests (deliberately no tensor ops beyond element access).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <numeric>
#include <vector>

#include <ATen/ATen.h>

namespace clprompt::test {

/// cos(q_b, k_m) in double: [B][M].
inline std::vector<std::vector<double>> direct_cosine(const at::Tensor& query, const at::Tensor& keys) {
  auto q = query.to(at::kDouble).contiguous();
  auto k = keys.detach().to(at::kDouble).contiguous();
  const int64_t B = q.size(0), M = k.size(0), D = q.size(1);
  auto qa = q.accessor<double, 2>();
  auto ka = k.accessor<double, 2>();
  std::vector<std::vector<double>> sim(static_cast<std::size_t>(B), std::vector<double>(static_cast<std::size_t>(M)));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t m = 0; m < M; ++m) {
      double dot = 0, nq = 0, nk = 0;
      for (int64_t d = 0; d < D; ++d) {
        dot += qa[b][d] * ka[m][d];
        nq += qa[b][d] * qa[b][d];
        nk += ka[m][d] * ka[m][d];
      }
      sim[b][m] = dot / std::sqrt(std::max(nq, 1e-12)) / std::sqrt(std::max(nk, 1e-12));
    }
  return sim;
}

/// Per sample, the k most similar keys, most similar first.
inline std::vector<std::vector<int64_t>> direct_top_k(const std::vector<std::vector<double>>& sim, int64_t k) {
  std::vector<std::vector<int64_t>> out;
  for (const auto& row : sim) {
    std::vector<int64_t> order(row.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return row[a] > row[b]; });
    order.resize(static_cast<std::size_t>(k));
    out.push_back(order);
  }
  return out;
}

/// The k ids most often in `per_sample`, by a counting map; ties go to the lower id.
inline std::vector<int64_t> direct_batchwise(const std::vector<std::vector<int64_t>>& per_sample, int64_t k) {
  std::map<int64_t, int64_t> counts;
  for (const auto& row : per_sample)
    for (auto id : row) ++counts[id];
  std::vector<std::pair<int64_t, int64_t>> entries(counts.begin(), counts.end());  // ascending id
  std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::vector<int64_t> out;
  for (int64_t i = 0; i < k; ++i) out.push_back(entries[static_cast<std::size_t>(i)].first);
  return out;
}

/// mean_b sum_j (1 - cos(q_b, k_{idx[b][j]})).
inline double direct_pull(const std::vector<std::vector<double>>& sim, const std::vector<std::vector<int64_t>>& idx) {
  double total = 0;
  for (std::size_t b = 0; b < sim.size(); ++b)
    for (auto id : idx[b]) total += 1.0 - sim[b][static_cast<std::size_t>(id)];
  return total / static_cast<double>(sim.size());
}

/// GT-RIPL/CODA-Prompt's L2P++ key loss, models/zoo.py:265-267, `(1.0 - cos_sim[:, k_idx]).sum()`
/// written out: for each consecutive chunk of `chunk` samples (0: the whole batch; one chunk per
/// DataParallel replica), sum over queries i of the chunk, samples j of the chunk and their
/// selected keys idx[j][m] of 1 - cos(q_i, k_{idx[j][m]}); the chunks' sums added.
inline double direct_all_pairs_pull(const std::vector<std::vector<double>>& sim,
                                    const std::vector<std::vector<int64_t>>& idx, std::size_t chunk) {
  const std::size_t B = sim.size(), step = chunk > 0 ? chunk : B;
  double total = 0;
  for (std::size_t begin = 0; begin < B; begin += step) {
    const std::size_t end = std::min(B, begin + step);
    for (std::size_t i = begin; i < end; ++i)
      for (std::size_t j = begin; j < end; ++j)
        for (auto id : idx[j]) total += 1.0 - sim[i][static_cast<std::size_t>(id)];
  }
  return total;
}

/// l2p-pytorch / dualprompt-pytorch engine.py:183-225 (shared_prompt_pool / shared_prompt_key)
/// written out: `x[cur] = x[prev]` with prev = [(t-1) k, t k), cur = [t k, (t+1) k) along `dim`,
/// element by element on a copy of `before`.
inline at::Tensor direct_shared_copy(const at::Tensor& before, int64_t task, int64_t k, int64_t dim) {
  auto x = before.detach().transpose(0, dim).to(at::kDouble).contiguous();
  const int64_t R = x.size(0);
  auto flat = x.view({R, -1});
  auto out = flat.clone();
  auto xa = flat.accessor<double, 2>();
  auto oa = out.accessor<double, 2>();
  for (int64_t r = 0; r < R; ++r)
    for (int64_t e = 0; e < flat.size(1); ++e)
      oa[r][e] = (task > 0 && r >= task * k && r < (task + 1) * k) ? xa[r - k][e] : xa[r][e];
  return out.view(x.sizes()).transpose(0, dim).to(before.scalar_type());
}

inline std::vector<std::vector<int64_t>> to_rows(const at::Tensor& indices) {
  auto t = indices.to(at::kLong).contiguous();
  std::vector<std::vector<int64_t>> out;
  for (int64_t b = 0; b < t.size(0); ++b) {
    std::vector<int64_t> row;
    for (int64_t j = 0; j < t.size(1); ++j) row.push_back(t[b][j].item<int64_t>());
    out.push_back(row);
  }
  return out;
}

}  // namespace clprompt::test
