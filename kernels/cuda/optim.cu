// CUDA optimiser kernels (see kernels/optim.h for the conventions and formulas).
//
// The updates round every operation as written, in the parameter's dtype, with the coefficients
// rounded to that dtype exactly as the CPU does: explicit round-to-nearest intrinsics keep nvcc
// from contracting a * b + c into a fused multiply-add, so a step matches the CPU (and PyTorch's
// op-by-op rounding) bit for bit. Elementwise kernels take 16 bytes of each array per thread step
// when every pointer allows it, and the last n % pack elements one by one.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/tensor.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/multi_tensor.cuh"
#include "kernels/cuda/rounded.cuh"
#include "kernels/optim.h"

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

// Pack q (P elements) of each array, updated by adam_one: the per-tensor and the multi-tensor
// kernels share it, so an element gets the same operations whichever runs.
template <class T, int P>
__device__ __forceinline__ void adam_pack(T* param, const T* grad, T* exp_avg, T* exp_avg_sq,
                                          int64_t q, const AdamCoeffs<T>& c) {
  using V = Pack<T, P>;
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

// param, grad, exp_avg, exp_avg_sq: (packs * P).
template <class T, int P>
__global__ void adam_step_kernel(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, int64_t packs,
                                 AdamCoeffs<T> c) {
  GRADUS_CUDA_LOOP(q, packs) adam_pack<T, P>(param, grad, exp_avg, exp_avg_sq, q, c);
}

// The coefficients in double, rounded once to T, as the CPU computes them.
template <class T>
AdamCoeffs<T> adam_coeffs(const kernels::AdamStepParams& p) {
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
  return c;
}

template <class T>
void adam_step(void* param_, const void* grad_, void* exp_avg_, void* exp_avg_sq_, int64_t n,
               const kernels::AdamStepParams& p) {
  if (n == 0) return;
  T* param = static_cast<T*>(param_);
  const T* grad = static_cast<const T*>(grad_);
  T* m = static_cast<T*>(exp_avg_);
  T* v = static_cast<T*>(exp_avg_sq_);
  const AdamCoeffs<T> c = adam_coeffs<T>(p);
  const bool aligned = aligned16(param) && aligned16(grad) && aligned16(m) && aligned16(v);
  packed_launches<T>(n, aligned, [&](auto pack, int64_t offset, int64_t count) {
    constexpr int P = decltype(pack)::value;
    adam_step_kernel<T, P><<<elementwise_blocks(count / P), kThreads, 0, stream()>>>(
        param + offset, grad + offset, m + offset, v + offset, count / P, c);
    GRADUS_CUDA_CHECK_LAUNCH("adam_step");
  });
}

// The tensor table of one adam_multi_step launch. A tensor is split in packs of P = kVec<T>
// elements when its four pointers are 16-byte aligned (its n % P last elements then go one by one),
// element by element otherwise, exactly as adam_step chooses: same element, same adam_one.
template <class T>
struct AdamMultiTable {
  T* param[kMultiTensors];
  const T* grad[kMultiTensors];
  T* exp_avg[kMultiTensors];
  T* exp_avg_sq[kMultiTensors];
  int64_t n[kMultiTensors];
  AdamCoeffs<T> coeffs[kMultiTensors];
  int block_start[kMultiTensors + 1];
  bool aligned[kMultiTensors];
  int count;
};
static_assert(sizeof(AdamMultiTable<double>) < 4096, "kernel parameters must stay below 4 KB");

// table.param[t], grad[t], exp_avg[t], exp_avg_sq[t]: (table.n[t]) for t < table.count; grid:
// table.block_start[table.count] blocks. Each block grid-strides over its own tensor only.
template <class T>
__global__ void adam_multi_step_kernel(AdamMultiTable<T> table) {
  constexpr int P = kVec<T>;
  const int t = multi_tensor_of_block(table.block_start, table.count);
  const int64_t first =
      static_cast<int64_t>(blockIdx.x - table.block_start[t]) * blockDim.x + threadIdx.x;
  const int64_t stride =
      static_cast<int64_t>(table.block_start[t + 1] - table.block_start[t]) * blockDim.x;
  T* param = table.param[t];
  const T* grad = table.grad[t];
  T* m = table.exp_avg[t];
  T* v = table.exp_avg_sq[t];
  const int64_t n = table.n[t];
  const AdamCoeffs<T> c = table.coeffs[t];
  int64_t head = 0;  // elements done in packs
  if (table.aligned[t]) {
    const int64_t packs = n / P;
    head = packs * P;
    for (int64_t q = first; q < packs; q += stride) adam_pack<T, P>(param, grad, m, v, q, c);
  }
  for (int64_t i = head + first; i < n; i += stride) adam_one(param[i], grad[i], m[i], v[i], c);
}

template <class T>
void adam_multi_step(const kernels::AdamMultiTensor* tensors, int64_t count) {
  multi_tensor_batches(
      count, [&](int64_t i) { return tensors[i].n > 0; },
      [&](const std::vector<int64_t>& batch) {
        AdamMultiTable<T> table{};
        table.count = static_cast<int>(batch.size());
        int blocks = 0;
        for (int k = 0; k < table.count; ++k) {
          const kernels::AdamMultiTensor& a = tensors[batch[k]];
          table.param[k] = static_cast<T*>(a.param);
          table.grad[k] = static_cast<const T*>(a.grad);
          table.exp_avg[k] = static_cast<T*>(a.exp_avg);
          table.exp_avg_sq[k] = static_cast<T*>(a.exp_avg_sq);
          table.n[k] = a.n;
          table.coeffs[k] = adam_coeffs<T>(a.params);
          table.aligned[k] = aligned16(a.param) && aligned16(a.grad) && aligned16(a.exp_avg) &&
                             aligned16(a.exp_avg_sq);
          // As many blocks as adam_step's packed launch would take for this tensor.
          const int64_t units = table.aligned[k] ? ceil_div(a.n, kVec<T>) : a.n;
          table.block_start[k] = blocks;
          blocks += elementwise_blocks(units);
        }
        table.block_start[table.count] = blocks;
        adam_multi_step_kernel<T><<<blocks, kThreads, 0, stream()>>>(table);
        GRADUS_CUDA_CHECK_LAUNCH("adam_multi_step");
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

NormMode norm_mode(double p) {
  return std::isinf(p) ? NormMode::max_abs
         : p == 2.0    ? NormMode::square
         : p == 1.0    ? NormMode::abs
                       : NormMode::power;
}

// Stage-1 blocks of an array of n > 0 elements: a function of n alone.
int norm_blocks(int64_t n) {
  return static_cast<int>(std::min<int64_t>(kNormMaxBlocks, ceil_div(n, kNormPerBlock)));
}

template <class T>
double norm_pow_sum(const void* x, int64_t n, double p) {
  if (n == 0) return 0.0;
  const NormMode mode = norm_mode(p);
  const int blocks = norm_blocks(n);
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

// The tensor table of one norm_pow_sum_multi launch pair. Array t's stage-1 partials are
// partial[block_start[t], block_start[t + 1]) and its result out[t].
template <class T>
struct NormMultiTable {
  const T* x[kMultiTensors];
  int64_t n[kMultiTensors];
  int block_start[kMultiTensors + 1];
  int count;
};
static_assert(sizeof(NormMultiTable<double>) < 4096, "kernel parameters must stay below 4 KB");

// Stage 1 of every array of the table: block b of array t is norm_partial_kernel's block
// b - block_start[t] in a grid of norm_blocks(n[t]) blocks (same slice, same order, same bits).
// partial: (table.block_start[table.count]).
template <class T>
__global__ void norm_multi_partial_kernel(NormMultiTable<T> table, NormMode mode, double p,
                                          double* partial) {
  __shared__ double shared[32];
  const int t = multi_tensor_of_block(table.block_start, table.count);
  const T* x = table.x[t];
  const int64_t n = table.n[t];
  const int64_t stride =
      static_cast<int64_t>(table.block_start[t + 1] - table.block_start[t]) * blockDim.x;
  double acc = 0.0;
  for (int64_t i =
           static_cast<int64_t>(blockIdx.x - table.block_start[t]) * blockDim.x + threadIdx.x;
       i < n; i += stride) {
    const double term = norm_term(static_cast<double>(to_acc(x[i])), mode, p);
    acc = mode == NormMode::max_abs ? nan_max(acc, term) : acc + term;
  }
  acc = block_combine(acc, mode, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// Stage 2, block t (of table.count) as norm_final_kernel over array t's partials; out: (count).
template <class T>
__global__ void norm_multi_final_kernel(NormMultiTable<T> table, const double* partial,
                                        NormMode mode, double* out) {
  __shared__ double shared[32];
  const int t = blockIdx.x;
  const int begin = table.block_start[t], count = table.block_start[t + 1] - begin;
  double v = static_cast<int>(threadIdx.x) < count ? partial[begin + threadIdx.x] : 0.0;
  v = block_combine(v, mode, shared);
  if (threadIdx.x == 0) out[t] = v;
}

template <class T>
void norm_pow_sum_multi(const kernels::ConstArray* xs, int64_t count, double p, double* out) {
  for (int64_t i = 0; i < count; ++i) out[i] = 0.0;  // the value of an empty array
  if (count == 0) return;
  const NormMode mode = norm_mode(p);
  int64_t total_blocks = 0, nonempty = 0;
  for (int64_t i = 0; i < count; ++i)
    if (xs[i].n > 0) {
      total_blocks += norm_blocks(xs[i].n);
      ++nonempty;
    }
  if (nonempty == 0) return;
  Tensor partial = Tensor::empty({total_blocks}, DType::f64, kGPU);
  Tensor results = Tensor::empty({nonempty}, DType::f64, kGPU);
  double* partial_p = static_cast<double*>(partial.raw_data());
  double* results_p = static_cast<double*>(results.raw_data());
  std::vector<int64_t> where;  // where[k]: the index in xs of the k-th non-empty array
  where.reserve(static_cast<size_t>(nonempty));
  multi_tensor_batches(
      count, [&](int64_t i) { return xs[i].n > 0; },
      [&](const std::vector<int64_t>& batch) {
        NormMultiTable<T> table{};
        table.count = static_cast<int>(batch.size());
        int blocks = 0;
        for (int k = 0; k < table.count; ++k) {
          table.x[k] = static_cast<const T*>(xs[batch[k]].data);
          table.n[k] = xs[batch[k]].n;
          table.block_start[k] = blocks;
          blocks += norm_blocks(table.n[k]);
        }
        table.block_start[table.count] = blocks;
        norm_multi_partial_kernel<T><<<blocks, kThreads, 0, stream()>>>(table, mode, p, partial_p);
        GRADUS_CUDA_CHECK_LAUNCH("norm_pow_sum_multi_partial");
        norm_multi_final_kernel<T><<<table.count, kNormMaxBlocks, 0, stream()>>>(
            table, partial_p, mode, results_p + where.size());
        GRADUS_CUDA_CHECK_LAUNCH("norm_pow_sum_multi_final");
        partial_p += blocks;
        where.insert(where.end(), batch.begin(), batch.end());
      });
  // One copy of every result and one wait, whatever the number of arrays.
  std::vector<double> host(static_cast<size_t>(nonempty));
  GRADUS_CUDA_CHECK(cudaMemcpyAsync(host.data(), results.raw_data(), host.size() * sizeof(double),
                                    cudaMemcpyDeviceToHost, stream()));
  synchronize();
  for (size_t k = 0; k < where.size(); ++k) out[where[k]] = host[k];
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

// The tensor table of one scale_inplace_multi launch (packs where x[t] is 16-byte aligned, as
// scale_inplace chooses).
template <class T>
struct ScaleMultiTable {
  T* x[kMultiTensors];
  int64_t n[kMultiTensors];
  int block_start[kMultiTensors + 1];
  bool aligned[kMultiTensors];
  int count;
};
static_assert(sizeof(ScaleMultiTable<double>) < 4096, "kernel parameters must stay below 4 KB");

// table.x[t]: (table.n[t]) for t < table.count; x *= factor, as scale_inplace_kernel.
template <class T>
__global__ void scale_inplace_multi_kernel(ScaleMultiTable<T> table, acc_t<T> factor) {
  constexpr int P = kVec<T>;
  using V = Pack<T, P>;
  const int t = multi_tensor_of_block(table.block_start, table.count);
  const int64_t first =
      static_cast<int64_t>(blockIdx.x - table.block_start[t]) * blockDim.x + threadIdx.x;
  const int64_t stride =
      static_cast<int64_t>(table.block_start[t + 1] - table.block_start[t]) * blockDim.x;
  T* x = table.x[t];
  const int64_t n = table.n[t];
  int64_t head = 0;
  if (table.aligned[t]) {
    const int64_t packs = n / P;
    head = packs * P;
    for (int64_t q = first; q < packs; q += stride) {
      V v = reinterpret_cast<const V*>(x)[q];
#pragma unroll
      for (int l = 0; l < P; ++l) v.v[l] = from_acc<T>(mul_rn(to_acc(v.v[l]), factor));
      reinterpret_cast<V*>(x)[q] = v;
    }
  }
  for (int64_t i = head + first; i < n; i += stride)
    x[i] = from_acc<T>(mul_rn(to_acc(x[i]), factor));
}

template <class T>
void scale_inplace_multi(const kernels::MutableArray* xs, int64_t count, double factor) {
  const acc_t<T> f = static_cast<acc_t<T>>(factor);
  multi_tensor_batches(
      count, [&](int64_t i) { return xs[i].n > 0; },
      [&](const std::vector<int64_t>& batch) {
        ScaleMultiTable<T> table{};
        table.count = static_cast<int>(batch.size());
        int blocks = 0;
        for (int k = 0; k < table.count; ++k) {
          table.x[k] = static_cast<T*>(xs[batch[k]].data);
          table.n[k] = xs[batch[k]].n;
          table.aligned[k] = aligned16(table.x[k]);
          table.block_start[k] = blocks;
          blocks +=
              elementwise_blocks(table.aligned[k] ? ceil_div(table.n[k], kVec<T>) : table.n[k]);
        }
        table.block_start[table.count] = blocks;
        scale_inplace_multi_kernel<T><<<blocks, kThreads, 0, stream()>>>(table, f);
        GRADUS_CUDA_CHECK_LAUNCH("scale_inplace_multi");
      });
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL_F32_F64(kernels::kSgdStep, sgd_step);
GRADUS_REGISTER_CUDA_KERNEL_F32_F64(kernels::kAdamStep, adam_step);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kNormPowSum, norm_pow_sum);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kScaleInplace, scale_inplace);
GRADUS_REGISTER_CUDA_KERNEL_F32_F64(kernels::kAdamMultiStep, adam_multi_step);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kNormPowSumMulti, norm_pow_sum_multi);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kScaleInplaceMulti, scale_inplace_multi);

}  // namespace gradus::cuda
