// CPU optimiser kernels (see kernels/optim.h for the conventions and formulas).
#include "kernels/optim.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/registry.h"

namespace gradus::kernels::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;

// torch.lerp's formula: two branches keep the result exact at weight 0 and 1 and match PyTorch's
// rounding.
template <class T>
inline T lerp(T start, T end, T weight) {
  return weight < T(0.5) ? start + weight * (end - start) : end - (end - start) * (T(1) - weight);
}

template <class T>
void sgd_step(void* param_, const void* grad_, void* buf_, int64_t n, const SgdStepParams& p) {
  T* param = static_cast<T*>(param_);
  const T* grad = static_cast<const T*>(grad_);
  T* buf = static_cast<T*>(buf_);
  const T lr = static_cast<T>(p.lr), wd = static_cast<T>(p.weight_decay);
  const T momentum = static_cast<T>(p.momentum);
  const T keep = static_cast<T>(1.0 - p.dampening);
  const bool use_wd = p.weight_decay != 0.0, use_momentum = p.momentum != 0.0;
  const bool first = p.first, nesterov = p.nesterov;
#pragma omp parallel for simd if (n > kParallelMin) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    T g = grad[i];
    if (use_wd) g = g + wd * param[i];
    if (use_momentum) {
      const T b = first ? g : momentum * buf[i] + keep * g;
      buf[i] = b;
      g = nesterov ? g + momentum * b : b;
    }
    param[i] = param[i] - lr * g;
  }
}

template <class T>
void adam_step(void* param_, const void* grad_, void* exp_avg_, void* exp_avg_sq_, int64_t n,
               const AdamStepParams& p) {
  T* param = static_cast<T*>(param_);
  const T* grad = static_cast<const T*>(grad_);
  T* m = static_cast<T*>(exp_avg_);
  T* v = static_cast<T*>(exp_avg_sq_);
  const bool decoupled = p.decoupled_weight_decay && p.weight_decay != 0.0;
  const bool l2 = !p.decoupled_weight_decay && p.weight_decay != 0.0;
  const T decay = static_cast<T>(1.0 - p.lr * p.weight_decay);  // AdamW's shrink factor
  const T wd = static_cast<T>(p.weight_decay);
  const T w1 = static_cast<T>(1.0 - p.beta1);
  const T beta2 = static_cast<T>(p.beta2), w2 = static_cast<T>(1.0 - p.beta2);
  const T eps = static_cast<T>(p.eps);
  const T step_size = static_cast<T>(p.step_size);
  const T bc2_sqrt = static_cast<T>(p.bias_correction2_sqrt);
#pragma omp parallel for simd if (n > kParallelMin) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    T x = param[i];
    T g = grad[i];
    if (decoupled) x = x * decay;
    if (l2) g = g + wd * x;
    const T mi = lerp(m[i], g, w1);
    const T vi = beta2 * v[i] + w2 * (g * g);
    m[i] = mi;
    v[i] = vi;
    const T denom = std::sqrt(vi) / bc2_sqrt + eps;
    param[i] = x - step_size * (mi / denom);
  }
}

// sum |x|^p over one block, with 8 interleaved double accumulators combined pairwise (vectorisable,
// and its order depends on n only).
template <class T, class F>
double block_sum(const T* x, int64_t n, F term) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += term(static_cast<double>(x[i + k]));
  for (int k = 0; i < n; ++i, ++k) acc[k] += term(static_cast<double>(x[i]));
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

template <class T>
double block_max_abs(const T* x, int64_t n) {
  double best = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double a = std::abs(static_cast<double>(x[i]));
    if (a != a) return a;  // NaN wins
    best = std::max(best, a);
  }
  return best;
}

template <class T>
double norm_pow_block(const T* x, int64_t n, double p) {
  if (std::isinf(p)) return block_max_abs(x, n);
  if (p == 2.0) return block_sum(x, n, [](double v) { return v * v; });
  if (p == 1.0) return block_sum(x, n, [](double v) { return std::abs(v); });
  return block_sum(x, n, [p](double v) { return std::pow(std::abs(v), p); });
}

template <class T>
double norm_pow_sum(const void* x_, int64_t n, double p) {
  const T* x = static_cast<const T*>(x_);
  constexpr int64_t kBlock = 4096;
  if (n <= kBlock) return norm_pow_block(x, n, p);
  // Fixed blocks reduced in parallel, then combined in block order: same bits for any thread count.
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks));
#pragma omp parallel for if (n > kParallelMin) schedule(static)
  for (int64_t b = 0; b < blocks; ++b)
    partial[b] = norm_pow_block(x + b * kBlock, std::min(kBlock, n - b * kBlock), p);
  if (std::isinf(p)) return block_max_abs(partial.data(), blocks);
  return block_sum(partial.data(), blocks, [](double v) { return v; });
}

template <class T>
void scale_inplace(void* x_, int64_t n, double factor) {
  T* x = static_cast<T*>(x_);
  const T f = static_cast<T>(factor);
#pragma omp parallel for simd if (n > kParallelMin) schedule(static)
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] * f;
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kSgdStep, sgd_step);
GRADUS_REGISTER_CPU_KERNEL(kAdamStep, adam_step);
GRADUS_REGISTER_CPU_KERNEL(kNormPowSum, norm_pow_sum);
GRADUS_REGISTER_CPU_KERNEL(kScaleInplace, scale_inplace);

}  // namespace gradus::kernels::cpu
