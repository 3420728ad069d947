// Compiled part of include/clprompt/stats/class_statistics.hpp: the covariance factor (Eigen).
#include "clprompt/stats/class_statistics.hpp"

#include <Eigen/Eigenvalues>

namespace clprompt::detail {

at::Tensor symmetric_psd_factor(const at::Tensor& sigma) {
  using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const auto dim = sigma.size(0);
  const auto s_cpu = sigma.to(at::kCPU, at::kDouble).contiguous();
  const Eigen::Map<const Matrix> s(s_cpu.data_ptr<double>(), dim, dim);
  Eigen::SelfAdjointEigenSolver<Matrix> eig(s);
  if (eig.info() != Eigen::Success) return {};
  auto factor = at::empty({dim, dim}, at::kDouble);
  Eigen::Map<Matrix>(factor.data_ptr<double>(), dim, dim) =
      eig.eigenvectors() * eig.eigenvalues().cwiseMax(0.0).cwiseSqrt().asDiagonal();
  return factor;
}

}  // namespace clprompt::detail
