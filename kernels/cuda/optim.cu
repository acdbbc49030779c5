// CUDA optimiser kernels (see kernels/optim.h for the conventions and formulas).
//
// The updates round every operation as written, in the parameter's dtype, with the coefficients
// rounded to that dtype exactly as the CPU does: explicit round-to-nearest intrinsics keep nvcc
// from contracting a * b + c into a fused multiply-add, so a step matches the CPU (and PyTorch's
// op-by-op rounding) bit for bit. Elementwise kernels take 16 bytes of each array per thread step
// when every pointer allows it, and the last n % pack elements one by one.
#include "kernels/optim.h"

#include <algorithm>
#include <cmath>

#include "core/tensor.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rounded.cuh"

namespace gradus::cuda {
namespace {


// torch.lerp's formula, as on the CPU: two branches keep the result exact at weight 0 and 1.
template <class T>
__device__ __forceinline__ T lerp(T start, T end, T weight) {
  return weight < T(0.5) ? add_rn(start, mul_rn(weight, sub_rn(end, start)))
                         : sub_rn(end, mul_rn(sub_rn(end, start), sub_rn(T(1), weight)));
}

// Runs launch(pack, offset, count) for the 16-byte packed head of [0, n) when every pointer is
// aligned, and launch(1, offset, count) for what remains.
template <class T, class Launch>
void packed_launches(int64_t n, bool aligned, Launch&& launch) {
  const int64_t head = aligned ? n / kVec<T> * kVec<T> : 0;
  if (head > 0) launch(std::integral_constant<int, kVec<T>>{}, int64_t{0}, head);
  if (n > head) launch(std::integral_constant<int, 1>{}, head, n - head);
}

// ---- SGD ----

template <class T>
struct SgdCoeffs {
  T lr, wd, momentum, keep;
  bool use_wd, use_momentum, first, nesterov;
};

template <class T>
__device__ __forceinline__ void sgd_one(T& param, T grad, T& buf, const SgdCoeffs<T>& c) {
  T g = grad;
  if (c.use_wd) g = add_rn(g, mul_rn(c.wd, param));
  if (c.use_momentum) {
    const T b = c.first ? g : add_rn(mul_rn(c.momentum, buf), mul_rn(c.keep, g));
    buf = b;
    g = c.nesterov ? add_rn(g, mul_rn(c.momentum, b)) : b;
  }
  param = sub_rn(param, mul_rn(c.lr, g));
}

// param, grad, buf: (packs * P); buf is read only with momentum after the first step (it is
// uninitialised before) and written only with momentum (it may be null without).
template <class T, int P>
__global__ void sgd_step_kernel(T* param, const T* grad, T* buf, int64_t packs, SgdCoeffs<T> c) {
  using V = Pack<T, P>;
  GRADUS_CUDA_LOOP(q, packs) {
    V p = reinterpret_cast<const V*>(param)[q];
    const V g = reinterpret_cast<const V*>(grad)[q];
    V b{};
    if (c.use_momentum && !c.first) b = reinterpret_cast<const V*>(buf)[q];
#pragma unroll
    for (int l = 0; l < P; ++l) sgd_one(p.v[l], g.v[l], b.v[l], c);
    reinterpret_cast<V*>(param)[q] = p;
    if (c.use_momentum) reinterpret_cast<V*>(buf)[q] = b;
  }
}

template <class T>
void sgd_step(void* param_, const void* grad_, void* buf_, int64_t n,
              const kernels::SgdStepParams& p) {
  if (n == 0) return;
  T* param = static_cast<T*>(param_);
  const T* grad = static_cast<const T*>(grad_);
  T* buf = static_cast<T*>(buf_);
  SgdCoeffs<T> c;
  c.lr = static_cast<T>(p.lr);
  c.wd = static_cast<T>(p.weight_decay);
  c.momentum = static_cast<T>(p.momentum);
  c.keep = static_cast<T>(1.0 - p.dampening);
  c.use_wd = p.weight_decay != 0.0;
  c.use_momentum = p.momentum != 0.0;
  c.first = p.first;
  c.nesterov = p.nesterov;
  const bool aligned = aligned16(param) && aligned16(grad) && (!c.use_momentum || aligned16(buf));
  packed_launches<T>(n, aligned, [&](auto pack, int64_t offset, int64_t count) {
    constexpr int P = decltype(pack)::value;
    sgd_step_kernel<T, P><<<elementwise_blocks(count / P), kThreads, 0, stream()>>>(
        param + offset, grad + offset, c.use_momentum ? buf + offset : nullptr, count / P, c);
    GRADUS_CUDA_CHECK_LAUNCH("sgd_step");
  });
}

// ---- Adam / AdamW ----

template <class T>
struct AdamCoeffs {
  T decay, wd, w1, beta2, w2, eps, step_size, bc2_sqrt;
  bool decoupled, l2;
};

template <class T>
__device__ __forceinline__ void adam_one(T& param, T grad, T& m, T& v, const AdamCoeffs<T>& c) {
  T x = param;
  T g = grad;
  if (c.decoupled) x = mul_rn(x, c.decay);
  if (c.l2) g = add_rn(g, mul_rn(c.wd, x));
  const T mi = lerp(m, g, c.w1);
  const T vi = add_rn(mul_rn(c.beta2, v), mul_rn(c.w2, mul_rn(g, g)));
  m = mi;
  v = vi;
  const T denom = add_rn(div_rn(sqrt_rn(vi), c.bc2_sqrt), c.eps);
  param = sub_rn(x, mul_rn(c.step_size, div_rn(mi, denom)));
}

// param, grad, exp_avg, exp_avg_sq: (packs * P).
template <class T, int P>
__global__ void adam_step_kernel(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, int64_t packs,
                                 AdamCoeffs<T> c) {
  using V = Pack<T, P>;
  GRADUS_CUDA_LOOP(q, packs) {
    V p = reinterpret_cast<const V*>(param)[q];
    const V g = reinterpret_cast<const V*>(grad)[q];
    V m = reinterpret_cast<const V*>(exp_avg)[q];
    V v = reinterpret_cast<const V*>(exp_avg_sq)[q];
#pragma unroll
    for (int l = 0; l < P; ++l) adam_one(p.v[l], g.v[l], m.v[l], v.v[l], c);
    reinterpret_cast<V*>(param)[q] = p;
    reinterpret_cast<V*>(exp_avg)[q] = m;
    reinterpret_cast<V*>(exp_avg_sq)[q] = v;
  }
}

template <class T>
void adam_step(void* param_, const void* grad_, void* exp_avg_, void* exp_avg_sq_, int64_t n,
               const kernels::AdamStepParams& p) {
  if (n == 0) return;
  T* param = static_cast<T*>(param_);
  const T* grad = static_cast<const T*>(grad_);
  T* m = static_cast<T*>(exp_avg_);
  T* v = static_cast<T*>(exp_avg_sq_);
  // The coefficients in double, rounded once to T, as the CPU computes them.
  AdamCoeffs<T> c;
  c.decoupled = p.decoupled_weight_decay && p.weight_decay != 0.0;
  c.l2 = !p.decoupled_weight_decay && p.weight_decay != 0.0;
  c.decay = static_cast<T>(1.0 - p.lr * p.weight_decay);
  c.wd = static_cast<T>(p.weight_decay);
  c.w1 = static_cast<T>(1.0 - p.beta1);
  c.beta2 = static_cast<T>(p.beta2);
  c.w2 = static_cast<T>(1.0 - p.beta2);
  c.eps = static_cast<T>(p.eps);
  c.step_size = static_cast<T>(p.step_size);
  c.bc2_sqrt = static_cast<T>(p.bias_correction2_sqrt);
  const bool aligned = aligned16(param) && aligned16(grad) && aligned16(m) && aligned16(v);
  packed_launches<T>(n, aligned, [&](auto pack, int64_t offset, int64_t count) {
    constexpr int P = decltype(pack)::value;
    adam_step_kernel<T, P><<<elementwise_blocks(count / P), kThreads, 0, stream()>>>(
        param + offset, grad + offset, m + offset, v + offset, count / P, c);
    GRADUS_CUDA_CHECK_LAUNCH("adam_step");
  });
}

// ---- gradient-norm clipping ----

// The norm's per-element term, in double.
enum class NormMode : int { max_abs, abs, square, power };

__device__ __forceinline__ double norm_term(double v, NormMode mode, double p) {
  switch (mode) {
    case NormMode::abs: return fabs(v);
    case NormMode::square: return v * v;
    case NormMode::power: return pow(fabs(v), p);
    default: return fabs(v);  // max_abs
  }
}
// A maximum that NaN wins (fmax drops NaN): a NaN on either side is returned.
__device__ __forceinline__ double nan_max(double a, double b) { return (a != a || a > b) ? a : b; }

// Block-wide combination in a fixed order (warps, then warp partials in warp order); every thread
// gets the result. blockDim.x is a multiple of 32; shared holds 32 values.
__device__ double block_combine(double v, NormMode mode, double* shared) {
  if (mode != NormMode::max_abs) return block_sum(v, shared);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, off));
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : 0.0;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// Stage 1. x: (n); partial: (gridDim.x). Each thread folds a grid-stride slice in order, then the
// block combines its threads; the grid size is a function of n alone, so the result is too.
template <class T>
__global__ void norm_partial_kernel(const T* x, int64_t n, NormMode mode, double p,
                                    double* partial) {
  __shared__ double shared[32];
  double acc = 0.0;  // the identity of both the sum and the maximum of |x|
  GRADUS_CUDA_LOOP(i, n) {
    const double t = norm_term(static_cast<double>(to_acc(x[i])), mode, p);
    acc = mode == NormMode::max_abs ? nan_max(acc, t) : acc + t;
  }
  acc = block_combine(acc, mode, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// Stage 2, one block. partial: (count <= blockDim.x); *out = their combination.
__global__ void norm_final_kernel(const double* partial, int count, NormMode mode, double* out) {
  __shared__ double shared[32];
  double v = static_cast<int>(threadIdx.x) < count ? partial[threadIdx.x] : 0.0;
  v = block_combine(v, mode, shared);
  if (threadIdx.x == 0) *out = v;
}

constexpr int kNormMaxBlocks = 1024;     // also the stage-2 block size
constexpr int64_t kNormPerBlock = 4096;  // elements per block below the cap

template <class T>
double norm_pow_sum(const void* x, int64_t n, double p) {
  if (n == 0) return 0.0;
  const NormMode mode = std::isinf(p) ? NormMode::max_abs
                        : p == 2.0    ? NormMode::square
                        : p == 1.0    ? NormMode::abs
                                      : NormMode::power;
  const int blocks =
      static_cast<int>(std::min<int64_t>(kNormMaxBlocks, (n + kNormPerBlock - 1) / kNormPerBlock));
  Tensor partial = Tensor::empty({blocks}, DType::f64, kGPU);
  double* partial_p = static_cast<double*>(partial.raw_data());
  norm_partial_kernel<T>
      <<<blocks, kThreads, 0, stream()>>>(static_cast<const T*>(x), n, mode, p, partial_p);
  GRADUS_CUDA_CHECK_LAUNCH("norm_pow_sum_partial");
  double* out = scratch_f64(1);
  norm_final_kernel<<<1, kNormMaxBlocks, 0, stream()>>>(partial_p, blocks, mode, out);
  GRADUS_CUDA_CHECK_LAUNCH("norm_pow_sum_final");
  double result = 0.0;
  GRADUS_CUDA_CHECK(
      cudaMemcpyAsync(&result, out, sizeof(double), cudaMemcpyDeviceToHost, stream()));
  synchronize();
  return result;
}

// x: (packs * P); x *= factor, the factor rounded to the compute type (f32 for bf16).
template <class T, int P>
__global__ void scale_inplace_kernel(T* x, int64_t packs, acc_t<T> factor) {
  using V = Pack<T, P>;
  GRADUS_CUDA_LOOP(q, packs) {
    V v = reinterpret_cast<const V*>(x)[q];
#pragma unroll
    for (int l = 0; l < P; ++l) v.v[l] = from_acc<T>(mul_rn(to_acc(v.v[l]), factor));
    reinterpret_cast<V*>(x)[q] = v;
  }
}

template <class T>
void scale_inplace(void* x_, int64_t n, double factor) {
  if (n == 0) return;
  T* x = static_cast<T*>(x_);
  const acc_t<T> f = static_cast<acc_t<T>>(factor);
  packed_launches<T>(n, aligned16(x), [&](auto pack, int64_t offset, int64_t count) {
    constexpr int P = decltype(pack)::value;
    scale_inplace_kernel<T, P>
        <<<elementwise_blocks(count / P), kThreads, 0, stream()>>>(x + offset, count / P, f);
    GRADUS_CUDA_CHECK_LAUNCH("scale_inplace");
  });
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL_F32_F64(kernels::kSgdStep, sgd_step);
GRADUS_REGISTER_CUDA_KERNEL_F32_F64(kernels::kAdamStep, adam_step);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kNormPowSum, norm_pow_sum);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kScaleInplace, scale_inplace);

}  // namespace gradus::cuda
