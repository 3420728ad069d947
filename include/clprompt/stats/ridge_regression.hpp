#pragma once
// Ridge regression from sufficient statistics, as RanPAC's classifier (McDonnell et al.,
// NeurIPS'23; RanPAC/RanPAC RanPAC.py `replace_fc`, `optimise_ridge_parameter`):
//   G = Σ h hᵀ [M, M],  C = Σ h yᵀ [M, classes]   (y one-hot), accumulated in double over every task,
//   W = ((G + λ I)⁻¹ C)ᵀ [classes, M],            logits = h Wᵀ.
// Only G and C are kept, so the solution after task t equals one fit on all tasks' data at once.
// λ is chosen per task as the reference does: on the task's rows (shuffled), fit on the first 80 %
// and pick the λ of 10^-8 .. 10^8 with the least mean squared error on the other 20 %.
//
// Storage and solve (M = 10 000: G alone is 800 MB): G and C are buffers in double on the model's
// device (so checkpoints carry them). On the CPU the system is solved in place: G + λI is written
// once into a work matrix that Eigen's Cholesky factorises where it lies (no further M × M copy), LU
// (at::linalg_solve, as the reference) when that factorisation fails; on a GPU with cuSOLVER
// (at::linalg_cholesky_ex / cholesky_solve, LU as fallback). The λ search never forms an M × M
// system: it diagonalises the smaller of the fit rows' Gram matrices (M × M or N_fit × N_fit, the
// latter through the identity (HᵀH + λI)⁻¹Hᵀ = Hᵀ(HHᵀ + λI)⁻¹) once, after which each λ costs one
// product: the same 17 candidates and criterion as the reference's 17 solves, up to rounding.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "clprompt/core/error.hpp"
#include "clprompt/core/options.hpp"

namespace clprompt {

struct RidgeOptions {
  /// Candidate λ (RanPAC.py:120: 10.0 ** np.arange(-8, 9)).
  std::vector<double> lambdas = {1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0,
                                 1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8};
  double fit_fraction = 0.8;  ///< rows that fit each candidate; the rest score it (RanPAC.py:121)

  static constexpr auto fields() {
    return std::tuple{field("lambdas", &RidgeOptions::lambdas), field("fit_fraction", &RidgeOptions::fit_fraction)};
  }
  void validate(const std::string& path) const {
    require_option(!lambdas.empty(), path, "lambdas", "needs at least one candidate");
    for (std::size_t i = 0; i < lambdas.size(); ++i)
      require_option(lambdas[i] > 0 && std::isfinite(lambdas[i]), path, fmt::format("lambdas[{}]", i),
                     fmt::format("must be positive and finite, got {}", lambdas[i]));
    require_option(fit_fraction > 0 && fit_fraction < 1, path, "fit_fraction",
                   fmt::format("must be in (0, 1), got {}", fit_fraction));
  }
};

/// The chosen λ and the validation error of every candidate (in RidgeOptions::lambdas order).
struct RidgeSelection {
  double lambda = 0;
  std::vector<double> errors;
};

namespace detail {
inline void check_ridge_rows(const at::Tensor& h, const at::Tensor& y, const char* what) {
  if (h.dim() != 2 || y.dim() != 2 || h.size(0) != y.size(0))
    throw ShapeError(fmt::format("{} expects features [N, M] and targets [N, classes], got {} and {}", what, h.sizes(),
                                 y.sizes()));
}
}  // namespace detail

/// (G + λI)⁻¹ B for a symmetric positive semi-definite G [M, M] and B [M, K], in double, on G's
/// device. On the CPU `work` (an M × M double tensor, allocated if undefined) receives G + λI and
/// is overwritten by its Cholesky factor; pass the same one for several λ to allocate it once.
/// Compiled in the library (Eigen stays out of this header).
at::Tensor solve_ridge_system(const at::Tensor& gram, const at::Tensor& rhs, double lambda, at::Tensor& work);
inline at::Tensor solve_ridge_system(const at::Tensor& gram, const at::Tensor& rhs, double lambda) {
  at::Tensor work;
  return solve_ridge_system(gram, rhs, lambda, work);
}

/// RanPAC's λ: for each candidate, W fit on the first ⌊fit_fraction·N⌋ rows of (h, y) and the mean
/// squared error of h Wᵀ against y on the remaining rows; the λ of least error (the first on ties).
/// h [N, M], y [N, classes] (one-hot), any float type, on any device; computed in double.
inline RidgeSelection select_ridge_lambda(const at::Tensor& h, const at::Tensor& y, const RidgeOptions& options) {
  detail::check_ridge_rows(h, y, "select_ridge_lambda");
  options.validate("ridge");
  const int64_t n = h.size(0), m = h.size(1);
  const auto fit_rows = static_cast<int64_t>(static_cast<double>(n) * options.fit_fraction);
  if (fit_rows < 1 || fit_rows >= n)
    throw ShapeError(fmt::format("select_ridge_lambda needs rows on both sides of the {} split, got {} rows",
                                 options.fit_fraction, n));
  const auto hd = h.to(at::kDouble), yd = y.to(h.device(), at::kDouble);
  const auto h_fit = hd.narrow(0, 0, fit_rows), h_val = hd.narrow(0, fit_rows, n - fit_rows);
  const auto y_fit = yd.narrow(0, 0, fit_rows), y_val = yd.narrow(0, fit_rows, n - fit_rows);
  // prediction(λ) = A · diag(1 / (s + λ)) · B with the eigenpairs (s, V) of the smaller Gram matrix.
  at::Tensor a, b, s;
  if (m <= fit_rows) {  // primal: G_fit = H_fitᵀ H_fit = V S Vᵀ, W = (G_fit + λI)⁻¹ H_fitᵀ Y_fit
    auto [values, vectors] = at::linalg_eigh(at::matmul(h_fit.t(), h_fit));
    s = values;
    a = at::matmul(h_val, vectors);
    b = at::matmul(vectors.t(), at::matmul(h_fit.t(), y_fit));
  } else {  // dual: K = H_fit H_fitᵀ = U S Uᵀ, prediction = H_val H_fitᵀ (K + λI)⁻¹ Y_fit
    auto [values, vectors] = at::linalg_eigh(at::matmul(h_fit, h_fit.t()));
    s = values;
    a = at::matmul(at::matmul(h_val, h_fit.t()), vectors);
    b = at::matmul(vectors.t(), y_fit);
  }
  s = s.clamp_min(0);  // a Gram matrix is positive semi-definite; eigh's rounding can dip below 0
  RidgeSelection out;
  double best = std::numeric_limits<double>::infinity();
  for (double lambda : options.lambdas) {
    const auto prediction = at::matmul(a * (1.0 / (s + lambda)).unsqueeze(0), b);
    const double error = (prediction - y_val).pow(2).mean().item<double>();
    out.errors.push_back(error);
    if (error < best) {
      best = error;
      out.lambda = lambda;
    }
  }
  return out;
}

/// G and C of every task so far, and the ridge solution. Per-task blocks of C (buffers
/// "moments_t" [M, classes of t]) so that a checkpoint written after any task loads by name into a
/// model replayed with begin_task.
class RidgeRegression : public torch::nn::Module {
 public:
  explicit RidgeRegression(int64_t dim) : dim_(dim) {
    gram_ = register_buffer("gram", at::zeros({dim, dim}, at::kDouble));
  }

  /// Zero-filled blocks of C for the classes of every task in `task_class_ends` (each task's
  /// class_end), on G's device; idempotent.
  void grow(const std::vector<int64_t>& task_class_ends) {
    while (moments_.size() < task_class_ends.size()) {
      const auto t = moments_.size();
      const int64_t classes = task_class_ends[t] - (t == 0 ? 0 : task_class_ends[t - 1]);
      moments_.push_back(register_buffer(fmt::format("moments_{}", t), at::zeros({dim_, classes}, gram_.options())));
    }
  }

  /// G += hᵀh, C += hᵀ onehot(labels) for rows h [N, M] with labels [N] in [0, classes()).
  void accumulate(const at::Tensor& h, const at::Tensor& labels) {
    if (h.dim() != 2 || h.size(1) != dim_ || labels.dim() != 1 || labels.size(0) != h.size(0))
      throw ShapeError(fmt::format("RidgeRegression::accumulate expects features [N, {}] and labels [N], got {} and {}",
                                   dim_, h.sizes(), labels.sizes()));
    at::NoGradGuard no_grad;
    const auto hd = h.to(gram_.device(), at::kDouble);
    gram_.add_(at::matmul(hd.t(), hd));
    const auto y = one_hot(labels.to(gram_.device()), classes());
    const auto c = at::matmul(hd.t(), y);
    int64_t begin = 0;
    for (auto& block : moments_) {
      block.add_(c.narrow(1, begin, block.size(1)));
      begin += block.size(1);
    }
  }

  /// W [classes(), M] in double: ((G + λI)⁻¹ C)ᵀ.
  at::Tensor solve(double lambda) const { return solve_ridge_system(gram_, moments(), lambda).t(); }

  int64_t dim() const { return dim_; }
  int64_t classes() const {
    int64_t n = 0;
    for (const auto& block : moments_) n += block.size(1);
    return n;
  }
  const at::Tensor& gram() const { return gram_; }
  at::Tensor moments() const { return moments_.size() == 1 ? moments_.front() : at::cat(moments_, 1); }

  /// [N, classes] double one-hot of labels in [0, classes).
  static at::Tensor one_hot(const at::Tensor& labels, int64_t classes) {
    if (labels.numel() > 0 && (labels.min().item<int64_t>() < 0 || labels.max().item<int64_t>() >= classes))
      throw ShapeError(fmt::format("labels span [{}, {}] outside the {} classes of the regression",
                                   labels.min().item<int64_t>(), labels.max().item<int64_t>(), classes));
    auto y = at::zeros({labels.size(0), classes}, labels.options().dtype(at::kDouble));
    return y.scatter_(1, labels.to(at::kLong).unsqueeze(1), 1.0);
  }

 private:
  int64_t dim_;
  at::Tensor gram_;
  std::vector<at::Tensor> moments_;
};

}  // namespace clprompt
