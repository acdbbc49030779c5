#include "experiments/lib/dense_linalg.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace gradus::experiments {

Matrix transpose(const Matrix& m) {
  Matrix t(m.cols, m.rows);
  for (int64_t i = 0; i < m.rows; ++i)
    for (int64_t j = 0; j < m.cols; ++j) t(j, i) = m(i, j);
  return t;
}

Matrix matmul(const Matrix& x, const Matrix& y) {
  GRADUS_CHECK(x.cols == y.rows, "matmul", "inner sizes differ: {} x {} and {} x {}", x.rows,
               x.cols, y.rows, y.cols);
  Matrix z(x.rows, y.cols);
  for (int64_t i = 0; i < x.rows; ++i)
    for (int64_t k = 0; k < x.cols; ++k)
      for (int64_t j = 0; j < y.cols; ++j) z(i, j) += x(i, k) * y(k, j);
  return z;
}

std::vector<double> symmetric_eigenvalues(Matrix s) {
  const int64_t n = s.rows;
  GRADUS_CHECK(n == s.cols, "symmetric_eigenvalues", "expected a square matrix, found {} x {}",
               s.rows, s.cols);
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0, total = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        total += s(i, j) * s(i, j);
        if (i != j) off += s(i, j) * s(i, j);
      }
    if (off <= 1e-30 * total || off == 0) break;
    for (int64_t p = 0; p < n; ++p)
      for (int64_t q = p + 1; q < n; ++q) {
        if (s(p, q) == 0) continue;
        // The rotation that zeroes s(p, q) (Golub & Van Loan, symmetric Schur decomposition).
        const double tau = (s(q, q) - s(p, p)) / (2 * s(p, q));
        const double t = (tau >= 0 ? 1 : -1) / (std::fabs(tau) + std::sqrt(1 + tau * tau));
        const double c = 1 / std::sqrt(1 + t * t), sn = t * c;
        for (int64_t k = 0; k < n; ++k) {
          const double a = s(k, p), b = s(k, q);
          s(k, p) = c * a - sn * b;
          s(k, q) = sn * a + c * b;
        }
        for (int64_t k = 0; k < n; ++k) {
          const double a = s(p, k), b = s(q, k);
          s(p, k) = c * a - sn * b;
          s(q, k) = sn * a + c * b;
        }
      }
  }
  std::vector<double> ev(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ev[static_cast<size_t>(i)] = s(i, i);
  return ev;
}

double spectral_norm(const Matrix& m) {
  // The smaller Gram matrix has the same non-zero eigenvalues.
  Matrix g = m.rows < m.cols ? matmul(m, transpose(m)) : matmul(transpose(m), m);
  std::vector<double> ev = symmetric_eigenvalues(g);
  return std::sqrt(std::max(0.0, *std::max_element(ev.begin(), ev.end())));
}

double power_iteration_norm(const Matrix& m, std::mt19937_64& rng, int iterations) {
  std::normal_distribution<double> normal;
  std::vector<double> v(static_cast<size_t>(m.cols));
  for (double& x : v) x = normal(rng);
  double sigma = 0;
  for (int it = 0; it < iterations; ++it) {
    const double nv = norm2(v);
    if (nv == 0) return 0;
    for (double& x : v) x /= nv;
    std::vector<double> u(static_cast<size_t>(m.rows), 0.0);
    for (int64_t i = 0; i < m.rows; ++i)
      for (int64_t j = 0; j < m.cols; ++j)
        u[static_cast<size_t>(i)] += m(i, j) * v[static_cast<size_t>(j)];
    sigma = norm2(u);  // ||A v|| with ||v|| = 1: never above ||A||
    std::vector<double> w(static_cast<size_t>(m.cols), 0.0);
    for (int64_t i = 0; i < m.rows; ++i)
      for (int64_t j = 0; j < m.cols; ++j)
        w[static_cast<size_t>(j)] += m(i, j) * u[static_cast<size_t>(i)];
    v = w;
  }
  return sigma;
}

std::vector<double> least_squares(Matrix a, std::vector<double> b) {
  const int64_t n = a.rows, k = a.cols;
  GRADUS_CHECK(n >= k && static_cast<int64_t>(b.size()) == n, "least_squares",
               "expected A (n x k) with n >= k and b (n), found {} x {} and {}", n, k, b.size());
  for (int64_t j = 0; j < k; ++j) {
    // Householder reflection zeroing column j below the diagonal, applied to A and b.
    double norm = 0;
    for (int64_t i = j; i < n; ++i) norm += a(i, j) * a(i, j);
    norm = std::sqrt(norm);
    if (norm == 0) continue;
    const double alpha = a(j, j) > 0 ? -norm : norm;
    std::vector<double> v(static_cast<size_t>(n - j));
    for (int64_t i = j; i < n; ++i) v[static_cast<size_t>(i - j)] = a(i, j);
    v[0] -= alpha;
    double vv = 0;
    for (double x : v) vv += x * x;
    if (vv == 0) continue;
    for (int64_t c = j; c < k; ++c) {
      double dot = 0;
      for (int64_t i = j; i < n; ++i) dot += v[static_cast<size_t>(i - j)] * a(i, c);
      const double f = 2 * dot / vv;
      for (int64_t i = j; i < n; ++i) a(i, c) -= f * v[static_cast<size_t>(i - j)];
    }
    double dot = 0;
    for (int64_t i = j; i < n; ++i)
      dot += v[static_cast<size_t>(i - j)] * b[static_cast<size_t>(i)];
    const double f = 2 * dot / vv;
    for (int64_t i = j; i < n; ++i) b[static_cast<size_t>(i)] -= f * v[static_cast<size_t>(i - j)];
  }
  std::vector<double> w(static_cast<size_t>(k), 0.0);
  for (int64_t j = k - 1; j >= 0; --j) {
    double r = b[static_cast<size_t>(j)];
    for (int64_t c = j + 1; c < k; ++c) r -= a(j, c) * w[static_cast<size_t>(c)];
    w[static_cast<size_t>(j)] = a(j, j) != 0 ? r / a(j, j) : 0.0;
  }
  return w;
}

double norm2(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

}  // namespace gradus::experiments
