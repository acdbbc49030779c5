// Small dense linear algebra in f64 for the theory checks (matrices of a few hundred entries):
// row-major matrices, the spectral norm (exactly, by Jacobi eigenvalues of A^T A, and by power
// iteration as a Jacobian-norm estimate), least squares by Householder QR.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace gradus::experiments {

struct Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<double> a;  // row-major
  Matrix() = default;
  Matrix(int64_t r, int64_t c, double fill = 0.0)
      : rows(r), cols(c), a(static_cast<size_t>(r * c), fill) {}
  double& operator()(int64_t i, int64_t j) { return a[static_cast<size_t>(i * cols + j)]; }
  double operator()(int64_t i, int64_t j) const { return a[static_cast<size_t>(i * cols + j)]; }
};

Matrix transpose(const Matrix& m);
Matrix matmul(const Matrix& x, const Matrix& y);
// Every eigenvalue of a symmetric matrix (cyclic Jacobi rotations to 1e-15 off-diagonal).
std::vector<double> symmetric_eigenvalues(Matrix s);
// ||A||_2 = sqrt(lambda_max(A^T A)), from the eigenvalues: exact to rounding.
double spectral_norm(const Matrix& m);
// ||A||_2 by `iterations` of power iteration on A^T A from a random start: a lower estimate that
// converges to it (how a Jacobian norm is estimated from products alone).
double power_iteration_norm(const Matrix& m, std::mt19937_64& rng, int iterations = 200);
// argmin_w ||A w - b||_2 by Householder QR (A: n x k with n >= k, full column rank).
std::vector<double> least_squares(Matrix a, std::vector<double> b);
double norm2(const std::vector<double>& v);

}  // namespace gradus::experiments
