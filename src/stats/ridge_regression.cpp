// Compiled part of include/clprompt/stats/ridge_regression.hpp: the in-place solve (Eigen's LLT).
#include "clprompt/stats/ridge_regression.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Core>

namespace clprompt {

at::Tensor solve_ridge_system(const at::Tensor& gram, const at::Tensor& rhs, double lambda, at::Tensor& work) {
  const int64_t m = gram.size(0);
  if (gram.dim() != 2 || gram.size(1) != m || rhs.dim() != 2 || rhs.size(0) != m)
    throw ShapeError(fmt::format("ridge solve expects G [M, M] and B [M, K], got {} and {}", gram.sizes(), rhs.sizes()));
  const auto g = gram.to(at::kDouble), b = rhs.to(gram.device(), at::kDouble);
  if (!g.is_cpu()) {
    auto a = g.clone();
    a.diagonal().add_(lambda);
    auto [factor, info] = at::linalg_cholesky_ex(a);
    if (info.item<int64_t>() == 0) return at::cholesky_solve(b, factor);
    a = g.clone();
    a.diagonal().add_(lambda);
    return at::linalg_solve(a, b);
  }
  if (!work.defined() || work.sizes() != g.sizes() || work.scalar_type() != at::kDouble || !work.is_cpu())
    work = at::empty({m, m}, g.options());
  work.copy_(g);
  work.diagonal().add_(lambda);
  // Symmetric: the row-major buffer read column-major is the same matrix. LLT reads the lower half.
  Eigen::Map<Eigen::MatrixXd> a(work.data_ptr<double>(), m, m);
  Eigen::LLT<Eigen::Ref<Eigen::MatrixXd>> llt(a);  // factorised in place
  // The solution in column-major [M, K] = a row-major [K, M] tensor.
  auto solution = b.t().contiguous();
  if (llt.info() == Eigen::Success) {
    Eigen::Map<Eigen::MatrixXd> x(solution.data_ptr<double>(), m, b.size(1));
    llt.solveInPlace(x);
    return solution.t();
  }
  work.copy_(g);
  work.diagonal().add_(lambda);
  return at::linalg_solve(work, b);
}

}  // namespace clprompt
