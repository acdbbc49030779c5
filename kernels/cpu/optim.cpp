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

// Adam's coefficients, computed in double once per tensor and rounded to T (see kernels/optim.h).
template <class T>
struct AdamCoeffs {
  T decay, wd, w1, beta2, w2, eps, step_size, bc2_sqrt;
  bool decoupled, l2;
};

template <class T>
AdamCoeffs<T> adam_coeffs(const AdamStepParams& p) {
  AdamCoeffs<T> c;
  c.decoupled = p.decoupled_weight_decay && p.weight_decay != 0.0;
  c.l2 = !p.decoupled_weight_decay && p.weight_decay != 0.0;
  c.decay = static_cast<T>(1.0 - p.lr * p.weight_decay);  // AdamW's shrink factor
  c.wd = static_cast<T>(p.weight_decay);
  c.w1 = static_cast<T>(1.0 - p.beta1);
  c.beta2 = static_cast<T>(p.beta2);
  c.w2 = static_cast<T>(1.0 - p.beta2);
  c.eps = static_cast<T>(p.eps);
  c.step_size = static_cast<T>(p.step_size);
  c.bc2_sqrt = static_cast<T>(p.bias_correction2_sqrt);
  return c;
}

// One element of the step; the single and the multi-tensor kernels both call it, so they agree bit
// for bit (each operation rounds as written: the build disables FMA contraction).
template <class T>
inline void adam_one(T& param, T grad, T& m, T& v, const AdamCoeffs<T>& c) {
  T x = param;
  T g = grad;
  if (c.decoupled) x = x * c.decay;
  if (c.l2) g = g + c.wd * x;
  const T mi = lerp(m, g, c.w1);
  const T vi = c.beta2 * v + c.w2 * (g * g);
  m = mi;
  v = vi;
  const T denom = std::sqrt(vi) / c.bc2_sqrt + c.eps;
  param = x - c.step_size * (mi / denom);
}

template <class T>
void adam_step(void* param_, const void* grad_, void* exp_avg_, void* exp_avg_sq_, int64_t n,
               const AdamStepParams& p) {
  T* param = static_cast<T*>(param_);
  const T* grad = static_cast<const T*>(grad_);
  T* m = static_cast<T*>(exp_avg_);
  T* v = static_cast<T*>(exp_avg_sq_);
  const AdamCoeffs<T> c = adam_coeffs<T>(p);
#pragma omp parallel for simd if (n > kParallelMin) schedule(static)
  for (int64_t i = 0; i < n; ++i) adam_one(param[i], grad[i], m[i], v[i], c);
}

// The multi-tensor kernels split every array into chunks of kChunk elements and run all (array,
// chunk) items in one parallel region, so that many small parameters share one fork/join.
constexpr int64_t kChunk = 1 << 14;

struct WorkItem {
  int64_t tensor, begin, end;  // elements [begin, end) of array `tensor`
};

// The items of arrays of lengths length(0), ..., length(count - 1), in array order; total gets the
// number of elements.
template <class Length>
std::vector<WorkItem> chunk_items(int64_t count, int64_t chunk, Length&& length, int64_t& total) {
  std::vector<WorkItem> items;
  total = 0;
  for (int64_t t = 0; t < count; ++t) {
    const int64_t n = length(t);
    total += n;
    for (int64_t b = 0; b < n; b += chunk) items.push_back({t, b, std::min(n, b + chunk)});
  }
  return items;
}

// tensors: (count), as kernels/optim.h's AdamMultiStepFn.
template <class T>
void adam_multi_step(const AdamMultiTensor* tensors, int64_t count) {
  int64_t total = 0;
  const std::vector<WorkItem> items = chunk_items(
      count, kChunk, [&](int64_t t) { return tensors[t].n; }, total);
  std::vector<AdamCoeffs<T>> coeffs(static_cast<size_t>(count));
  for (int64_t t = 0; t < count; ++t) coeffs[t] = adam_coeffs<T>(tensors[t].params);
  const int64_t num_items = static_cast<int64_t>(items.size());
#pragma omp parallel for if (total > kParallelMin) schedule(dynamic)
  for (int64_t w = 0; w < num_items; ++w) {
    const WorkItem& it = items[w];
    const AdamMultiTensor& a = tensors[it.tensor];
    T* param = static_cast<T*>(a.param);
    const T* grad = static_cast<const T*>(a.grad);
    T* m = static_cast<T*>(a.exp_avg);
    T* v = static_cast<T*>(a.exp_avg_sq);
    const AdamCoeffs<T> c = coeffs[it.tensor];
#pragma omp simd
    for (int64_t i = it.begin; i < it.end; ++i) adam_one(param[i], grad[i], m[i], v[i], c);
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

constexpr int64_t kNormBlock = 4096;

// The combination of an array's block partials, partial: (blocks), blocks = ceil(n / kNormBlock).
double combine_norm_partials(const double* partial, int64_t n, int64_t blocks, double p) {
  if (n <= kNormBlock) return n == 0 ? 0.0 : partial[0];
  if (std::isinf(p)) return block_max_abs(partial, blocks);
  return block_sum(partial, blocks, [](double v) { return v; });
}

template <class T>
double norm_pow_sum(const void* x_, int64_t n, double p) {
  const T* x = static_cast<const T*>(x_);
  if (n <= kNormBlock) return norm_pow_block(x, n, p);
  // Fixed blocks reduced in parallel, then combined in block order: same bits for any thread count.
  const int64_t blocks = (n + kNormBlock - 1) / kNormBlock;
  std::vector<double> partial(static_cast<size_t>(blocks));
#pragma omp parallel for if (n > kParallelMin) schedule(static)
  for (int64_t b = 0; b < blocks; ++b)
    partial[b] = norm_pow_block(x + b * kNormBlock, std::min(kNormBlock, n - b * kNormBlock), p);
  return combine_norm_partials(partial.data(), n, blocks, p);
}

// xs: (count), out: (count), as kernels/optim.h's NormPowSumMultiFn: the blocks of norm_pow_sum,
// of every array, in one parallel region; then each array's partials combined as there.
template <class T>
void norm_pow_sum_multi(const ConstArray* xs, int64_t count, double p, double* out) {
  int64_t total = 0;
  const std::vector<WorkItem> items = chunk_items(
      count, kNormBlock, [&](int64_t t) { return xs[t].n; }, total);
  std::vector<double> partial(items.size());
  const int64_t num_items = static_cast<int64_t>(items.size());
#pragma omp parallel for if (total > kParallelMin) schedule(dynamic, 4)
  for (int64_t w = 0; w < num_items; ++w) {
    const WorkItem& it = items[w];
    partial[w] =
        norm_pow_block(static_cast<const T*>(xs[it.tensor].data) + it.begin, it.end - it.begin, p);
  }
  size_t first = 0;  // items are in array order: array t's blocks start at `first`
  for (int64_t t = 0; t < count; ++t) {
    const int64_t blocks = (xs[t].n + kNormBlock - 1) / kNormBlock;
    out[t] = combine_norm_partials(partial.data() + first, xs[t].n, blocks, p);
    first += static_cast<size_t>(blocks);
  }
}

template <class T>
void scale_inplace(void* x_, int64_t n, double factor) {
  T* x = static_cast<T*>(x_);
  const T f = static_cast<T>(factor);
#pragma omp parallel for simd if (n > kParallelMin) schedule(static)
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] * f;
}

// xs: (count), as kernels/optim.h's ScaleInplaceMultiFn.
template <class T>
void scale_inplace_multi(const MutableArray* xs, int64_t count, double factor) {
  int64_t total = 0;
  const std::vector<WorkItem> items = chunk_items(
      count, kChunk, [&](int64_t t) { return xs[t].n; }, total);
  const T f = static_cast<T>(factor);
  const int64_t num_items = static_cast<int64_t>(items.size());
#pragma omp parallel for if (total > kParallelMin) schedule(dynamic)
  for (int64_t w = 0; w < num_items; ++w) {
    T* x = static_cast<T*>(xs[items[w].tensor].data);
#pragma omp simd
    for (int64_t i = items[w].begin; i < items[w].end; ++i) x[i] = x[i] * f;
  }
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kSgdStep, sgd_step);
GRADUS_REGISTER_CPU_KERNEL(kAdamStep, adam_step);
GRADUS_REGISTER_CPU_KERNEL(kNormPowSum, norm_pow_sum);
GRADUS_REGISTER_CPU_KERNEL(kScaleInplace, scale_inplace);
GRADUS_REGISTER_CPU_KERNEL(kAdamMultiStep, adam_multi_step);
GRADUS_REGISTER_CPU_KERNEL(kNormPowSumMulti, norm_pow_sum_multi);
GRADUS_REGISTER_CPU_KERNEL(kScaleInplaceMulti, scale_inplace_multi);

}  // namespace gradus::kernels::cpu
